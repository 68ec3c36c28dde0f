"""Text messages through the built-in SMS webhook provider (issue 17), received by a real
local HTTP server standing in for the gateway (``tests/hook_receiver.py``), on every store:
a new final lab result is texted to the patient's ``sms`` contact point as JSON
``{to, body}`` (or Twilio-style form fields with Basic authentication), without clinical
detail, and recorded as a Communication with medium SMSWRIT."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.hook_receiver import Receiver, receiver

JSON = {"content-type": "application/fhir+json"}
PORTAL = "https://portal.example/"


@pytest.fixture
def gateway() -> Iterator[Receiver]:
    with receiver() as state:
        yield state


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("form", ["json", "form"])
async def test_a_result_is_texted_and_recorded(
    tmp_path: Path, gateway: Receiver, store: str, form: str
) -> None:
    url = gateway.url.replace("http://", "http://gw-user:gw-secret@")
    settings = Settings(
        storage=storage_url(store, tmp_path),
        auth="off",
        sms_webhook_url=url,
        sms_webhook_format=form,
        sms_from="+15550199",
        portal_url=PORTAL,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            patient = {
                "resourceType": "Patient",
                "id": "p1",
                "telecom": [
                    {"system": "phone", "value": "+15550100", "use": "home"},
                    {"system": "sms", "value": "+15550111"},
                ],
            }
            assert (await http.put("Patient/p1", json=patient, headers=JSON)).status_code == 201
            await asyncio.sleep(0.3)
            result = {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"text": "HIV viral load"},
                "subject": {"reference": "Patient/p1"},
            }
            await http.post("DiagnosticReport", json=result, headers=JSON)
            [got] = await asyncio.to_thread(gateway.wait_for, 1)
            assert got.method == "POST" and got.path == "/hook"
            if form == "json":
                sent = got.json()
                to, body = sent["to"], sent["body"]
            else:
                fields = parse_qs(got.body.decode())
                to, body = fields["To"][0], fields["Body"][0]
                assert fields["From"] == ["+15550199"]
            assert to == "+15550111"
            assert "new test result" in body and PORTAL in body and "HIV" not in body
            expected = base64.b64encode(b"gw-user:gw-secret").decode()
            assert got.headers["Authorization"] == f"Basic {expected}"
            deadline = time.monotonic() + 10
            while True:
                found = await http.get("Communication", params={"subject": "Patient/p1"})
                records: list[dict[str, Any]] = [
                    e["resource"] for e in found.json().get("entry", [])
                ]
                if records or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            [record] = records
            assert record["medium"][0]["coding"][0]["code"] == "SMSWRIT"
            assert record["status"] == "completed"
            assert "HIV" not in json.dumps(record)
