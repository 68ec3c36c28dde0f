"""The SQLite store reads through memory-mapped I/O (https://sqlite.org/mmap.html) on its
request connections (setting ``sqlite_mmap_mib``), not on a bulk job's connections."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fhir_server.config import Settings
from fhir_server.storage.base import bulk_reads
from fhir_server.storage.open import open_store
from fhir_server.storage.sqlite import SQLiteStore
from tests.store_support import observation_query, put


def _mmap(conn: object) -> int:
    return int(conn.execute("PRAGMA mmap_size").fetchone()[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize("mib", [64, 0])
async def test_request_connections_map_the_file_and_bulk_ones_do_not(
    tmp_path: Path, mib: int
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}", sqlite_mmap_mib=mib)
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
        await store.write(put(obs))
        assert _mmap(store._reader) == mib * 1024 * 1024
        assert _mmap(store._inline) == mib * 1024 * 1024
        assert _mmap(store._writer) == mib * 1024 * 1024
        token = bulk_reads.set(True)
        try:  # an export's page: its own thread and connection, a small cache, no map
            page = await store.search(observation_query([]), None, 5, False)
            bulk = await store._budgeted(lambda conn: _mmap(conn))
        finally:
            bulk_reads.reset(token)
        assert [e.id for e in page.entries] == ["o1"]
        assert bulk == 0
    finally:
        await store.close()


def test_the_setting_is_a_size_in_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().sqlite_mmap_mib == 1024
    monkeypatch.setenv("FHIR_SERVER_SQLITE_MMAP_MIB", "0")
    assert Settings().sqlite_mmap_mib == 0
    monkeypatch.setenv("FHIR_SERVER_SQLITE_MMAP_MIB", "-1")
    with pytest.raises(ValidationError):
        Settings()
