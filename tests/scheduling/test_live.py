"""No double booking across processes (issue 18): the real ``fhir-server serve`` with two
workers on one SQLite file, 20 concurrent ``$book`` of one free Slot on separate
connections (both workers take them): exactly one is booked, the others get 409 naming
the Slot, and a search afterwards finds one booked Appointment for it. One run, not per
store: the Mongo stand-in lives inside one process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.live import LiveServer


def _seed(base: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    resources = [
        {"resourceType": "Patient", "id": "p", "name": [{"family": "Doe"}]},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]},
        {"resourceType": "Schedule", "id": "sched", "actor": [{"reference": "Practitioner/dr"}]},
        {
            "resourceType": "Slot",
            "id": "one",
            "schedule": {"reference": "Schedule/sched"},
            "status": "free",
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    ]
    for resource in resources:
        path = f"{base}/{resource['resourceType']}/{resource['id']}"
        assert httpx.put(path, json=resource).status_code == 201


async def _book_all(base: str, n: int) -> list[httpx.Response]:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "appt-resource",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "proposed",
                    "slot": [{"reference": "Slot/one"}],
                    "participant": [
                        {"actor": {"reference": "Patient/p"}, "status": "needs-action"},
                        {"actor": {"reference": "Practitioner/dr"}, "status": "needs-action"},
                    ],
                },
            }
        ],
    }

    async def book() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:  # a connection of its own
            return await client.post(f"{base}/Appointment/$book", json=body)

    return await asyncio.gather(*(book() for _ in range(n)))


def test_twenty_bookings_of_one_slot_across_two_workers(tmp_path: Path) -> None:
    server = LiveServer(
        f"sqlite:///{tmp_path}/fhir.sqlite3",
        tmp_path / "server.log",
        FHIR_SERVER_WORKERS="2",
        TMPDIR=str(tmp_path),
    )
    try:
        _seed(server.base)
        responses = asyncio.run(_book_all(server.base, 20))
        booked = httpx.get(
            f"{server.base}/Appointment", params={"slot": "Slot/one", "status": "booked"}
        ).json()
        slot = httpx.get(f"{server.base}/Slot/one").json()
    finally:
        server.stop()
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, (codes, [r.text for r in responses if r.status_code >= 500])
    assert all("Slot/one" in r.text for r in responses if r.status_code == 409)
    assert booked["total"] == 1
    assert slot["status"] == "busy"
