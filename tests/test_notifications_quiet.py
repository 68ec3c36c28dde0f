"""Quiet hours (issue 17), received by a real local SMTP server: a message that falls in
a person's quiet hours (set in her preferences Basic, with her own patient token, in her
time zone) is recorded ``on-hold`` without ``sent`` and sent once when they end, the
record then ``completed`` with the real send time; the others are not held up; the
deferral survives a restart and is sent once with two server processes; the server's
default (``FHIR_SERVER_QUIET_HOURS``) applies to those who set none; malformed quiet
hours are refused with an OperationOutcome and change nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.notifications.quiet_hours import QUIET_HOURS, QuietHours, from_setting
from tests.conftest import STORES, storage_url
from tests.hook_receiver import receiver
from tests.notifications_support import (
    app_on,
    at,
    mailbox_fixture,  # noqa: F401 (the fixture)
    preferences_of,
    records_about,
    wait_records,
)
from tests.smtp_receiver import Mailbox
from tests.test_notifications import bearer, lab, seed

RESULT = "You have a new test result"
ZONE = "America/New_York"


def local(seconds: float, zone: str = ZONE) -> str:
    """The local time of day ``seconds`` from now in ``zone``, as a FHIR time."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.astimezone(ZoneInfo(zone)).strftime("%H:%M:%S")


def preferences(person: str, start: str, end: str, zone: str | None = ZONE) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "start", "valueTime": start},
        {"url": "end", "valueTime": end},
    ]
    if zone is not None:
        parts.append({"url": "timezone", "valueCode": zone})
    return preferences_of(person, {"url": QUIET_HOURS, "extension": parts})


def by_recipient(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["recipient"][0]["reference"]: r for r in found}


