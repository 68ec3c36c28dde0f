"""Each stored version records the Patient compartments it is in (the basis of SMART
patient-context access on every read path), and stores written by an earlier version of
the server get them on start-up."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fhir_server.storage.base import WriteRequest
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.open import open_store
from resources.compartments import DIRECTORY_TYPES, memberships, patient_member_types
from resources.search.extract import indexer_for
from resources.search.query import AccessClause, Grant
from tests.store_support import put

OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "x"},
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "Patient/p2"}, {"reference": "Practitioner/d"}],
}


def _only(patient: str) -> AccessClause:
    grant = Grant(None, (f"Patient/{patient}",), patient_member_types(), (), DIRECTORY_TYPES)
    return AccessClause((grant,))


def test_memberships_follow_the_patient_compartment_definition() -> None:
    rows, _ = indexer_for("Observation").index(OBS)
    assert sorted(memberships("Observation", "o1", rows)) == ["Patient/p1", "Patient/p2"]
    patient = {"resourceType": "Patient", "id": "p9"}
    assert memberships("Patient", "p9", indexer_for("Patient").index(patient)[0]) == ("Patient/p9",)
    org = {"resourceType": "Organization", "id": "x", "name": "n"}
    assert memberships("Organization", "x", indexer_for("Organization").index(org)[0]) == ()


async def _write_versions(url: str) -> None:
    store = open_store(url)
    await store.open()
    try:
        await store.write(put(OBS))
        moved = {**OBS, "subject": {"reference": "Patient/p3"}, "performer": []}
        await store.write(put(moved))
        await store.write(WriteRequest("Observation", "o1", "delete"))
    finally:
        await store.close()


async def _check_visibility(url: str) -> None:
    store = open_store(url)
    await store.open()
    try:
        # version 1 was in p1's and p2's compartments, version 2 and the tombstone in p3's
        assert await store.vread("Observation", "o1", 1, _only("p1")) is not None
        assert await store.vread("Observation", "o1", 2, _only("p1")) is None
        assert await store.vread("Observation", "o1", 2, _only("p3")) is not None
        current = await store.read("Observation", "o1", _only("p3"))
        assert current is not None and current.deleted
        assert await store.read("Observation", "o1", _only("p1")) is None
    finally:
        await store.close()


async def test_sqlite_versions_record_their_compartments_and_old_files_are_backfilled(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    await _write_versions(url)
    await _check_visibility(url)
    # a file of schema 1 has no member table rows: start-up fills them in
    conn = sqlite3.connect(tmp_path / "fhir.sqlite3")
    conn.execute("DELETE FROM member")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    await _check_visibility(url)


async def test_mongo_versions_record_their_compartments_and_old_databases_are_backfilled(
    tmp_path: Path,
) -> None:
    url = f"mongomock://{tmp_path.name}/fhir"
    await _write_versions(url)
    await _check_visibility(url)
    store = open_store(url)
    assert isinstance(store, MongoStore)
    await store.open()
    try:
        await store.db["history"].update_many({}, {"$unset": {"m": ""}})
        await store.db["resources"].update_many({}, {"$unset": {"m": ""}})
        await store.db["counters"].delete_one({"_id": "schema"})
    finally:
        await store.close()
    await _check_visibility(url)
