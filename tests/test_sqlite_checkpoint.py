"""The SQLite store checkpoints its write-ahead log on a thread of its own
(``fhir_server.storage.sqlite_checkpoint``), not in the commits of its writes: the
database file takes the writes soon after they commit, with far fewer log pages than
SQLite's automatic threshold, and the writer's own threshold is only a backstop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from fhir_server.storage import sqlite_checkpoint
from fhir_server.storage.open import open_store
from fhir_server.storage.sqlite import SQLiteStore
from tests.store_support import observation_query, put


def _observation(n: int) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"text": "x" * 200},
    }


def _pages_in_file(path: Path) -> int:
    """The pages the database file itself holds (the log's frames not counted)."""
    return path.stat().st_size // 4096


async def test_writes_reach_the_database_file_without_a_commit_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.sqlite3"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        assert store._writer is not None
        backstop = store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert backstop == sqlite_checkpoint.BACKSTOP_PAGES > 1000
        before = _pages_in_file(path)
        for n in range(300):  # a few hundred log pages: below any automatic threshold
            await store.write(put(_observation(n)))
        deadline = time.monotonic() + 10
        assert store._checkpointer is not None
        # the file grows while the checkpoint runs; its count goes up when it returns
        while _pages_in_file(path) <= before or store._checkpointer.checkpoints < 1:
            assert time.monotonic() < deadline, "the log was never checkpointed"
            await asyncio.sleep(0.05)
        page = await store.search(observation_query([]), None, 500, True)
        assert page.total == 300
    finally:
        await store.close()
    # closed: nothing is left in the log that the file does not have
    conn = sqlite3.connect(path)
    try:
        busy, log_frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and log_frames == done
        assert conn.execute("SELECT count(*) FROM resource").fetchone()[0] == 300
    finally:
        conn.close()


async def test_the_thread_stops_with_the_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    checkpointer = store._checkpointer
    assert checkpointer is not None and checkpointer._thread is not None
    thread = checkpointer._thread
    await store.write(put(_observation(1)))
    await store.close()
    assert not thread.is_alive()
