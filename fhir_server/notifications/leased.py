"""A scan that one server process at a time runs every :data:`SCAN_EVERY` seconds (issue
17: the reminders of ``reminders`` and the messages deferred by ``quiet_hours``): the
process that holds the lease on the outbox cursor ``key`` (``fhir_server.events.outbox``,
a cursor used only for its lease) scans; the others wait, and take over within
:data:`LEASE` seconds when it stops. Driven by the dispatcher's ``tick``
(``fhir_server.events.dispatcher``), like the outbox readers; the searches are the
store's (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from resources import fhir_json
from resources.search.parameters import search_params
from resources.search.parse import parse_search

LEASE = 30.0
SCAN_EVERY = 5.0
"""Seconds between scans (what is due goes out within this of its time)."""
PAGE = 500

Resource = dict[str, Any]


class LeasedScan:
    """Runs :meth:`scan` every :data:`SCAN_EVERY` seconds while holding the lease."""

    key: str = ""

    def __init__(self, store: Any, owner: str) -> None:
        self.store = store
        self.outbox = store.outbox
        self.owner = owner
        self.held = False
        self._next = 0.0
        self._opened = False

    async def scan(self, now: datetime) -> int:
        raise NotImplementedError

    def enabled(self) -> bool:
        return True

    async def tick(self, last: int = 0) -> int:
        """Scan when it is time and this process holds the lease; how many were sent."""
        now = time.time()
        if now < self._next or not self.enabled():
            return 0
        self._next = now + SCAN_EVERY
        if not self._opened:
            await self.outbox.open_cursor(self.key, 0)
            self._opened = True
        if not await self.renew():
            return 0
        return await self.scan(datetime.fromtimestamp(now, UTC))

    async def renew(self) -> bool:
        """Take or keep the lease (False: another process has it)."""
        now = time.time()
        held = bool(await self.outbox.claim([self.key], self.owner, now, now + LEASE))
        if held and not self.held:
            self.taken()
        self.held = held
        return held

    def taken(self) -> None:
        """The lease was just taken (after another process, or a restart, had it)."""

    async def release(self) -> None:
        if self._opened:
            await self.outbox.release(self.key, self.owner)
        self.held = False


async def search_all(
    store: Any, type_: str, params: list[tuple[str, str]]
) -> list[tuple[Any, Resource]]:
    """Every match of a search (all pages): ``(stored version, resource)``."""
    query = parse_search(
        [type_], params, strict=True, params_for=search_params, max_count=PAGE, default_count=PAGE
    )
    out = []
    cursor = None
    while True:
        page = await store.search(query, cursor, PAGE, False)
        out += [(s, fhir_json.loads(s.content)) for s in page.entries if s.content is not None]
        cursor = page.next_cursor
        if cursor is None:
            return out
