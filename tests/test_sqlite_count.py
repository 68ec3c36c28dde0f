"""A search's total on SQLite counted from the index rows alone when a parameter drives
and the other conditions probe index rows: the same totals as counting resources
(deleted resources and earlier versions left out, a resource matching twice counted
once), without reading the resource table (https://hl7.org/fhir/R4/search.html#total)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from fhir_server.storage.base import WriteRequest
from fhir_server.storage.sqlite_page import build_count
from fhir_server.storage.sqlite_search import Compiler
from resources.search.query import AccessClause, Grant
from tests.store_support import observation_query, put, sqlite_store


def _observation(id_: str, codes: list[str], status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": c} for c in codes]},
        "subject": {"reference": f"Patient/{id_}-p"},
    }


async def test_index_only_totals_match_the_resources(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite3"
    async with sqlite_store(path) as store:
        await store.write(put(_observation("a", ["1-8"])))
        await store.write(put(_observation("b", ["1-8", "1-8"])))  # matches twice
        await store.write(put(_observation("c", ["1-8"], "amended")))
        await store.write(put(_observation("d", ["2-6"])))
        await store.write(put(_observation("e", ["1-8"])))
        await store.write(WriteRequest("Observation", "e", "delete"))
        await store.write(put(_observation("d", ["1-8"])))  # its new version matches
        await store.write(put(_observation("a", ["2-6"])))  # its new version does not

        code = ("code", "http://loinc.org|1-8")
        cases = {
            (code,): 3,  # b, c, d
            (code, ("status", "final")): 2,  # b, d
            (code, ("status", "final,amended")): 3,
            (("code", "http://loinc.org|2-6"),): 1,  # a
        }
        for items, expected in cases.items():
            page = await store.search(observation_query(list(items), 2), None, 2, True)
            assert page.total == expected, items
            assert page.next_cursor is not None or expected <= 2

        conn = sqlite3.connect(path)
        try:
            compiler = Compiler(conn, store._param_ids)
            sql, params = build_count(compiler, observation_query([code, ("status", "final")]))
            assert "resource" not in sql  # the index rows alone
            assert conn.execute(sql, params).fetchone()[0] == 2
            plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "COVERING INDEX idx_token_match" in plan, plan
            # with access limits the resource rows are read (compartments are theirs)
            limited = AccessClause((Grant(None, ("Patient/b-p",), frozenset({"Observation"})),))
            sql, params = build_count(
                Compiler(conn, store._param_ids, limited), observation_query([code])
            )
            assert "FROM resource" in sql
            assert conn.execute(sql, params).fetchone()[0] == 1
        finally:
            conn.close()
