"""System-level history for a patient-context caller on SQLite: the right versions, found
through indexes (the caller's compartment rows and the types outside the Patient
compartment), never by walking every version (https://hl7.org/fhir/R4/http.html#history,
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from fhir_server.storage.base import HistoryQuery
from resources.compartments import DIRECTORY_TYPES, patient_member_types
from resources.search.query import AccessClause, Grant
from tests.store_support import put, sqlite_store


def _observation(id_: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def test_patient_system_history_reads_its_rows_by_index(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite3"
    async with sqlite_store(path) as store:
        for resource in [
            {"resourceType": "Patient", "id": "p1"},
            {"resourceType": "Patient", "id": "p2"},
            {"resourceType": "Organization", "id": "org", "name": "Clinic"},
            _observation("o1", "p1"),
            _observation("o2", "p2"),
            _observation("o3", "p1"),
        ]:
            await store.write(put(resource))
        await store.write(put({**_observation("o3", "p1"), "status": "amended"}))
        await store.write(put({**_observation("o2", "p2"), "status": "amended"}))

        grant = Grant(None, ("Patient/p1",), patient_member_types(), (), DIRECTORY_TYPES)
        p1 = AccessClause((grant,))
        page = await store.history(HistoryQuery(access=p1, count=3))
        seen = [(v.type, v.id, v.version) for v in page.entries]
        assert seen == [
            ("Observation", "o3", 2),
            ("Observation", "o3", 1),
            ("Observation", "o1", 1),
        ]
        assert page.total == 5  # o3 twice, o1, the Organization, Patient p1
        rest = await store.history(
            HistoryQuery(access=p1, count=3, before_seq=page.next_before_seq)
        )
        assert [(v.type, v.id) for v in rest.entries] == [
            ("Organization", "org"),
            ("Patient", "p1"),
        ]
        assert rest.next_before_seq is None

        where, params = store._history_filter(HistoryQuery(access=p1))

    conn = sqlite3.connect(path)
    try:
        plan = [
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT count(*) FROM history WHERE {where}", params
            )
        ]
    finally:
        conn.close()
    assert not any(step.startswith("SCAN history") for step in plan), plan
    assert any("member" in step for step in plan) and any(
        "history_by_type" in step for step in plan
    )
