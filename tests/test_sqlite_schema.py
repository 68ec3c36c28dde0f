"""The SQLite store's schema migrations: a file written by an earlier version of the
server is brought up to date on start-up, and its searches keep their answers."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from fhir_server.storage.base import open_store
from fhir_server.storage.sqlite_index import (
    INDEX_TABLES,
    TOKEN_MATCH_COLUMNS,
    res_index_columns,
)
from tests.store_support import observation_query, put


def _observation(id_: str, patient: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2024-01-0{id_[-1]}",
    }


async def _search_ids(url: str) -> list[str]:
    store = open_store(url)
    await store.open()
    try:
        items = [("patient", "p1"), ("code", "http://loinc.org|1-8"), ("_sort", "-date")]
        query = observation_query(items)
        page = await store.search(query, None, 10, True)
        assert page.total == len(page.entries)
        return [entry.id for entry in page.entries]
    finally:
        await store.close()


def _columns(path: Path, index: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[2] for row in conn.execute(f"PRAGMA index_info({index})")]
    finally:
        conn.close()


def _res_index_columns(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: [row[2] for row in conn.execute(f"PRAGMA index_info({table}_res)")]
            for table in INDEX_TABLES
            if table != "idx_sort"
        }
    finally:
        conn.close()


def _expected() -> dict[str, list[str]]:
    return {t: list(res_index_columns(t)) for t in INDEX_TABLES if t != "idx_sort"}


async def test_schema_2_files_get_the_two_column_resource_indexes(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite3"
    url = f"sqlite:///{path}"
    store = open_store(url)
    await store.open()
    try:
        for id_, patient, code in [
            ("o1", "p1", "1-8"),
            ("o2", "p1", "2-6"),
            ("o3", "p1", "1-8"),
            ("o4", "p2", "1-8"),
        ]:
            await store.write(put(_observation(id_, patient, code)))
    finally:
        await store.close()
    assert await _search_ids(url) == ["o3", "o1"]
    assert _res_index_columns(path) == _expected()
    assert _res_index_columns(path)["idx_token"] == ["res_pk", "pid", "value", "system"]
    assert _columns(path, "idx_token_match") == list(TOKEN_MATCH_COLUMNS)

    # what schema 2 had: the per-resource indexes on res_pk alone
    conn = sqlite3.connect(path)
    for table in INDEX_TABLES:
        if table != "idx_sort":
            conn.execute(f"DROP INDEX {table}_res")
            conn.execute(f"CREATE INDEX {table}_res ON {table} (res_pk)")
    conn.execute("DROP INDEX idx_token_match")
    conn.execute("CREATE INDEX idx_token_match ON idx_token (pid, value, system)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    assert set(map(tuple, _res_index_columns(path).values())) == {("res_pk",)}

    assert await _search_ids(url) == ["o3", "o1"]
    assert _res_index_columns(path) == _expected()
    assert _columns(path, "idx_token_match") == list(TOKEN_MATCH_COLUMNS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()
