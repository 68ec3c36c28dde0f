"""The outbox in the SQLite file: the ``event`` table, one row per version, inserted by
``SQLiteStore._apply`` in the writer's transaction (so an acknowledged write's event is
as durable as the write), and the ``event_cursor`` table of the readers' positions and
leases, changed in short transactions of the store's writer (its turn, ``BEGIN
IMMEDIATE``: a compare-and-set across every process sharing the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fhir_server.events.outbox import CursorState, Event

if TYPE_CHECKING:
    from fhir_server.storage.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY,  -- the version's history seq (commit order)
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    method TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_cursor (
    key TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    number INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0
);
"""

INSERT_EVENT = "INSERT INTO event (seq, type, id, version, method) VALUES (?,?,?,?,?)"

_CURSOR = "key, position, number, attempts, next_at"


class SQLiteOutbox:
    """:class:`fhir_server.events.outbox.Outbox` on a :class:`SQLiteStore`'s file."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def last_seq(self) -> int:
        rows = self._store.query("SELECT max(seq) FROM event", ())
        return int(rows[0][0] or 0)

    async def events_after(self, seq: int, limit: int) -> list[Event]:
        rows = self._store.query(
            "SELECT seq, type, id, version, method FROM event WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [Event(*row) for row in rows]

    async def open_cursor(self, key: str, position: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO event_cursor (key, position) VALUES (?, ?) ON CONFLICT (key)"
                " DO UPDATE SET position = max(position, excluded.position)",
                (key, position),
            )

        await self._store.run_write(run)

    async def claim(
        self, keys: Sequence[str], owner: str, now: float, until: float
    ) -> list[CursorState]:
        marks = ",".join("?" * len(keys))

        def run(conn: sqlite3.Connection) -> list[CursorState]:
            conn.execute(
                f"UPDATE event_cursor SET owner = ?, until = ? WHERE key IN ({marks})"
                " AND (owner IS NULL OR owner = ? OR until < ?)",
                (owner, until, *keys, owner, now),
            )
            rows = conn.execute(
                f"SELECT {_CURSOR} FROM event_cursor WHERE key IN ({marks}) AND owner = ?",
                (*keys, owner),
            )
            return [CursorState(*row) for row in rows]

        if not keys:
            return []
        return await self._store.run_write(run)

    async def advance(self, key: str, owner: str, position: int, number: int) -> bool:
        return await self._update(
            "position = ?, number = ?, attempts = 0, next_at = 0", (position, number), key, owner
        )

    async def advance_many(self, owner: str, states: Sequence[tuple[str, int, int]]) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            lost = set()
            for key, position, number in states:
                changed = conn.execute(
                    "UPDATE event_cursor SET position = ?, number = ?, attempts = 0,"
                    " next_at = 0 WHERE key = ? AND owner = ?",
                    (position, number, key, owner),
                ).rowcount
                if changed != 1:
                    lost.add(key)
            return lost

        return await self._store.run_write(run)

    async def failed(self, key: str, owner: str, attempts: int, next_at: float) -> bool:
        return await self._update("attempts = ?, next_at = ?", (attempts, next_at), key, owner)

    async def release(self, key: str, owner: str) -> None:
        await self._update("owner = NULL, until = 0", (), key, owner)

    async def drop_cursor(self, key: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM event_cursor WHERE key = ?", (key,))

        await self._store.run_write(run)

    async def min_position(self, keys: Sequence[str]) -> int | None:
        if not keys:
            return None
        marks = ",".join("?" * len(keys))
        sql = f"SELECT min(position) FROM event_cursor WHERE key IN ({marks})"
        return self._store.query(sql, tuple(keys))[0][0]

    async def seq_updated_before(self, instant: str) -> int:
        rows = self._store.query(
            "SELECT seq FROM history WHERE last_updated < ? ORDER BY last_updated DESC LIMIT 1",
            (instant,),
        )
        return int(rows[0][0]) if rows else 0

    async def prune(self, through: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM event WHERE seq <= ?", (through,)).rowcount

        return await self._store.run_write(run)

    async def _update(self, sets: str, params: tuple[object, ...], key: str, owner: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            sql = f"UPDATE event_cursor SET {sets} WHERE key = ? AND owner = ?"
            return conn.execute(sql, (*params, key, owner)).rowcount == 1

        return await self._store.run_write(run)