async def quiet_for_alice(http: httpx.AsyncClient, seconds: float) -> dict[str, str]:
    """Seed; Alice's quiet hours, written with her token, end ``seconds`` from now; the
    admin's headers."""
    admin = bearer(http, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(http, "patient/*.cruds", patient="alice", fhir_user="Patient/alice")
    body = preferences("Patient/alice", local(-60), local(seconds))
    written = await http.post("Basic", json=body, headers=alice)
    assert written.status_code == 201, written.text
    await asyncio.sleep(0.3)  # the reader's cursor opens at the outbox's end
    return admin


@pytest.mark.parametrize("store", STORES)
async def test_a_message_in_quiet_hours_waits_for_their_end_then_goes_once(
    tmp_path: Path, mailbox: Mailbox, store: str
) -> None:
    async with app_on(storage_url(store, tmp_path), mailbox) as http:
        admin = await quiet_for_alice(http, 9)
        end = time.time() + 9
        await http.post("Observation", json=lab("final"), headers=admin)
        [mail] = await asyncio.to_thread(mailbox.wait_for, 1)
        assert mail["To"] == "mum@home.example"  # her caregiver's hours are his own
        held = by_recipient(await wait_records(http, admin, 2))["Patient/alice"]
        assert held["status"] == "on-hold" and "sent" not in held
        await asyncio.sleep(max(0.0, end - time.time() - 1))
        assert len(mailbox.snapshot()) == 1  # not before the end
        mails = await asyncio.to_thread(mailbox.wait_for, 2, 15)
        assert mails[1]["To"] == "alice@home.example" and mails[1]["Subject"] == RESULT
        await asyncio.sleep(6)  # more scans: still once
        assert len(mailbox.snapshot()) == 2
        record = by_recipient(await records_about(http, admin))["Patient/alice"]
        assert record["status"] == "completed" and "statusReason" not in record
        sent = datetime.fromisoformat(record["sent"].replace("Z", "+00:00")).timestamp()
        assert end - 1 <= sent <= time.time()  # the real send time


async def test_a_deferred_message_survives_a_restart_and_goes_once_with_two_processes(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    """Two apps on one SQLite file stand for two server processes."""
    storage = storage_url("sqlite", tmp_path)
    async with app_on(storage, mailbox) as http:
        admin = await quiet_for_alice(http, 6)
        await http.post("Observation", json=lab("final"), headers=admin)
        await wait_records(http, admin, 2)
    assert [m["To"] for m in mailbox.snapshot()] == ["mum@home.example"]
    await asyncio.sleep(6)  # the quiet hours end while no server runs
    async with app_on(storage, mailbox) as first, app_on(storage, mailbox) as second:
        await asyncio.to_thread(mailbox.wait_for, 2, 15)
        await asyncio.sleep(6)
        assert sorted(m["To"] for m in mailbox.snapshot()) == [
            "alice@home.example",
            "mum@home.example",
        ]
        admin = bearer(first, "system/*.cruds")
        record = by_recipient(await records_about(second, admin))["Patient/alice"]
        assert record["status"] == "completed" and record["sent"]


async def test_a_text_message_waits_too(tmp_path: Path, mailbox: Mailbox) -> None:
    """Email and text messages alike: the deferred SMS goes to the SMS gateway (a real
    local HTTP server, ``tests/hook_receiver.py``) at the end, recorded SMSWRIT."""
    with receiver() as gateway:
        storage = storage_url("sqlite", tmp_path)
        async with app_on(storage, mailbox, sms_webhook_url=gateway.url) as http:
            admin = bearer(http, "system/*.cruds")
            texted = {"system": "sms", "value": "+15550111"}
            alice = {"resourceType": "Patient", "id": "alice", "telecom": [texted]}
            assert (await http.put("Patient/alice", json=alice, headers=admin)).is_success
            body = preferences("Patient/alice", local(-60), local(7))
            assert (await http.post("Basic", json=body, headers=admin)).is_success
            await asyncio.sleep(0.3)
            await http.post("Observation", json=lab("final"), headers=admin)
            [held] = await wait_records(http, admin, 1)
            assert held["status"] == "on-hold" and gateway.received == []
            [got] = await asyncio.to_thread(gateway.wait_for, 1, 20)
            assert got.json()["to"] == "+15550111" and "new test result" in got.json()["body"]
            [record] = await records_about(http, admin)
            assert record["status"] == "completed"
            assert record["medium"][0]["coding"][0]["code"] == "SMSWRIT"
            assert mailbox.snapshot() == []


async def test_a_reminder_whose_time_passed_in_quiet_hours_is_not_sent(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    async with app_on(storage_url("sqlite", tmp_path), mailbox) as http:
        admin = await quiet_for_alice(http, 17)
        appointment = {
            "resourceType": "Appointment",
            "status": "booked",
            "start": at(11),
            "end": at(1200),
            "participant": [{"actor": {"reference": "Patient/alice"}, "status": "accepted"}],
        }
        assert (await http.post("Appointment", json=appointment, headers=admin)).is_success
        # mum: booked at once and the 8 s reminder; Alice's both wait for 17 s
        await asyncio.to_thread(mailbox.wait_for, 2, 15)
        await asyncio.sleep(max(0.0, 17 + 7 - 11))  # her hours end, and a scan follows
        mails = await asyncio.to_thread(mailbox.wait_for, 3, 10)
        await asyncio.sleep(1)
        assert sorted((m["To"], m["Subject"]) for m in mailbox.snapshot()) == [
            ("alice@home.example", "Your appointment is booked"),
            ("mum@home.example", "Appointment reminder"),
            ("mum@home.example", "Your appointment is booked"),
        ], mails
        found = [
            r
            for r in await records_about(http, admin)
            if r["recipient"][0]["reference"] == "Patient/alice"
            and r["category"][0]["coding"][0]["code"] == "reminder"
        ]
        [stale] = found
        assert stale["status"] == "not-done" and "sent" not in stale
        assert "passed" in stale["statusReason"]["text"]


async def test_the_servers_default_applies_to_those_who_set_none(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    hours = f"{local(-60, 'UTC')[:5]}-{local(3600, 'UTC')[:5]}"
    async with app_on(storage_url("sqlite", tmp_path), mailbox, quiet_hours=hours) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        none = preferences("RelatedPerson/mum", "00:00:00", "00:00:00", zone=None)
        written = await http.post("Basic", json=none, headers=admin)
        assert written.status_code == 201, written.text
        await asyncio.sleep(0.3)
        await http.post("Observation", json=lab("final"), headers=admin)
        [mail] = await asyncio.to_thread(mailbox.wait_for, 1)
        assert mail["To"] == "mum@home.example"  # equal start and end: no quiet hours
        found = by_recipient(await wait_records(http, admin, 2))
        assert found["Patient/alice"]["status"] == "on-hold"
        await asyncio.sleep(1)
        assert len(mailbox.snapshot()) == 1


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ([{"url": "start", "valueTime": "22:00:00"}], "'end'"),
        (
            [
                {"url": "start", "valueTime": "22:00:00"},
                {"url": "end", "valueTime": "07:00:00"},
                {"url": "timezone", "valueCode": "Mars/Olympus_Mons"},
            ],
            "time zone",
        ),
        (
            [{"url": "start", "valueString": "late"}, {"url": "end", "valueTime": "07:00:00"}],
            "'start'",
        ),
    ],
)
async def test_malformed_quiet_hours_are_refused_and_change_nothing(
    tmp_path: Path, mailbox: Mailbox, parts: list[dict[str, Any]], says: str
) -> None:
    async with app_on(storage_url("sqlite", tmp_path), mailbox) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        alice = bearer(http, "patient/*.cruds", patient="alice", fhir_user="Patient/alice")
        good = preferences("Patient/alice", "22:00:00", "07:00:00")
        created = await http.post("Basic", json=good, headers=alice)
        assert created.status_code == 201, created.text
        bad = {**created.json(), "extension": [{"url": QUIET_HOURS, "extension": parts}]}
        refused = await http.put(f"Basic/{bad['id']}", json=bad, headers=alice)
        assert refused.status_code == 400, refused.text
        issue = refused.json()["issue"][0]
        assert issue["code"] == "invalid" and says in issue["diagnostics"]
        assert issue["expression"] == ["Basic.extension[0]"]
        twice = {**good, "extension": good["extension"] * 2}
        assert (await http.post("Basic", json=twice, headers=alice)).status_code == 400
        stored = await http.get(f"Basic/{bad['id']}", headers=alice)
        assert stored.json()["extension"] == good["extension"]
        assert stored.json()["meta"]["versionId"] == "1"


def test_quiet_hours_over_midnight_end_the_next_morning() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    hours = from_setting("22:00-07:00", "Europe/Berlin")
    assert hours == QuietHours(hours.start, hours.end, berlin)
    evening = datetime(2026, 1, 10, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    assert hours.end_after(evening) == datetime(2026, 1, 11, 6, tzinfo=UTC)
    early = datetime(2026, 1, 11, 5, 0, tzinfo=UTC)  # 06:00 in Berlin
    assert hours.end_after(early) == datetime(2026, 1, 11, 6, tzinfo=UTC)
    assert hours.end_after(datetime(2026, 1, 11, 6, 0, tzinfo=UTC)) is None
    assert hours.end_after(datetime(2026, 1, 11, 12, 0, tzinfo=UTC)) is None
    lunch = from_setting("12:00-13:30", "UTC")
    assert lunch is not None
    assert lunch.end_after(datetime(2026, 1, 11, 12, 5, tzinfo=UTC)) == datetime(
        2026, 1, 11, 13, 30, tzinfo=UTC
    )


def test_the_servers_default_is_checked_at_start() -> None:
    assert Settings(quiet_hours="").quiet_hours == ""
    with pytest.raises(ValueError, match="22:00-07:00"):
        Settings(quiet_hours="late")
