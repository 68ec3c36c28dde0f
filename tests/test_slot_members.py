"""A Slot of a patient's own Schedule (a Patient ``Schedule.actor``) is in that patient's
compartment, on every store (issue 18, ``resources.compartments.slot_schedule``): the
store takes the Schedule's compartments into the Slot's versions when the Slot is
written, moves the Slots along when the Schedule's actors change (in the same
transaction, whatever the order of a batch), and records them for stores written before
(the start-up migrations). Slots of a practitioner's Schedule stay directory data."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from fhir_server.storage.base import WriteRequest
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.open import open_store
from resources.compartments import DIRECTORY_TYPES, patient_member_types
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AccessClause, Grant
from tests.conftest import STORES, storage_url
from tests.store_support import put


def _only(patient: str) -> AccessClause:
    """What a token of ``patient`` (patient/*.rs) sees."""
    grant = Grant(None, (f"Patient/{patient}",), patient_member_types(), (), DIRECTORY_TYPES)
    return AccessClause((grant,))


def schedule(id_: str, *actors: str) -> dict[str, Any]:
    return {"resourceType": "Schedule", "id": id_, "actor": [{"reference": a} for a in actors]}


def slot(id_: str, schedule_ref: str, status: str = "free", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": id_,
        "schedule": {"reference": schedule_ref},
        "status": status,
        "start": "2027-01-04T09:00:00Z",
        "end": "2027-01-04T09:20:00Z",
        **extra,
    }


async def _visible(store: Any, patient: str, id_: str, version: int | None = None) -> bool:
    if version is None:
        found = await store.read("Slot", id_, _only(patient))
    else:
        found = await store.vread("Slot", id_, version, _only(patient))
    return found is not None


async def _searched(store: Any, patient: str, items: list[tuple[str, str]]) -> set[str]:
    query = parse_search(
        ["Slot"], items, strict=True, params_for=search_params, max_count=100, default_count=100
    )
    query.access = _only(patient)
    page = await store.search(query, None, 100, False)
    return {entry.id for entry in page.entries}


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Any]:
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with opened(storage_url(request.param, tmp_path)) as store:
        yield store


async def test_a_slot_of_a_patients_schedule_is_that_patients(store: Any) -> None:
    await store.write(put(schedule("own", "Patient/bob")))
    await store.write(put(schedule("dr-s", "Practitioner/dr")))
    await store.write(put(slot("s-own", "Schedule/own")))
    await store.write(put(slot("s-abs", "http://example.org/fhir/Schedule/own")))
    await store.write(put(slot("s-dr", "Schedule/dr-s")))
    for id_ in ("s-own", "s-abs"):
        assert await _visible(store, "bob", id_)
        assert not await _visible(store, "alice", id_)
        assert not await _visible(store, "alice", id_, 1)
    assert await _visible(store, "alice", "s-dr") and await _visible(store, "bob", "s-dr")
    assert await _searched(store, "alice", [("status", "free")]) == {"s-dr"}
    assert await _searched(store, "bob", [("status", "free")]) == {"s-own", "s-abs", "s-dr"}
    # booked (an update that keeps its Schedule) and deleted: still Bob's
    await store.write(put(slot("s-own", "Schedule/own", status="busy")))
    await store.write(put(slot("s-dr", "Schedule/dr-s", status="busy")))
    assert not await _visible(store, "alice", "s-own") and await _visible(store, "bob", "s-own")
    assert await _visible(store, "alice", "s-dr")
    await store.write(WriteRequest("Slot", "s-own", "delete"))
    assert await store.read("Slot", "s-own", _only("alice")) is None
    tombstone = await store.read("Slot", "s-own", _only("bob"))
    assert tombstone is not None and tombstone.deleted
    # moved to a practitioner's Schedule: the new version is directory data again
    await store.write(put(slot("s-abs", "Schedule/dr-s")))
    assert await _visible(store, "alice", "s-abs")
    assert not await _visible(store, "alice", "s-abs", 1)
    # and a practitioner's Slot moved to Bob's Schedule is Bob's
    await store.write(put(slot("s-dr", "Schedule/own", status="busy")))
    assert not await _visible(store, "alice", "s-dr") and await _visible(store, "bob", "s-dr")


async def test_slots_follow_their_schedules_actors(store: Any) -> None:
    await store.write(put(schedule("sch", "Practitioner/dr")))
    await store.write(put(slot("a", "Schedule/sch")))
    await store.write(put(slot("a", "Schedule/sch", status="busy")))
    await store.write(put(slot("b", "Schedule/sch", extension=[_reserved("carol")])))
    assert await _visible(store, "alice", "a") and not await _visible(store, "alice", "b")
    # the Schedule becomes Bob's: every version of its Slots is Bob's
    await store.write(put(schedule("sch", "Practitioner/dr", "Patient/bob")))
    for version in (None, 1, 2):
        assert not await _visible(store, "alice", "a", version)
        assert await _visible(store, "bob", "a", version)
    assert await _searched(store, "alice", [("schedule", "Schedule/sch")]) == set()
    # and a booking afterwards keeps it Bob's
    await store.write(put(slot("a", "Schedule/sch", status="free")))
    assert not await _visible(store, "alice", "a") and await _visible(store, "bob", "a")
    # Bob's no more: the current versions are directory data (or Carol's, by their own
    # reference), the versions written while the Schedule was Bob's stay his
    await store.write(put(schedule("sch", "Practitioner/dr")))
    assert await _visible(store, "alice", "a") and await _visible(store, "alice", "a", 3)
    assert not await _visible(store, "alice", "a", 2)
    assert await _visible(store, "carol", "b") and not await _visible(store, "bob", "b")
    assert not await _visible(store, "alice", "b")
    assert await _searched(store, "alice", [("schedule", "Schedule/sch")]) == {"a"}


async def test_a_batch_writing_the_slot_before_its_schedule(store: Any) -> None:
    """One transaction that writes the Slots first and then the Schedule that makes them
    a patient's (a transaction Bundle, an import)."""
    await store.write_batch(
        [
            put(slot("early", "Schedule/later")),
            put(slot("early-2", "Schedule/later")),
            put(schedule("later", "Patient/bob")),
        ]
    )
    assert not await _visible(store, "alice", "early")
    assert not await _visible(store, "alice", "early-2")
    assert await _visible(store, "bob", "early")
    await store.write_batch(
        [put(slot("early", "Schedule/later", status="busy")), put(schedule("later", "Location/x"))]
    )
    assert await _visible(store, "alice", "early")


def _reserved(patient: str) -> dict[str, Any]:
    return {
        "url": "http://example.org/fhir/StructureDefinition/reserved-for",
        "valueReference": {"reference": f"Patient/{patient}"},
    }


async def _write_old_data(url: str) -> None:
    async with opened(url) as store:
        await store.write(put(schedule("own", "Patient/bob")))
        await store.write(put(schedule("dr-s", "Practitioner/dr")))
        await store.write(put(slot("s-own", "Schedule/own")))
        await store.write(put(slot("s-own", "Schedule/own", status="busy")))
        await store.write(put(slot("s-dr", "Schedule/dr-s")))


async def _check_migrated(url: str) -> None:
    async with opened(url) as store:
        for version in (None, 1, 2):
            assert not await _visible(store, "alice", "s-own", version)
            assert await _visible(store, "bob", "s-own", version)
        assert await _visible(store, "alice", "s-dr")


async def test_sqlite_files_of_schema_7_get_the_slots_memberships(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    await _write_old_data(url)
    # what schema 7 recorded: a Slot's own references only
    conn = sqlite3.connect(tmp_path / "fhir.sqlite3")
    conn.execute("DELETE FROM member WHERE seq IN (SELECT seq FROM history WHERE type = 'Slot')")
    conn.execute("PRAGMA user_version=7")
    conn.commit()
    conn.close()
    await _check_migrated(url)


async def test_mongo_databases_of_schema_4_get_the_slots_memberships(tmp_path: Path) -> None:
    url = f"mongomock://{tmp_path.name}/fhir"
    await _write_old_data(url)
    async with opened(url) as store:
        assert isinstance(store, MongoStore)
        await store.db["history"].update_many({"type": "Slot"}, {"$set": {"m": []}})
        await store.db["resources"].update_many({"type": "Slot"}, {"$set": {"m": []}})
        await store.db["counters"].update_one({"_id": "schema"}, {"$set": {"version": 4}})
    await _check_migrated(url)
