"""``_lastUpdated`` on SQLite: ranges and sorts served by the ``(type, last_updated)``
index of live resources, so "what changed since T" (an EHR's or an app's sync) reads the
changed rows only, and ``_sort=_lastUpdated`` pages walk the index in order
(https://hl7.org/fhir/R4/search.html#lastUpdated, #sort)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from fhir_server.storage.base import WriteRequest
from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.storage.sqlite_page import build_select
from fhir_server.storage.sqlite_search import Compiler
from tests.store_support import observation_query, put, sqlite_store


def _observation(id_: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
    }


def _plan(conn: sqlite3.Connection, store: SQLiteStore, items: list[tuple[str, str]]) -> str:
    sql, params, _ = build_select(
        Compiler(conn, store._param_ids), observation_query(items), None, 6
    )
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


async def test_last_updated_ranges_and_sorts_use_the_index(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite3"
    async with sqlite_store(path) as store:
        written = []
        for n in range(12):
            result = await store.write(put(_observation(f"o{n}")))
            written.append(result.stored)
            await asyncio.sleep(0.003)  # distinct instants (millisecond precision)
        await store.write(WriteRequest("Observation", "o3", "delete"))
        updated = (await store.write(put(_observation("o5")))).stored  # now the newest
        live = [v for v in written if v.id not in ("o3", "o5")] + [updated]
        since = written[7].last_updated

        page = await store.search(
            observation_query([("_lastUpdated", f"gt{since}"), ("_sort", "_lastUpdated")]),
            None,
            20,
            True,
        )
        expected = sorted((v for v in live if v.last_updated > since), key=lambda v: v.last_updated)
        assert [v.id for v in page.entries] == [v.id for v in expected]
        assert page.total == len(expected) == 5  # o8..o11 and o5's new version

        newest = await store.search(observation_query([("_sort", "-_lastUpdated")]), None, 3, True)
        assert [v.id for v in newest.entries] == ["o5", "o11", "o10"]
        assert newest.total == 11
        rest = await store.search(
            observation_query([("_sort", "-_lastUpdated")]), newest.next_cursor, 20, False
        )
        everything = [v.id for v in newest.entries + rest.entries]
        assert everything == [v.id for v in sorted(live, key=lambda v: v.last_updated)][::-1]

        conn = sqlite3.connect(path)
        try:
            plan = _plan(conn, store, [("_lastUpdated", f"gt{since}")])
            assert "USING INDEX resource_updated (type=? AND last_updated>?)" in plan, plan
            for sort in ("_lastUpdated", "-_lastUpdated"):
                plan = _plan(conn, store, [("_sort", sort)])
                assert "resource_updated" in plan, plan
                assert "TEMP B-TREE FOR ORDER BY" not in plan, plan  # no sort of every row
        finally:
            conn.close()
