"""Attacks on the messages quiet hours hold back (``fhir_server.notifications.quiet_hours``
``DeferredSender``, ``notifier.Notifier.send_deferred``): the ``on-hold`` Communication
records are in the patient's compartment, so another patient must not read them, and the
patient herself must not redirect one (a new recipient, another patient as subject) nor
forge one, so that the server mails another patient's people when the quiet hours end.
A real local SMTP server receives what is sent; on every store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fhir_server.notifications.notifier import SENT_TAG
from tests.conftest import STORES, storage_url
from tests.notifications_support import app_on, mailbox_fixture, wait_records
from tests.smtp_receiver import Mailbox
from tests.test_notifications import bearer, lab
from tests.test_notifications_quiet import by_recipient, quiet_for_alice

__all__ = ["mailbox_fixture"]  # the ``mailbox`` fixture

BOBS_PEOPLE = ("bob@home.example", "uncle@home.example")


@pytest.mark.parametrize("store", STORES)
async def test_a_held_message_is_neither_read_by_another_nor_redirected(
    tmp_path: Path, mailbox: Mailbox, store: str
) -> None:
    async with app_on(storage_url(store, tmp_path), mailbox) as http:
        admin = await quiet_for_alice(http, 8)
        end = time.time() + 8
        bob = {
            "resourceType": "Patient",
            "id": "bob",
            "telecom": [{"system": "email", "value": "bob@home.example"}],
        }
        uncle = {
            "resourceType": "RelatedPerson",
            "id": "uncle",
            "active": True,
            "patient": {"reference": "Patient/bob"},
            "telecom": [{"system": "email", "value": "uncle@home.example"}],
        }
        for body in (bob, uncle):
            path = f"{body['resourceType']}/{body['id']}"
            assert (await http.put(path, json=body, headers=admin)).status_code == 201
        await http.post("Observation", json=lab("final"), headers=admin)
        held = by_recipient(await wait_records(http, admin, 2))["Patient/alice"]
        assert held["status"] == "on-hold"
        url = f"Communication/{held['id']}"

        # Bob's app: Alice's held message is not there
        bobs = bearer(http, "patient/*.cruds", patient="bob", fhir_user="Patient/bob")
        assert (await http.get(url, headers=bobs)).status_code == 404
        found = await http.get("Communication", params={"status": "on-hold"}, headers=bobs)
        assert held["id"] not in found.text

        # Alice's app: redirect her held message, or forge one, to Bob's people
        alice = bearer(http, "patient/*.cruds", patient="alice", fhir_user="Patient/alice")
        mine = (await http.get(url, headers=alice)).json()
        to_bob = {**mine, "subject": {"reference": "Patient/bob"}}
        refused = await http.put(url, json=to_bob, headers=alice)
        assert refused.status_code in (403, 404), refused.text
        for recipient in ("Patient/bob", "RelatedPerson/uncle"):
            moved = {**mine, "recipient": [{"reference": recipient}]}
            await http.put(url, json=moved, headers=alice)  # refused, or harmless
            forged = {
                **{k: v for k, v in mine.items() if k not in ("id", "meta")},
                "meta": {"tag": [SENT_TAG]},
                "recipient": [{"reference": recipient}],
            }
            await http.post("Communication", json=forged, headers=alice)

        await asyncio.sleep(max(0.0, end - time.time()) + 7)  # past the end, and scans
        sent_to = [m["To"] for m in mailbox.snapshot()]
        assert "mum@home.example" in sent_to  # the mailbox does receive
        assert not [to for to in sent_to if to in BOBS_PEOPLE], sent_to
        # staff still sees the record about Alice
        final = await http.get(url, headers=admin)
        assert final.json()["subject"] == {"reference": "Patient/alice"}
