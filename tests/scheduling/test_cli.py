"""``fhir-server schedule create`` (issue 18): a Schedule and its free Slots, written into
the store of a running app (SQLite: the command is another client of the same file),
found by ``$find``; run again, it adds nothing."""

from __future__ import annotations

import asyncio
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.cli import main
from fhir_server.cli_schedule import parse_days, plan
from fhir_server.config import Settings
from tests.conftest import BASE


def test_days_and_local_hours() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("mon,wed,fri") == frozenset({0, 2, 4})
    assert parse_days("sat-mon") == frozenset({5, 6, 0})
    slots = plan(
        date(2027, 3, 26),
        date(2027, 3, 29),
        parse_days("mon,fri"),
        [(time(9), time(10))],
        timedelta(minutes=30),
        ZoneInfo("Europe/Berlin"),
    )
    # Friday in winter time (UTC+1), Monday after the change to summer time (UTC+2)
    assert [s.isoformat() for s, _ in slots] == [
        "2027-03-26T08:00:00+00:00",
        "2027-03-26T08:30:00+00:00",
        "2027-03-29T07:00:00+00:00",
        "2027-03-29T07:30:00+00:00",
    ]


@pytest.fixture
async def served(tmp_path: Path) -> Any:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    app = create_app(Settings(storage=storage, auth="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            doctor = {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]}
            assert (await http.put("Practitioner/dr", json=doctor)).status_code == 201
            yield http, storage


async def test_schedule_create_while_the_server_runs(
    served: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    http, storage = served
    first = date.today() + timedelta(days=7)
    argv = [
        "schedule",
        "create",
        "--storage",
        storage,
        "--actor",
        "Practitioner/dr",
        "--from",
        first.isoformat(),
        "--to",
        (first + timedelta(days=6)).isoformat(),
        "--days",
        "mon,wed,fri",
        "--hours",
        "09:00-10:00,14:00-15:00",
        "--slot",
        "20m",
        "--virtual",
        "--tz",
        "America/New_York",
    ]
    assert await asyncio.to_thread(main, argv) == 0
    assert "18 slots created, 0 already there" in capsys.readouterr().out
    assert await asyncio.to_thread(main, argv) == 0
    assert "0 slots created, 18 already there" in capsys.readouterr().out
    schedules = (await http.get("Schedule", params={"actor": "Practitioner/dr"})).json()
    assert schedules["total"] == 1
    params = {
        "start": first.isoformat(),
        "end": (first + timedelta(days=7)).isoformat(),
        "practitioner": "Practitioner/dr",
        "visit-type": "http://terminology.hl7.org/CodeSystem/v3-ActCode|VR",
        "_count": "50",
    }
    found = (await http.get("Appointment/$find", params=params)).json()
    starts = [e["resource"]["start"] for e in found["entry"]]
    assert len(starts) == 18 and starts == sorted(starts)
    assert all(
        s[11:16]
        in (
            "13:00",
            "13:20",
            "13:40",
            "14:00",
            "14:20",
            "14:40",
            "18:00",
            "18:20",
            "18:40",
            "19:00",
            "19:20",
            "19:40",
        )
        for s in starts
    )


def test_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    base = ["schedule", "create", "--storage", storage, "--from", "2027-01-04", "--to"]
    assert (
        main([*base, "2027-01-08", "--actor", "Practitioner/x", "--hours", "9-10", "--slot", "20m"])
        == 2
    )
    assert "--hours" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "2027-01-08",
                "--actor",
                "Practitioner/x",
                "--hours",
                "09:00-10:00",
                "--slot",
                "20m",
            ]
        )
        == 1
    )
    assert "Practitioner/x does not exist" in capsys.readouterr().err
