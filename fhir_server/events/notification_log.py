"""The events each topic-based Subscription was notified of, by event number: what
``$status`` counts and ``$events`` sends again (Subscriptions R5 Backport IG,
https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-events.html).

One record per (subscription, event number): the outbox event it was (seq, type, id,
version, interaction) and its time, kept once the endpoint accepted the notification and
written with the others of the next :data:`FLUSH` seconds in one write (again, with the
same content, when a process that died sends it again; a process killed within that
time leaves its last records unwritten: ``$events`` then lacks them, delivery and
numbering do not change; one that stops writes them, ``Dispatcher.stop``). Records
go with the outbox's pruning (``prune``: those of pruned events), so ``$events`` answers
what is still in the outbox's retention.

SQLite: the table ``subscription_event`` in the store's file (created when first
needed); MongoDB: the collection ``subscription_events`` (``_id`` =
``[subscription]#[number]``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import weakref
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING

from fhir_server.events.outbox_mongo import CURSORS

TABLE = """CREATE TABLE IF NOT EXISTS subscription_event (
    subscription TEXT NOT NULL,
    number INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    method TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (subscription, number)
)"""
COLLECTION = "subscription_events"

FLUSH = 0.2
"""Seconds the records of notifications are kept before they are written together."""

log = logging.getLogger("fhir_server.events")
_ready: weakref.WeakSet[Any] = weakref.WeakSet()
_pending: weakref.WeakKeyDictionary[Any, list[tuple[str, Record]]] = weakref.WeakKeyDictionary()
_flushing: weakref.WeakKeyDictionary[Any, asyncio.Task[None]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Record:
    number: int
    seq: int
    type: str
    id: str
    version: int
    method: str
    timestamp: str


def _raw(store: Any) -> Any:
    while hasattr(store, "inner"):
        store = store.inner
    return store


async def _sqlite(store: Any) -> Any:
    if store not in _ready:

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(TABLE)

        await store.run_write(run)
        _ready.add(store)
    return store


async def record(store: Any, subscription: str, item: Record) -> None:
    """Keep that ``subscription``'s event ``item.number`` was notified: written with the
    others of the next :data:`FLUSH` seconds in one write (the store's writer is not
    taken once per notification); this process's reads see it at once."""
    store = _raw(store)
    _pending.setdefault(store, []).append((subscription, item))
    task = _flushing.get(store)
    if task is None or task.done():
        _flushing[store] = asyncio.create_task(_flush_soon(store))


async def _flush_soon(store: Any) -> None:
    # until nothing is pending: a record kept while the previous ones were being written
    # found this task running and started none (else it stays unwritten until this
    # process keeps another one, and another process's ``$events`` lacks it)
    while _pending.get(store):
        await asyncio.sleep(FLUSH)
        try:
            await flush(store)
        except Exception:
            log.exception("the notification log could not be written")


async def flush(store: Any) -> None:
    """Write the records kept since the last write."""
    store = _raw(store)
    items = _pending.pop(store, [])
    if not items:
        return
    rows = [
        (sid, i.number, i.seq, i.type, i.id, i.version, i.method, i.timestamp) for sid, i in items
    ]
    if hasattr(store, "run_write"):
        await _sqlite(store)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO subscription_event (subscription, number, seq, type,"
                " id, version, method, timestamp) VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )

        await store.run_write(run)
        return
    collection = store.db[COLLECTION]
    for row in rows:
        document = dict(zip(_FIELDS, row, strict=True))
        await collection.replace_one({"_id": f"{row[0]}#{row[1]}"}, document, upsert=True)


_FIELDS = ("subscription", "number", "seq", "type", "id", "version", "method", "timestamp")


async def records(store: Any, subscription: str, since: int, until: int) -> list[Record]:
    """The records of event numbers ``since``..``until`` (inclusive), oldest first."""
    store = _raw(store)
    await flush(store)
    if hasattr(store, "run_write"):
        await _sqlite(store)
        rows = store.query(
            "SELECT number, seq, type, id, version, method, timestamp FROM subscription_event"
            " WHERE subscription = ? AND number >= ? AND number <= ? ORDER BY number",
            (subscription, since, until),
        )
        return [Record(*row) for row in rows]
    cursor = (
        store.db[COLLECTION]
        .find({"subscription": subscription, "number": {"$gte": since, "$lte": until}})
        .sort("number", ASCENDING)
    )
    return [Record(*(d[f] for f in _FIELDS[1:])) for d in await cursor.to_list(None)]


async def last_number(store: Any, subscription: str) -> int:
    """The number of the last event notified (0: none yet): the larger of the last
    record's and the subscription's outbox cursor's (saved every half second; records
    are pruned with the outbox)."""
    store = _raw(store)
    await flush(store)
    key = f"Subscription/{subscription}"
    if hasattr(store, "run_write"):
        await _sqlite(store)
        rows = store.query(
            "SELECT max(number) FROM subscription_event WHERE subscription = ?", (subscription,)
        )
        cursor = store.query("SELECT number FROM event_cursor WHERE key = ?", (key,))
        return max(int(rows[0][0] or 0), int(cursor[0][0]) if cursor else 0)
    found = await store.db[COLLECTION].find_one(
        {"subscription": subscription}, sort=[("number", DESCENDING)]
    )
    held = await store.db[CURSORS].find_one({"_id": key})
    return max(int(found["number"]) if found else 0, int(held["number"]) if held else 0)


async def prune(store: Any, through: int) -> None:
    """Forget the records of the events up to seq ``through`` (pruned from the outbox)."""
    store = _raw(store)
    if hasattr(store, "run_write"):
        await _sqlite(store)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM subscription_event WHERE seq <= ?", (through,))

        await store.run_write(run)
        return
    await store.db[COLLECTION].delete_many({"seq": {"$lte": through}})
