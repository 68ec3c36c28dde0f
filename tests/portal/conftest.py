"""The portal's browser tests share one live ``fhir-server serve`` over a demo
population with demo sign-ins (``fhir-server demo-data --users``), the Stripe double as
its payment processor and telehealth links on, and one headless Chromium. The demo data
gets three additions of the tests': an unread message from patient 1's practitioner, a
free video-visit Slot of that practitioner and a prescription of patient 2 to refill."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.fake_stripe import fake_stripe
from tests.live import ROOT, LiveServer
from tests.portal.support import (
    PATIENT,
    PRACTITIONER,
    REFILL_PATIENT,
    REPORT,
    TELEHEALTH,
    UNREAD_TOPIC,
    measured,
    start_session,
)
from tests.smart_support import chromium


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _additions(today: date) -> list[dict[str, Any]]:
    """An unread message to patient 1 from their practitioner, a prescription of
    patient 2 with refills left (and no request yet), and a free video-visit Slot of
    patient 1's practitioner at 15:00 on the first working day (the demo slots are at 9,
    10, 11 and 14 o'clock, Eastern Standard Time)."""
    from fhir_server.demo.layout import Layout, when

    sent = f"{(today - timedelta(days=1)).isoformat()}T16:30:00-05:00"
    start = Layout(20, today).slot_start(0).replace(hour=15)
    vr = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    return [
        {
            "resourceType": "Communication",
            "id": "portal-test-unread",
            "status": "in-progress",
            "subject": {"reference": f"Patient/{PATIENT}"},
            "topic": {"text": UNREAD_TOPIC},
            "sent": sent,
            "sender": {"reference": PRACTITIONER},
            "recipient": [{"reference": f"Patient/{PATIENT}"}],
            "payload": [{"contentString": "Your results are normal. No need to come in."}],
        },
        {
            "resourceType": "MedicationRequest",
            "id": "portal-test-rx",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{REFILL_PATIENT}"},
            "medicationCodeableConcept": {
                "coding": [
                    {
                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "314076",
                        "display": "lisinopril 10 MG Oral Tablet",
                    }
                ],
                "text": "Lisinopril 10 mg tablet",
            },
            "authoredOn": f"{(today - timedelta(days=30)).isoformat()}",
            "requester": {"reference": "Practitioner/demo-prac-00002"},
            "dosageInstruction": [{"text": "One tablet every morning"}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 3},
        },
        {
            "resourceType": "Slot",
            "id": "portal-test-video",
            "schedule": {"reference": "Schedule/demo-sched-00001"},
            "serviceType": [{"coding": [{"system": vr, "code": "VR", "display": "Video visit"}]}],
            "status": "free",
            "start": when(start),
            "end": when(start + timedelta(minutes=30)),
        },
    ]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("portal")
    storage = f"sqlite:///{folder / 'fhir.sqlite3'}"
    today = date.today()
    made = _run(
        "demo-data",
        "--patients",
        "20",
        "--users",
        "5",
        "--today",
        today.isoformat(),
        "--storage",
        storage,
        "--quiet",
        "--workers",
        "0",
    )
    password = re.search(r"all with the password: (\S+)", made)
    assert password, made
    extra = folder / "additions.ndjson"
    extra.write_text("".join(json.dumps(r) + "\n" for r in _additions(today)))
    _run("import", str(extra), "--storage", storage, "--quiet", "--workers", "0")
    with fake_stripe() as stripe:
        server = LiveServer(
            storage,
            folder / "server.log",
            auth="smart",
            FHIR_SERVER_PAYMENTS="stripe",
            FHIR_SERVER_STRIPE_SECRET_KEY=stripe.secret_key,
            FHIR_SERVER_STRIPE_WEBHOOK_SECRET=stripe.webhook_secret,
            FHIR_SERVER_STRIPE_API_BASE=stripe.api_base,
            FHIR_SERVER_TELEHEALTH_URL_TEMPLATE=TELEHEALTH,
        )
        try:
            yield {
                "server": server,
                "password": password.group(1),
                "stripe": stripe,
                "storage": storage,
            }
        finally:
            server.stop()
    if measured:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(measured, indent=2))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        driver.set_window_size(1280, 900)
        driver.set_script_timeout(30)
        yield driver


@pytest.fixture(scope="module")
def patient_session(site: dict[str, Any], browser: Any) -> Any:
    """The browser signed in as demo patient 1 (a session of the module's own)."""
    start_session(browser, site)
    return browser
