"""``_id`` ANDed with other parameters (https://hl7.org/fhir/R4/search.html#combining):
every parameter must match. On SQLite an ``_id`` list drove the query and the index
probes of the other parameters were dropped (``Observation?_id=a&code=s|y`` found ``a``
whatever its code); and it read every resource of the type (or of the table) instead of
looking the ids up."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.storage.sqlite_index import ParamIds
from fhir_server.storage.sqlite_page import build_select
from fhir_server.storage.sqlite_search import Compiler
from resources.search.query import IdClause, SearchQuery


async def test_id_with_another_parameter_needs_both(client: httpx.AsyncClient) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "a",
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/s", "code": "x"}]},
    }
    response = await client.put("Observation/a", json=observation)
    assert response.status_code == 201, response.text
    for query, expected in [
        ("Observation?_id=a&code=http://example.org/s|x", 1),
        ("Observation?_id=a&code=http://example.org/s|y", 0),
        ("Observation?_id=a,b&status=final&code=http://example.org/s|y", 0),
        ("Observation?code=http://example.org/s|y&_id=a", 0),
    ]:
        bundle = (await client.get(query)).json()
        assert bundle["total"] == expected, query
        assert len(bundle.get("entry", [])) == expected, query


async def test_an_id_list_is_looked_up_in_the_type_id_index(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite3"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    for types in (("Organization",), ("Organization", "Practitioner")):
        query = SearchQuery(types, [IdClause(("a", "b"))])
        sql, params, _ = build_select(Compiler(conn, ParamIds()), query, None, 10)
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "SCAN" not in plan, plan
        assert "sqlite_autoindex_resource_1 (type=? AND id=?)" in plan, plan
