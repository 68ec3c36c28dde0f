"""Health maintenance due (issue 17: "alerts for upcoming check-ups, screenings, or
vaccinations"), received by a real local SMTP server: an ImmunizationRecommendation's
due date, an active ServiceRequest's occurrence and an active CarePlan's scheduled
activity are each reminded once per lead (``FHIR_SERVER_REMINDER_LEADS``, a lead already
past when written skipped), without clinical detail, to the patient and her caregiver,
recorded as Communications of category ``reminder``; a moved item is reminded at its new
time, a completed or cancelled one not; the patient opts out through the API; the
reminders survive a restart and go once with two server processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fhir_server.demo_data import Population
from fhir_server.notifications.health_maintenance import (
    care_plan_times,
    immunization_times,
    moment_of,
    service_request_times,
)
from fhir_server.notifications.recipients import OPT_OUT
from tests.conftest import STORES, storage_url
from tests.notifications_support import (
    PORTAL,
    app_on,
    at,
    mailbox_fixture,  # noqa: F401 (the fixture)
    preferences_of,
    records_about,
    subjects,
)
from tests.smtp_receiver import Mailbox, text_of
from tests.test_notifications import bearer, seed

DUE = "A check-up, screening or vaccination is due"
LOINC = "http://loinc.org"


def recommendation(due: str, forecast: str = "due") -> dict[str, Any]:
    status_system = "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
    return {
        "resourceType": "ImmunizationRecommendation",
        "patient": {"reference": "Patient/alice"},
        "date": at(0),
        "recommendation": [
            {
                "vaccineCode": [
                    {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "141"}]}
                ],
                "forecastStatus": {"coding": [{"system": status_system, "code": forecast}]},
                "dateCriterion": [
                    {"code": {"coding": [{"system": LOINC, "code": "30981-5"}]}, "value": at(2)},
                    {"code": {"coding": [{"system": LOINC, "code": "30980-7"}]}, "value": due},
                ],
            }
        ],
    }


def screening(when: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "268556000"}]},
        "subject": {"reference": "Patient/alice"},
        "occurrenceDateTime": when,
    }


def care_plan(*activities: tuple[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/alice"},
        "activity": [
            {
                "detail": {
                    "status": status,
                    "code": {"text": "Diabetic foot examination"},
                    "scheduledPeriod": {"start": start},
                }
            }
            for start, status in activities
        ],
    }


async def create(http: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]) -> str:
    created = await http.post(body["resourceType"], json=body, headers=admin)
    assert created.status_code == 201, created.text
    return f"{body['resourceType']}/{created.json()['id']}"


def reminders_about(found: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in found:
        if record["category"][0]["coding"][0]["code"] == "reminder":
            about = record["about"][0]["reference"]
            out[about] = out.get(about, 0) + 1
    return out


@pytest.mark.parametrize("store", STORES)
async def test_each_item_due_is_reminded_once_at_its_lead_without_detail(
    tmp_path: Path, mailbox: Mailbox, store: str
) -> None:
    async with app_on(storage_url(store, tmp_path), mailbox) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        vaccine = await create(http, admin, recommendation(at(14)))
        await create(http, admin, recommendation(at(14), forecast="complete"))
        request = await create(http, admin, screening(at(15)))
        plan = await create(http, admin, care_plan((at(16), "scheduled"), (at(15), "cancelled")))
        mails = await asyncio.to_thread(mailbox.wait_for, 6, 25)
        assert subjects(mailbox) == [DUE] * 6  # the 1h lead was past when they were written
        for mail in mails:
            body = text_of(mail)
            assert "You have a check-up, screening or vaccination due." in body
            assert PORTAL in body
            for detail in ("141", "268556000", "Diabetic", "foot", "alice", "CarePlan"):
                assert detail not in body and detail not in mail["Subject"]
        assert (
            sorted(m["To"] for m in mails) == ["alice@home.example"] * 3 + ["mum@home.example"] * 3
        )
        await asyncio.sleep(6)  # more scans: still once
        assert len(mailbox.snapshot()) == 6
        found = await records_about(http, admin)
        assert reminders_about(found) == {vaccine: 2, request: 2, plan: 2}
        assert all(r["status"] == "completed" and r["sent"] for r in found)


async def test_a_moved_item_is_reminded_at_its_new_time_a_completed_one_not(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    """On SQLite (the every-store test above covers the searches on each store)."""
    async with app_on(storage_url("sqlite", tmp_path), mailbox) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        far = at(3600)
        bodies = [recommendation(far), screening(at(14)), care_plan((at(14), "scheduled"))]
        vaccine, request, plan = [await create(http, admin, b) for b in bodies]
        moved = recommendation(at(14))
        done = {**screening(at(14)), "status": "completed"}
        dropped = care_plan((at(14), "cancelled"))
        for reference, body in ((vaccine, moved), (request, done), (plan, dropped)):
            type_, _, id_ = reference.partition("/")
            updated = await http.put(reference, json={**body, "id": id_}, headers=admin)
            assert updated.status_code == 200, updated.text
        mails = await asyncio.to_thread(mailbox.wait_for, 2, 20)
        await asyncio.sleep(6)
        assert len(mailbox.snapshot()) == 2
        assert {m["To"] for m in mails} == {"alice@home.example", "mum@home.example"}
        assert reminders_about(await records_about(http, admin)) == {vaccine: 2}
        identifiers = [r["identifier"][0]["value"] for r in await records_about(http, admin)]
        assert all(
            moved["recommendation"][0]["dateCriterion"][1]["value"] in i for i in identifiers
        )


async def test_the_patient_opts_out_of_health_maintenance_through_the_api(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    async with app_on(storage_url("sqlite", tmp_path), mailbox) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        alice = bearer(http, "patient/*.cruds", patient="alice", fhir_user="Patient/alice")
        kind = {"url": "kind", "valueCode": "health-maintenance"}
        body = preferences_of("Patient/alice", {"url": OPT_OUT, "extension": [kind]})
        written = await http.post("Basic", json=body, headers=alice)
        assert written.status_code == 201, written.text
        await create(http, admin, recommendation(at(13)))
        [mail] = await asyncio.to_thread(mailbox.wait_for, 1, 20)
        await asyncio.sleep(6)
        assert [m["To"] for m in mailbox.snapshot()] == ["mum@home.example"]


async def test_reminders_survive_a_restart_and_go_once_with_two_processes(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    """Two apps on one SQLite file stand for two server processes."""
    storage = storage_url("sqlite", tmp_path)
    async with app_on(storage, mailbox) as http:
        admin = bearer(http, "system/*.cruds")
        await seed(http, admin)
        vaccine = await create(http, admin, recommendation(at(16)))
        request = await create(http, admin, screening(at(16)))
    assert mailbox.snapshot() == []  # stopped before anything was due
    async with app_on(storage, mailbox) as first, app_on(storage, mailbox) as second:
        await asyncio.to_thread(mailbox.wait_for, 4, 25)
        await asyncio.sleep(6)
        assert subjects(mailbox) == [DUE] * 4
        admin = bearer(first, "system/*.cruds")
        assert reminders_about(await records_about(second, admin)) == {vaccine: 2, request: 2}


def test_a_due_date_is_nine_in_the_morning_in_the_clinics_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert moment_of("2026-03-01", berlin) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert moment_of("2026-07-01", berlin) == datetime(2026, 7, 1, 7, tzinfo=UTC)
    assert moment_of("2026-03", berlin) is None
    assert moment_of("2026-03-01", None) is None  # an appointment's start is an instant
    assert moment_of("2026-03-01T10:00:00+01:00", None) == datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_the_times_of_each_kind_of_item() -> None:
    timing = {
        "event": ["2026-05-01T10:00:00Z"],
        "repeat": {"boundsPeriod": {"start": "2026-06-01"}},
    }
    assert service_request_times({"occurrenceTiming": timing}) == [
        "2026-05-01T10:00:00Z",
        "2026-06-01",
    ]
    assert service_request_times({"occurrencePeriod": {"start": "2026-04-01"}}) == ["2026-04-01"]
    plan = {
        "activity": [
            {"detail": {"status": "entered-in-error", "scheduledPeriod": {"start": "2026-01-01"}}},
            {"detail": {"status": "stopped", "scheduledPeriod": {"start": "2026-01-02"}}},
            {"detail": {"status": "scheduled", "scheduledTiming": timing}},
            {"detail": {"status": "not-started", "scheduledString": "every spring"}},
        ]
    }
    assert care_plan_times(plan) == ["2026-05-01T10:00:00Z", "2026-06-01"]
    assert immunization_times(recommendation("2026-09-01")) == ["2026-09-01"]
    assert immunization_times(recommendation("2026-09-01", forecast="immune")) == []


def test_the_demo_data_has_vaccinations_due_to_remind_of() -> None:
    today = datetime.now(UTC).date()
    found = [r for r in Population(10, seed=1) if r["resourceType"] == "ImmunizationRecommendation"]
    assert len(found) == 5  # every other patient
    for item in found:
        [due] = immunization_times(item)
        moment = moment_of(due, ZoneInfo("UTC"))
        assert moment is not None and moment.date() > today
