"""The outbox sweep: no committed write goes without its AuditEvent.

Every committed version is an event of the durable outbox, written in the version's own
transaction (``fhir_server.events.outbox``). The AuditEvent of a version written through
the API has a fixed id, ``balp.write_event_id("Type/id/_history/v")``, whichever process
wrote it. The sweep reads the outbox behind a cursor of its own (:data:`KEY`, leased like a
Subscription's: one process at a time sweeps) and, for each version committed more than
:data:`GRACE` seconds ago (the in-memory queue of its process has long been written by
then), looks whether that AuditEvent exists; where it does not (the process died before
writing its queue, or the version was written by the server itself: a Subscription's
status, a bulk import, a workflow rule), it writes one from the version alone: what,
when, the action and the patients, with the server as the only agent. AuditEvents' own
versions are passed over (the audit trail does not audit itself).

The cursor starts at the outbox's newest event the first time the server runs with audit
on: versions written before are not swept.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from typing import Any

from fhir_server.audit import balp
from fhir_server.audit.balp import Touched
from fhir_server.audit.content import patients_in
from fhir_server.audit.record import Activity, Agent
from fhir_server.events.outbox import Event
from resources.search.query import IdClause, SearchQuery

log = logging.getLogger("fhir_server.audit")

KEY = "audit/sweep"
GRACE = 60.0
"""Seconds after which a version's AuditEvent must have been written by its request's
process."""
EVERY = 5.0
BATCH = 500
LEASE = 30.0


class Sweep:
    """The sweep of one process (it works only while it holds the cursor's lease)."""

    def __init__(self, store: Any, trail: Any, grace: float = GRACE) -> None:
        self.store = store
        self.outbox = store.outbox
        self.trail = trail
        self.grace = grace
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._seen: deque[tuple[float, int]] = deque()
        """(when, the outbox's newest seq then): what is older than the grace period."""
        self._safe = 0
        """The newest seq committed more than the grace period ago."""
        self._next = 0.0
        self._opened = False

    async def tick(self, now: float | None = None) -> int:
        """One look, when due; the number of AuditEvents written."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return 0
        self._next = now + EVERY
        last = await self.outbox.last_seq()
        self._seen.append((now, last))
        if not self._opened:
            if await self.outbox.min_position([KEY]) is None:
                await self.outbox.open_cursor(KEY, last)
            self._opened = True
        while self._seen and self._seen[0][0] <= now - self.grace:
            self._safe = max(self._safe, self._seen.popleft()[1])
        return await self.sweep(self._safe) if self._safe else 0

    async def sweep(self, through: int) -> int:
        """Write the missing AuditEvents of the versions up to seq ``through``."""
        wall = time.time()
        held = await self.outbox.claim([KEY], self.owner, wall, wall + LEASE)
        if not held:
            return 0
        position = held[0].position
        written = 0
        while position < through:
            events = [
                e for e in await self.outbox.events_after(position, BATCH) if e.seq <= through
            ]
            if not events:
                break
            written += await self._missing(events)
            position = events[-1].seq
            if not await self.outbox.advance(KEY, self.owner, position, 0):
                break
        return written

    async def _missing(self, events: list[Event]) -> int:
        wanted = {
            balp.write_event_id(f"{e.type}/{e.id}/_history/{e.version}"): e
            for e in events
            if e.type != balp.TYPE
        }
        if not wanted:
            return 0
        query = SearchQuery((balp.TYPE,), [IdClause(tuple(wanted))], count=len(wanted))
        page = await self.store.search(query, None, len(wanted), False)
        for found in page.entries:
            wanted.pop(found.id, None)
        audit_events: list[dict[str, Any]] = []
        for event in wanted.values():
            audit_events += await self._recorded(event)
        await self.trail.write(audit_events)
        if audit_events:
            log.info("audit: %d writes recorded from the outbox", len(wanted))
        return len(audit_events)

    async def _recorded(self, event: Event) -> list[dict[str, Any]]:
        version = await self.store.vread(event.type, event.id, event.version)
        content = version.content if version is not None else None
        if event.method == "delete" and event.version > 1:
            before = await self.store.vread(event.type, event.id, event.version - 1)
            content = before.content if before is not None else None
        when = time.time()
        if version is not None:
            when = _seconds(version.last_updated, when)
        activity = Activity("rest", event.method, Agent(), 200, recorded=when)
        reference = f"{event.type}/{event.id}/_history/{event.version}"
        touched = Touched(reference, patients_in(event.type, event.id, content))
        return balp.rest_events(activity, [touched], write_ids=True)


def _seconds(instant: str, default: float) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
