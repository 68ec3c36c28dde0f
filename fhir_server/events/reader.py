"""A reader of the event outbox with a cursor of its own (``fhir_server.events.outbox``),
as the notifications to people and the automatic visit summaries are: the cursor is
leased like a Subscription's, so one process at a time reads it, and it advances only
past what was handled (a handler that raises is called again for the same event at the
next tick, after the lease is checked).

A reader is driven by the dispatcher (``tick(last)`` with the newest event's position)
and made by ``fhir_server.notifications.readers``. A new reader's cursor starts at the
newest event when the server starts (:meth:`OutboxReader.open`): it hears of what is
committed from then on, not of the past.
"""

from __future__ import annotations

import time
from typing import Any

from fhir_server.events.outbox import Event, Outbox
from resources import fhir_json

LEASE = 10.0
"""Seconds a process holds a reader's cursor (renewed at half of it)."""
BATCH = 200
"""Events read at once."""


class OutboxReader:
    """The leased cursor ``key`` over the outbox; :meth:`handle` each event past it."""

    key: str = ""

    def __init__(self, store: Any, owner: str) -> None:
        self.store = store
        self.outbox: Outbox = store.outbox
        self.owner = owner
        self._opened = False
        self._until = 0.0
        self._retry_at = 0.0
        self._position = self._number = 0

    async def handle(self, event: Event) -> int:
        """Act on one event; how many things it did (kept with the cursor)."""
        raise NotImplementedError

    async def open(self, last: int | None = None) -> None:
        """Make the cursor if there is none, at ``last`` (the newest event by default):
        from now on, not the past. The dispatcher opens it as the server starts, before
        any request is served, so that a write of the first moments is heard."""
        if self._opened:
            return
        if await self.outbox.min_position([self.key]) is None:
            if last is None:
                last = await self.outbox.last_seq()
            await self.outbox.open_cursor(self.key, last)
        self._opened = True

    async def tick(self, last: int) -> None:
        now = time.time()
        await self.open(last)
        if now < self._retry_at:
            return
        if self._until - now < LEASE / 2:
            held = await self.outbox.claim([self.key], self.owner, now, now + LEASE)
            if not held:
                self._until = 0.0
                self._retry_at = now + LEASE / 2  # another process has it
                return
            self._until = now + LEASE
            self._position, self._number = held[0].position, held[0].number
        while self._position < last:
            events = await self.outbox.events_after(self._position, BATCH)
            if not events:
                self._position = last
                break
            for event in events:
                self._number += await self.handle(event)
                self._position = event.seq
            advanced = await self.outbox.advance(self.key, self.owner, self._position, self._number)
            if not advanced:
                self._until = 0.0  # lost: claim again (and read from the saved position)
                return

    async def release(self) -> None:
        if self._until:
            await self.outbox.release(self.key, self.owner)

    async def versions(self, event: Event) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The event's version and the one before it (None: none, or deleted)."""
        return await self._version(event, event.version), (
            await self._version(event, event.version - 1) if event.version > 1 else None
        )

    async def _version(self, event: Event, version: int) -> dict[str, Any] | None:
        stored = await self.store.vread(event.type, event.id, version)
        if stored is None or stored.deleted or stored.content is None:
            return None
        return fhir_json.loads(stored.content)
