"""Notifications to people (issue 17) on every store, received by a real local SMTP
server (``tests/smtp_receiver.py``): a new final lab result is emailed to the patient and
her caregiver without clinical detail, with the portal link, and recorded as a
Communication; preferences (a Basic the patient writes with her own token) turn a kind
off; a refused email is recorded as not-done; an appointment reminder goes once, at its
lead time (``FHIR_SERVER_REMINDER_LEADS``), and a lead already past at booking is
skipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.notifications.recipients import OPT_OUT, PREFERENCES_SYSTEM
from smart_auth.store.base import Client
from tests.conftest import BASE, STORES, storage_url
from tests.smtp_receiver import Mailbox, smtp_server, text_of

JSON = {"content-type": "application/fhir+json"}
PORTAL = "https://portal.example/clinic/"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@asynccontextmanager
async def served(kind: str, tmp_path: Path, mailbox: Mailbox) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a store of ``kind``, mailing through ``mailbox``; a client of it."""
    settings = Settings(
        storage=storage_url(kind, tmp_path),
        auth="smart",
        smtp_url=mailbox.url,
        smtp_from="portal@clinic.example",
        portal_url=PORTAL,
        reminder_leads="1h,8s",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.auth.store.add_client(Client(client_id="test-app"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture(params=STORES)
async def http(
    request: pytest.FixtureRequest, tmp_path: Path, mailbox: Mailbox
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(request.param, tmp_path, mailbox) as client:
        yield client


def bearer(http: httpx.AsyncClient, scope: str, **context: Any) -> dict[str, str]:
    value, _ = http.app.state.auth.token_service().issue_access_token(  # type: ignore[attr-defined]
        issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
    )
    return {"authorization": f"Bearer {value}", **JSON}


async def seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    patient = {
        "resourceType": "Patient",
        "id": "alice",
        "telecom": [
            {"system": "email", "value": "old@home.example", "use": "old", "rank": 1},
            {"system": "email", "value": "second@home.example", "rank": 3},
            {"system": "email", "value": "alice@home.example", "rank": 2},
            {"system": "phone", "value": "+1 555 0100"},
        ],
    }
    carer = {
        "resourceType": "RelatedPerson",
        "id": "mum",
        "active": True,
        "patient": {"reference": "Patient/alice"},
        "telecom": [{"system": "email", "value": "mum@home.example"}],
    }
    for body in (patient, carer):
        path = f"{body['resourceType']}/{body['id']}"
        assert (await http.put(path, json=body, headers=admin)).status_code == 201


def lab(status: str, code: str = "2345-7") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Glucose"}]},
        "subject": {"reference": "Patient/alice"},
        "valueQuantity": {"value": 312, "unit": "mg/dL"},
    }


async def records(
    http: httpx.AsyncClient, admin: dict[str, str], at_least: int = 0
) -> list[dict[str, Any]]:
    """The records of what was sent about Alice, once there are ``at_least`` (a message is
    recorded just after it went out: the mail may arrive first)."""
    deadline = time.monotonic() + 15
    while True:
        found = await http.get("Communication", params={"subject": "Patient/alice"}, headers=admin)
        sent = [e["resource"] for e in found.json().get("entry", [])]
        if len(sent) >= at_least or time.monotonic() > deadline:
            return sent
        await asyncio.sleep(0.1)


async def test_a_final_lab_result_is_emailed_without_detail_and_recorded(
    http: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    await asyncio.sleep(0.3)  # the reader's cursor opens at the outbox's end
    pending = await http.post("Observation", json=lab("preliminary"), headers=admin)
    other = {k: v for k, v in lab("final").items() if k != "category"}  # not a lab result
    assert (await http.post("Observation", json=other, headers=admin)).status_code == 201
    await asyncio.sleep(0.5)
    assert mailbox.snapshot() == []
    final = {**pending.json(), "status": "final"}
    oid = final["id"]
    assert (await http.put(f"Observation/{oid}", json=final, headers=admin)).status_code == 200
    mails = await asyncio.to_thread(mailbox.wait_for, 2)
    assert sorted(m["To"] for m in mails) == ["alice@home.example", "mum@home.example"]
    for mail in mails:
        assert mail["From"] == "portal@clinic.example"
        assert mail["Subject"] == "You have a new test result"
        body = text_of(mail)
        assert PORTAL in body
        for detail in ("Glucose", "2345-7", "312", "mg/dL", oid):
            assert detail not in body and detail not in mail["Subject"]
    sent = await records(http, admin, at_least=2)
    assert len(sent) == 2
    assert {r["recipient"][0]["reference"] for r in sent} == {
        "Patient/alice",
        "RelatedPerson/mum",
    }
    for record in sent:
        assert record["status"] == "completed"
        assert record["category"][0]["coding"][0]["code"] == "notification"
        assert record["medium"][0]["coding"][0]["code"] == "EMAILWRIT"
        assert record["about"] == [{"reference": f"Observation/{oid}"}]
        assert record["sent"]
    # the server's own records are no new message for her, and a second final is no news
    await http.put(f"Observation/{oid}", json={**final, "status": "final"}, headers=admin)
    await asyncio.sleep(0.8)
    assert len(mailbox.snapshot()) == 2


async def test_preferences_written_by_the_patient_turn_a_kind_off(
    http: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(http, "patient/*.cruds", patient="alice", fhir_user="Patient/alice")
    preferences = {
        "resourceType": "Basic",
        "code": {"coding": [{"system": PREFERENCES_SYSTEM, "code": "preferences"}]},
        "subject": {"reference": "Patient/alice"},
        "extension": [
            {
                "url": OPT_OUT,
                "extension": [
                    {"url": "channel", "valueCode": "email"},
                    {"url": "kind", "valueCode": "new-result"},
                ],
            }
        ],
    }
    written = await http.post("Basic", json=preferences, headers=alice)
    assert written.status_code == 201, written.text
    await asyncio.sleep(0.3)
    await http.post("Observation", json=lab("final"), headers=admin)
    [mail] = await asyncio.to_thread(mailbox.wait_for, 1)
    assert mail["To"] == "mum@home.example"  # her caregiver's preferences are his own
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "recipient": [{"reference": "Patient/alice"}],
        "payload": [{"contentString": "Your results look fine. Dr. Lee"}],
    }
    await http.post("Communication", json=message, headers=admin)
    mails = await asyncio.to_thread(mailbox.wait_for, 3)
    assert {m["Subject"] for m in mails[1:]} == {"You have a new message"}
    assert all("Dr. Lee" not in text_of(m) for m in mails)


async def test_a_refused_email_is_recorded_as_not_done(
    http: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    await asyncio.sleep(0.3)
    mailbox.refuse = True
    await http.post("Observation", json=lab("final"), headers=admin)
    sent = await records(http, admin, at_least=2)
    assert len(sent) == 2, sent
    assert {r["status"] for r in sent} == {"not-done"}
    assert all(r["statusReason"]["text"] for r in sent)


async def test_an_appointment_reminder_goes_once_at_its_lead(
    http: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=11)
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
        "participant": [{"actor": {"reference": "Patient/alice"}, "status": "accepted"}],
    }
    booked = await http.post("Appointment", json=appointment, headers=admin)
    assert booked.status_code == 201, booked.text
    # the booking itself is news; the reminder 8 s before the start follows (the
    # scans are 5 s apart)
    mails = await asyncio.to_thread(mailbox.wait_for, 4, 20)
    subjects = [m["Subject"] for m in mails]
    assert subjects.count("Your appointment is booked") == 2
    assert subjects.count("Appointment reminder") == 2  # the 1h lead was past at booking
    reminder = next(m for m in mails if m["Subject"] == "Appointment reminder")
    assert appointment["start"] in text_of(reminder)
    await asyncio.sleep(6)  # more scans: still once
    assert len(mailbox.snapshot()) == 4
    sent = await records(http, admin, at_least=4)
    kinds = [r["category"][0]["coding"][0]["code"] for r in sent]
    assert sorted(kinds) == ["notification"] * 2 + ["reminder"] * 2


async def test_an_email_subscription_mails_no_detail(
    http: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Ward 3 results",
        "criteria": "Observation?category=laboratory",
        "channel": {"type": "email", "endpoint": "mailto:ward3@clinic.example"},
    }
    for endpoint in ("mailto:", "mailto:a@x.example,b@x.example", "https://x.example/"):
        bad = {**subscription, "channel": {"type": "email", "endpoint": endpoint}}
        refused = await http.post("Subscription", json=bad, headers=admin)
        assert refused.status_code == 400, refused.text
        assert "endpoint" in refused.text
    with_payload = {**subscription["channel"], "payload": "application/fhir+json"}
    refused = await http.post(
        "Subscription", json={**subscription, "channel": with_payload}, headers=admin
    )
    assert refused.status_code == 400 and "payload" in refused.text
    created = await http.post("Subscription", json=subscription, headers=admin)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    deadline = time.monotonic() + 15
    while (await http.get(f"Subscription/{sid}", headers=admin)).json()["status"] != "active":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await http.post("Observation", json=lab("final"), headers=admin)
    mails = await asyncio.to_thread(mailbox.wait_for, 3)  # the subscription's, and the people's
    [mail] = [m for m in mails if m["To"] == "ward3@clinic.example"]
    body = text_of(mail)
    assert "Observation" in body and PORTAL in body
    assert "Ward 3" not in body  # a client's text never goes out in the clinic's name
    for detail in ("Glucose", "2345-7", "312", "alice"):
        assert detail not in body


async def test_a_moved_appointment_is_reminded_at_its_new_time_a_cancelled_one_not(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    """Once, on SQLite: the scan's searches are the store's (the reminder test above runs
    on every store)."""
    async with served("sqlite", tmp_path, mailbox) as http:
        await _moved_and_cancelled(http, mailbox)


async def _moved_and_cancelled(http: httpx.AsyncClient, mailbox: Mailbox) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    now = datetime.now(UTC).replace(microsecond=0)

    def at(seconds: int) -> str:
        return (now + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    def appointment(start: int) -> dict[str, Any]:
        return {
            "resourceType": "Appointment",
            "status": "booked",
            "start": at(start),
            "end": at(start + 1200),
            "participant": [{"actor": {"reference": "Patient/alice"}, "status": "accepted"}],
        }

    moved = (await http.post("Appointment", json=appointment(3600), headers=admin)).json()
    dropped = (await http.post("Appointment", json=appointment(11), headers=admin)).json()
    cancelled = {**dropped, "status": "cancelled"}
    assert (
        await http.put(f"Appointment/{dropped['id']}", json=cancelled, headers=admin)
    ).is_success
    rescheduled = {**moved, "start": at(12), "end": at(1200)}
    assert (
        await http.put(f"Appointment/{moved['id']}", json=rescheduled, headers=admin)
    ).is_success
    await asyncio.sleep(9)  # past the 8 s lead of both
    subjects = sorted(m["Subject"] for m in mailbox.snapshot())
    assert subjects.count("Appointment reminder") == 2, subjects  # alice and mum, moved one
    assert subjects.count("Your appointment was cancelled") == 2
    assert subjects.count("Your appointment changed") == 2
    reminders = [m for m in mailbox.snapshot() if m["Subject"] == "Appointment reminder"]
    assert all(at(12) in text_of(m) for m in reminders)


async def test_a_patients_email_subscription_mails_only_her_own_addresses(
    http: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(http, "patient/*.cruds", patient="alice", fhir_user="Patient/alice")
    sids = {}
    for address in ("victim@elsewhere.example", "second@home.example"):
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "URGENT: your account is locked, call +1 555 0100",
            "criteria": "Observation?patient=Patient/alice",
            "channel": {"type": "email", "endpoint": f"mailto:{address}"},
        }
        created = await http.post("Subscription", json=body, headers=alice)
        assert created.status_code == 201, created.text
        sids[address] = created.json()["id"]
    deadline = time.monotonic() + 15
    while True:
        statuses = {
            a: (await http.get(f"Subscription/{sid}", headers=alice)).json()
            for a, sid in sids.items()
        }
        if all(s["status"] != "requested" for s in statuses.values()):
            break
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.05)
    stranger = statuses["victim@elsewhere.example"]
    assert stranger["status"] == "error" and "not one of yours" in stranger["error"]
    assert statuses["second@home.example"]["status"] == "active"
    not_lab = {k: v for k, v in lab("final").items() if k != "category"}  # no people mail
    assert (await http.post("Observation", json=not_lab, headers=admin)).status_code == 201
    [mail] = await asyncio.to_thread(mailbox.wait_for, 1)
    await asyncio.sleep(0.5)
    assert [m["To"] for m in mailbox.snapshot()] == ["second@home.example"]
    assert "URGENT" not in text_of(mail)
