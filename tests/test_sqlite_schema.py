"""The SQLite store's schema migrations: a file written by an earlier version of the
server is brought up to date on start-up, and its searches keep their answers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fhir_server import cli
from fhir_server.storage.base import HistoryQuery, WriteRequest
from fhir_server.storage.open import open_store
from fhir_server.storage.sqlite_index import (
    INDEX_TABLES,
    REFERENCE_MATCH_COLUMNS,
    TOKEN_MATCH_COLUMNS,
    res_index_columns,
)
from resources import fhir_json
from tests.store_support import observation_query, put, sqlite_store


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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 8
    conn.close()


async def test_schema_4_files_get_the_covering_reference_index(tmp_path: Path) -> None:
    """v5: ``idx_reference_match`` holds ``res_pk``, and the searches it drives read no
    table rows (the plan says COVERING INDEX)."""
    path = tmp_path / "fhir.sqlite3"
    url = f"sqlite:///{path}"
    async with sqlite_store(path) as store:
        for id_, patient, code in [("o1", "p1", "1-8"), ("o2", "p1", "2-6"), ("o3", "p2", "1-8")]:
            await store.write(put(_observation(id_, patient, code)))
    assert _columns(path, "idx_reference_match") == list(REFERENCE_MATCH_COLUMNS)

    conn = sqlite3.connect(path)  # what schema 4 had
    conn.execute("DROP INDEX idx_reference_match")
    conn.execute("CREATE INDEX idx_reference_match ON idx_reference (pid, target_id, target_type)")
    conn.execute("PRAGMA user_version=4")
    conn.commit()
    conn.close()

    assert await _search_ids(url) == ["o1"]
    assert _columns(path, "idx_reference_match") == list(REFERENCE_MATCH_COLUMNS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 8
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT res_pk FROM idx_reference"
        " WHERE pid = 1 AND target_id = 'p1' AND target_type = 'Patient'"
    ).fetchall()
    conn.close()
    assert any("COVERING INDEX idx_reference_match" in row[3] for row in plan), plan


def _as_schema_3(path: Path) -> None:
    """What schema 3 wrote: every current content in ``history`` too."""
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE history SET content = (SELECT content FROM resource WHERE resource.seq ="
        " history.seq) WHERE seq IN (SELECT seq FROM resource)"
    )
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _stored_twice(path: Path) -> int:
    """History rows holding a content that is also the current content in ``resource``."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT count(*) FROM history JOIN resource ON resource.seq = history.seq"
            " WHERE history.content IS NOT NULL"
        ).fetchone()[0]
    finally:
        conn.close()


async def _versions(url: str, id_: str) -> list[tuple[int, str, str | None]]:
    """(version, method, code) of each version: from history, then each by vread."""
    store = open_store(url)
    await store.open()
    try:
        page = await store.history(HistoryQuery(type="Observation", id=id_, count=10))
        found = []
        for entry in page.entries:
            vread = await store.vread("Observation", id_, entry.version)
            assert vread is not None and vread.content == entry.content
            code = None
            if entry.content is not None:
                code = fhir_json.loads(entry.content)["code"]["coding"][0]["code"]
            found.append((entry.version, entry.method, code))
        return found
    finally:
        await store.close()


async def test_a_version_content_is_stored_once(tmp_path: Path) -> None:
    """Schema 4: a current version's content is only in ``resource``; it moves to its
    ``history`` row when replaced. History, vread and search give the same answers as
    before, and a schema-3 file (every content twice) is brought to that on start-up."""
    path = tmp_path / "fhir.sqlite3"
    url = f"sqlite:///{path}"
    store = open_store(url)
    await store.open()
    try:
        await store.write(put(_observation("o1", "p1", "1-8")))
        await store.write(put(_observation("o1", "p1", "2-6")))
        await store.write(put(_observation("o1", "p1", "1-8")))
        await store.write(put(_observation("o2", "p1", "2-6")))
        await store.write(put(_observation("o3", "p1", "1-8")))
        await store.write(WriteRequest("Observation", "o3", "delete", None))
        await store.write(put(_observation("o3", "p1", "2-6")))
        await store.write(put(_observation("o4", "p1", "2-6")))
        await store.write(WriteRequest("Observation", "o4", "delete", None))
    finally:
        await store.close()
    o1 = [(3, "update", "1-8"), (2, "update", "2-6"), (1, "update", "1-8")]
    o3 = [(3, "update", "2-6"), (2, "delete", None), (1, "update", "1-8")]
    o4 = [(2, "delete", None), (1, "update", "2-6")]
    assert _stored_twice(path) == 0
    assert await _versions(url, "o1") == o1
    assert await _versions(url, "o3") == o3
    assert await _versions(url, "o4") == o4
    assert await _search_ids(url) == ["o1"]

    _as_schema_3(path)
    assert _stored_twice(path) == 3

    assert await _versions(url, "o1") == o1
    assert _stored_twice(path) == 0
    assert await _versions(url, "o3") == o3
    assert await _versions(url, "o4") == o4
    assert await _search_ids(url) == ["o1"]


def test_compact_converts_and_gives_the_space_back(tmp_path: Path) -> None:
    """``fhir-server compact``: a schema-3 file (every current content twice) is converted
    and rewritten smaller, with the same versions."""
    path = tmp_path / "fhir.sqlite3"
    url = f"sqlite:///{path}"

    async def fill() -> None:
        store = open_store(url)
        await store.open()
        try:
            for n in range(300):
                observation = _observation(f"o{n}", "p1", "1-8")
                observation["note"] = [{"text": f"note {n} " + "x" * 2000}]
                await store.write(put(observation))
            await store.write(put(_observation("o1", "p1", "2-6")))
        finally:
            await store.close()

    asyncio.run(fill())
    _as_schema_3(path)
    before = path.stat().st_size
    assert _stored_twice(path) == 300

    assert cli.main(["compact", "--storage", url]) == 0
    assert _stored_twice(path) == 0
    assert path.stat().st_size < before * 0.7
    assert asyncio.run(_versions(url, "o1")) == [(2, "update", "2-6"), (1, "update", "1-8")]
    assert asyncio.run(_versions(url, "o299")) == [(1, "update", "1-8")]


def test_compact_needs_a_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compact", "--storage", f"sqlite:///{tmp_path / 'none.sqlite3'}"]) == 2
    assert "no SQLite file" in capsys.readouterr().err
    assert cli.main(["compact", "--storage", "mongomock://x"]) == 2
    assert "only SQLite stores" in capsys.readouterr().err


async def test_a_replaced_content_cannot_be_dropped_and_newer_files_are_refused(
    tmp_path: Path,
) -> None:
    """A server of an earlier release writing to a schema-4 file would end a version
    without moving its content out of ``resource`` (it would be lost): the file refuses
    that write. A file of a newer schema than this server knows is not opened."""
    path = tmp_path / "fhir.sqlite3"
    url = f"sqlite:///{path}"
    async with sqlite_store(path) as store:
        await store.write(put(_observation("o1", "p1", "1-8")))
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="needs its content"):
            # what schema 3's writer did when it replaced a version
            conn.execute("UPDATE history SET ended = '2030-01-01' WHERE version = 1")
        conn.rollback()
    finally:
        conn.close()
    assert await _versions(url, "o1") == [(1, "update", "1-8")]

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    newer = open_store(url)
    with pytest.raises(RuntimeError, match="schema 99, written by a newer fhir-server"):
        await newer.open()
    await newer.close()
