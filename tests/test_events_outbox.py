"""The durable outbox (DESIGN.md, events): every committed version is one event, written
in the same store transaction as the version, on every store; a rejected write is none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import BASE, JSON


def _outbox(client: httpx.AsyncClient) -> Any:
    app = client._transport.app  # type: ignore[attr-defined]
    return app.state.store.outbox


async def test_every_version_is_one_event_in_commit_order(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Event"}]}
    created = (await client.post("Patient", json=patient, headers=JSON)).json()
    pid = created["id"]
    await client.put(f"Patient/{pid}", json={**patient, "id": pid, "gender": "female"})
    await client.delete(f"Patient/{pid}")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0d8b6b0e-1f4e-4e6b-9a53-8e0d1f2a3b4c",
                "resource": {"resourceType": "Patient", "active": True},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:0d8b6b0e-1f4e-4e6b-9a53-8e0d1f2a3b4c"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert (await client.post("", json=bundle, headers=JSON)).status_code == 200
    events = await _outbox(client).events_after(0, 100)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [(e.type, e.version, e.method) for e in events[:3]] == [
        ("Patient", 1, "create"),
        ("Patient", 2, "update"),
        ("Patient", 3, "delete"),
    ]
    assert {e.id for e in events[:3]} == {pid}
    assert [(e.type, e.method) for e in events[3:]] == [
        ("Patient", "create"),
        ("Observation", "create"),
    ]
    assert await _outbox(client).last_seq() == events[-1].seq
    assert len(await _outbox(client).events_after(events[1].seq, 100)) == 3


async def test_a_refused_write_is_no_event(client: httpx.AsyncClient) -> None:
    created = await client.post("Patient", json={"resourceType": "Patient"}, headers=JSON)
    pid = created.json()["id"]
    before = await _outbox(client).last_seq()
    stale = {"resourceType": "Patient", "id": pid, "active": True}
    refused = await client.put(f"Patient/{pid}", json=stale, headers={"If-Match": 'W/"9"'})
    assert refused.status_code == 412
    bad = await client.post("Patient", json={"resourceType": "Patient", "gender": 7})
    assert bad.status_code == 400
    assert await _outbox(client).last_seq() == before


async def test_cursor_lease_is_a_compare_and_set(client: httpx.AsyncClient) -> None:
    outbox = _outbox(client)
    await outbox.open_cursor("Subscription/a", 5)
    await outbox.open_cursor("Subscription/b", 2)
    await outbox.open_cursor("Subscription/b", 1)  # exists: never moves back
    mine = await outbox.claim(["Subscription/a", "Subscription/b"], "one", 100.0, 130.0)
    assert sorted((c.key, c.position, c.number) for c in mine) == [
        ("Subscription/a", 5, 0),
        ("Subscription/b", 2, 0),
    ]
    assert await outbox.claim(["Subscription/a"], "two", 110.0, 140.0) == []
    assert await outbox.advance("Subscription/a", "one", 7, 1)
    assert not await outbox.advance("Subscription/a", "two", 8, 2)
    taken = await outbox.claim(["Subscription/a"], "two", 131.0, 160.0)  # expired
    assert [(c.position, c.number) for c in taken] == [(7, 1)]
    assert not await outbox.failed("Subscription/a", "one", 1, 0.0)
    await outbox.release("Subscription/a", "two")
    assert len(await outbox.claim(["Subscription/a"], "one", 132.0, 160.0)) == 1
    await outbox.open_cursor("Subscription/a", 9)  # reactivated: skips what came before
    again = await outbox.claim(["Subscription/a"], "one", 133.0, 160.0)
    assert [(c.position, c.number) for c in again] == [(9, 1)]


async def test_an_import_writes_one_event_per_version(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    from fhir_server.bulk_import import import_paths

    lines = [{"resourceType": "Patient", "id": f"imported-{n}", "active": True} for n in range(5)]
    data = tmp_path / "Patient.ndjson"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    before = await _outbox(client).last_seq()
    store = client._transport.app.state.store  # type: ignore[attr-defined]
    await import_paths(store, [data], workers=0)
    events = await _outbox(client).events_after(before, 100)
    assert sorted((e.type, e.id, e.version, e.method) for e in events) == [
        ("Patient", f"imported-{n}", 1, "update")
        for n in range(5)  # by id, as history says
    ]


async def test_a_standalone_mongodb_writes_the_event_after_the_history(tmp_path: Path) -> None:
    """No transactions: the event is inserted right after the version's history
    document (``fhir_server.events.outbox_mongo``)."""
    from fhir_server.app import create_app
    from fhir_server.config import Settings

    storage = f"mongomock://{tmp_path.name}-standalone/fhir?standalone=true"
    app = create_app(Settings(storage=storage, auth="off"))
    async with app.router.lifespan_context(app):
        assert not app.state.store.transactions
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            created = await http.post("Patient", json={"resourceType": "Patient"}, headers=JSON)
            pid = created.json()["id"]
            await http.delete(f"Patient/{pid}")
        events = await app.state.store.outbox.events_after(0, 10)
    assert [(e.id, e.version, e.method) for e in events] == [
        (pid, 1, "create"),
        (pid, 2, "delete"),
    ]
