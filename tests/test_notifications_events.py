"""The events for people of issue 17 that the other notification tests do not cover,
on every store, received by a real local SMTP server: a new invoice (an Invoice becomes
``issued``), a new document (a ``current`` DocumentReference), and a refill request
decided (the refill Task of ``fhir_server.workflows.refills`` rejected, or completed with
the new prescription) are each emailed to the patient and her caregiver once, without
clinical detail, and recorded as Communications about the resource."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import STORES, storage_url
from tests.notifications_support import (
    PORTAL,
    app_on,
    mailbox_fixture,  # noqa: F401 (the fixture)
    records_about,
)
from tests.smtp_receiver import Mailbox, text_of
from tests.test_notifications import bearer, seed

ALICE = {"reference": "Patient/alice"}


async def write(
    http: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    type_ = body["resourceType"]
    if "id" in body:
        answer = await http.put(f"{type_}/{body['id']}", json=body, headers=admin)
    else:
        answer = await http.post(type_, json=body, headers=admin)
    assert answer.is_success, answer.text
    return answer.json()


async def invoice(http: httpx.AsyncClient, admin: dict[str, str]) -> str:
    draft = {
        "resourceType": "Invoice",
        "status": "draft",
        "subject": ALICE,
        "totalGross": {"value": 180, "currency": "USD"},
    }
    stored = await write(http, admin, draft)
    await write(http, admin, {**stored, "status": "issued"})
    return f"Invoice/{stored['id']}"


async def document(http: httpx.AsyncClient, admin: dict[str, str]) -> str:
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": ALICE,
        "type": {"text": "Discharge summary: psychiatry"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}],
    }
    return f"DocumentReference/{(await write(http, admin, body))['id']}"


def prescription(**more: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": ALICE,
        "medicationCodeableConcept": {"text": "Sertraline 50 mg"},
        "dispenseRequest": {"numberOfRepeatsAllowed": 3},
        **more,
    }


async def refill(http: httpx.AsyncClient, admin: dict[str, str], decision: str) -> str:
    old = await write(http, admin, prescription())
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
        },
        "focus": {"reference": f"MedicationRequest/{old['id']}"},
        "for": ALICE,
    }
    stored = await write(http, admin, task)
    await write(http, admin, {**stored, "status": "accepted"})  # not yet a decision to tell
    decided = {**stored, "status": decision}
    if decision == "rejected":
        decided["statusReason"] = {"text": "Please book a review first"}
    else:
        prior = {"reference": f"MedicationRequest/{old['id']}"}
        new = await write(http, admin, prescription(priorPrescription=prior))
        decided["output"] = [
            {
                "type": {"text": "prescription"},
                "valueReference": {"reference": f"MedicationRequest/{new['id']}"},
            }
        ]
    await write(http, admin, decided)
    return f"Task/{stored['id']}"


async def rejected(http: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return await refill(http, admin, "rejected")


async def completed(http: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return await refill(http, admin, "completed")


CASES = {
    "new-invoice": (invoice, "You have a new invoice"),
    "new-document": (document, "You have a new document"),
    "refill-rejected": (rejected, "Your refill request was answered"),
    "refill-completed": (completed, "Your refill request was answered"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("store", STORES)
async def test_the_event_is_emailed_once_without_detail(
    tmp_path: Path, mailbox: Mailbox, store: str, case: str
) -> None:
    make, subject = CASES[case]
    async with app_on(storage_url(store, tmp_path), mailbox) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        await asyncio.sleep(0.3)  # the reader's cursor opens at the outbox's end
        about = await make(http, admin)
        mails = await asyncio.to_thread(mailbox.wait_for, 2)
        await asyncio.sleep(1)
        assert len(mailbox.snapshot()) == 2
        assert sorted(m["To"] for m in mails) == ["alice@home.example", "mum@home.example"]
        for mail in mails:
            assert mail["Subject"] == subject
            body = text_of(mail)
            assert PORTAL in body
            for detail in ("180", "psychiatry", "Sertraline", "review", about.split("/")[1]):
                assert detail not in body
        found = await records_about(http, admin)
        assert {r["about"][0]["reference"] for r in found} == {about}
        assert {r["status"] for r in found} == {"completed"}
