"""The outbox in MongoDB: the ``events`` collection (``_id`` = the version's history
``seq``), inserted by ``MongoStore._apply`` in the write's transaction on a replica set or
sharded cluster, and ``event_cursors``, the readers' positions and leases, changed with
``find_one_and_update`` / ``update_one`` filtered on the owner (a compare-and-set on one
document, atomic on any deployment).

On a standalone ``mongod`` (no transactions) the event is inserted right after the
version's history document: a process killed between the two loses that event (the
version itself is stored, in the history), and an event may become visible after events
with larger seqs that a reader has already passed, which then never sees it (the history
has the same gap, see ``fhir_server.storage.mongo``). Run a replica set (one node will
do) for delivery that never misses a version.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from fhir_server.events.outbox import CursorState, Event

EVENTS = "events"
CURSORS = "event_cursors"


def event_document(seq: int, type_: str, id_: str, version: int, method: str) -> dict[str, Any]:
    return {"_id": seq, "type": type_, "id": id_, "version": version, "method": method}


class MongoOutbox:
    """:class:`fhir_server.events.outbox.Outbox` on a MongoDB database."""

    def __init__(self, db: Any) -> None:
        self._events = db[EVENTS]
        self._cursors = db[CURSORS]
        self._history = db["history"]

    async def last_seq(self) -> int:
        doc = await self._events.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        return int(doc["_id"]) if doc else 0

    async def events_after(self, seq: int, limit: int) -> list[Event]:
        cursor = self._events.find({"_id": {"$gt": seq}}).sort("_id", ASCENDING).limit(limit)
        docs = await cursor.to_list(None)
        return [Event(d["_id"], d["type"], d["id"], d["version"], d["method"]) for d in docs]

    async def open_cursor(self, key: str, position: int) -> None:
        with contextlib.suppress(DuplicateKeyError):  # another process made it just then
            await self._cursors.update_one(
                {"_id": key},
                {
                    "$max": {"position": position},
                    "$setOnInsert": {
                        "number": 0,
                        "owner": None,
                        "until": 0.0,
                        "attempts": 0,
                        "next_at": 0.0,
                    },
                },
                upsert=True,
            )

    async def claim(
        self, keys: Sequence[str], owner: str, now: float, until: float
    ) -> list[CursorState]:
        if not keys:
            return []
        await self._cursors.update_many(
            {
                "_id": {"$in": list(keys)},
                "$or": [{"owner": None}, {"owner": owner}, {"until": {"$lt": now}}],
            },
            {"$set": {"owner": owner, "until": until}},
        )
        docs = await self._cursors.find({"_id": {"$in": list(keys)}, "owner": owner}).to_list(None)
        return [
            CursorState(
                d["_id"], int(d["position"]), int(d["number"]), int(d["attempts"]), d["next_at"]
            )
            for d in docs
        ]

    async def advance(self, key: str, owner: str, position: int, number: int) -> bool:
        fields = {"position": position, "number": number, "attempts": 0, "next_at": 0.0}
        return await self._update(key, owner, fields)

    async def advance_many(self, owner: str, states: Sequence[tuple[str, int, int]]) -> set[str]:
        lost = set()
        for key, position, number in states:  # one document each: atomic on its own
            if not await self.advance(key, owner, position, number):
                lost.add(key)
        return lost

    async def failed(self, key: str, owner: str, attempts: int, next_at: float) -> bool:
        return await self._update(key, owner, {"attempts": attempts, "next_at": next_at})

    async def release(self, key: str, owner: str) -> None:
        await self._update(key, owner, {"owner": None, "until": 0.0})

    async def drop_cursor(self, key: str) -> None:
        await self._cursors.delete_one({"_id": key})

    async def min_position(self, keys: Sequence[str]) -> int | None:
        if not keys:
            return None
        found = self._cursors.find({"_id": {"$in": list(keys)}}, {"position": 1})
        positions = [int(d["position"]) for d in await found.to_list(None)]
        return min(positions) if positions else None

    async def seq_updated_before(self, instant: str) -> int:
        doc = await self._history.find_one(
            {"last_updated": {"$lt": instant}}, {"seq": 1}, sort=[("last_updated", DESCENDING)]
        )
        return int(doc["seq"]) if doc else 0

    async def prune(self, through: int) -> int:
        result = await self._events.delete_many({"_id": {"$lte": through}})
        return int(result.deleted_count)

    async def _update(self, key: str, owner: str, fields: dict[str, Any]) -> bool:
        result = await self._cursors.update_one({"_id": key, "owner": owner}, {"$set": fields})
        return result.matched_count == 1
