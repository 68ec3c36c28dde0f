"""The dispatcher: reads the outbox and delivers notifications of R4 Subscriptions
(https://hl7.org/fhir/R4/subscription.html), one background task per server process,
started and stopped with the app.

Every :data:`POLL` seconds it:

1. lists the Subscriptions that are ``requested`` or ``active`` (a search of the store);
2. makes each ``requested`` one ``active`` once its endpoint passes the outbound guard's
   checks (the host's addresses; there is no handshake in R4): a compare-and-set write
   of the Subscription (``If-Match`` on the version it read, so one process does it), and
   opens its cursor at the outbox's newest event: it hears of what is committed after;
3. when the outbox has new events (or a retry is due), claims the cursors of the active
   Subscriptions (a lease: one compare-and-set for all, renewed on every claim; a
   cursor whose owner died is free again when its lease ends, :data:`LEASE` seconds)
   and works through each held one in its own task, so a slow endpoint holds up only
   its own subscription.

For each event after the cursor, in order: the version matches when its resource is in
the results of the criteria's search plus ``_id``, under the read access of the token
that wrote the Subscription (``fhir_server.events.subscriptions``). The search sees the
current version: an event whose resource has a newer version since is passed over (the
newer one's event is matched in its turn: the receiver gets the latest state), and a
delete is not notified (a tombstone is in no search's results). A match is sent
(``rest_hook.deliver``) with the next event number of the subscription; the cursor
moves past an event only once the endpoint accepted it (saved every :data:`SAVE_EVERY`
seconds and at the end of each batch: a process that dies sends the events since the
last save again, with the same numbers), so delivery is at least once and in order. A
failure is retried after ``delivery_backoff`` seconds, doubling, until
``delivery_attempts`` attempts failed; then the Subscription's status is ``error`` with
an ``error`` text and delivery stops (a client writing it again restarts it). Nothing
here runs inside a request: a failing endpoint never slows a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir_server.config import Settings
from fhir_server.events.criteria import matching_query, parse_criteria
from fhir_server.events.outbox import CursorState, Event, Outbox
from fhir_server.events.rest_hook import deliver
from fhir_server.events.subscriptions import TYPE, subscriber_access
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.outbound import OutboundError, OutboundGuard
from fhir_server.storage.base import StoredVersion, VersionConflict, WriteRequest, WriteResult
from resources import fhir_json
from resources.errors import FhirError
from resources.fhir_datetime import format_instant
from resources.search.parameters import search_params
from resources.search.parse import parse_search

log = logging.getLogger("fhir_server.events")

POLL = 0.2
"""Seconds between looks at the outbox."""
LEASE = 10.0
"""Seconds a claimed cursor stays with its process without being claimed again."""
BATCH = 100
"""Events read at a time for one subscription."""
PRUNE_EVERY = 60.0
"""Seconds between prunings of the outbox."""
SAVE_EVERY = 0.5
"""Seconds between saves of a subscription's cursor while it delivers (and at the end of
each batch): a process that dies sends again what it sent since the last save."""
ACTIVATION_TIMEOUT = 5.0
"""Seconds the endpoint's host name has to resolve when a Subscription is activated."""
ENDPOINT_REFUSED = (
    "The endpoint was refused: its host does not resolve, or not to an address the"
    " server may reach (see the server's log)"
)
DELIVERY_FAILED = (
    "Notifications failed {attempts} times in a row (the endpoint could not be reached or"
    " did not answer 2xx; the server's log has the reasons); write the Subscription with"
    " status requested to start again"
)


class Dispatcher:
    """One process's dispatcher over ``store`` (the raw store, not a guarded one)."""

    def __init__(self, store: Any, settings: Settings, guard: OutboundGuard) -> None:
        self.store = store
        self.outbox: Outbox = store.outbox
        self.guard = guard
        self.attempts = settings.delivery_attempts
        self.backoff = settings.delivery_backoff
        self.retention = settings.event_retention
        self._prune_at = 0.0
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._working: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, int] = {}
        """Per subscription: the outbox position this process last worked up to, or
        saw while another process held it."""
        self._recheck: dict[str, float] = {}
        """Per subscription: when to claim again although nothing new came (renewing
        the lease, or taking over from a process that died)."""
        self._opened: dict[str, int] = {}
        """Per subscription: the version whose activation this process opened a cursor for."""
        self._not_before: dict[str, float] = {}
        """Per subscription: not before then (a retry's wait, another process's lease)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fhir-server-dispatcher")

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._working.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        # the cursors this process held: another process takes them at once
        for key in {*self._working, *self._recheck}:
            with contextlib.suppress(Exception):
                await self.outbox.release(key, self.owner)
        self._working.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription dispatch failed; trying again")
            await asyncio.sleep(POLL)

    async def tick(self) -> None:
        subscriptions = await self._subscriptions()
        active: dict[str, dict[str, Any]] = {}
        for stored, resource in subscriptions:
            if resource.get("status") == "requested":
                await self._activate(stored, resource)
            elif resource.get("status") == "active":
                key = f"{TYPE}/{stored.id}"
                active[key] = resource
                if self._opened.get(key) != stored.version:
                    # from its latest activation on (also when the process that
                    # activated it died before opening the cursor)
                    await self.outbox.open_cursor(key, stored.seq)
                    self._opened[key] = stored.version
        last = await self.outbox.last_seq()
        if time.time() >= self._prune_at:
            self._prune_at = time.time() + PRUNE_EVERY
            await self.prune(list(active))
        now = time.time()
        due = [key for key in active if self._due(key, last, now)]
        if not due:
            return
        held = {c.key: c for c in await self.outbox.claim(due, self.owner, now, now + LEASE)}
        for key in due:
            cursor = held.get(key)
            if cursor is None:  # another process has it: look again after a while
                self._seen[key] = last
                self._not_before[key] = now + LEASE / 2
                continue
            self._recheck[key] = now + LEASE / 2
            if cursor.next_at > now:  # a retry is due later
                self._not_before[key] = cursor.next_at
            elif cursor.position >= last:
                self._seen[key] = last
            else:
                self._working[key] = asyncio.create_task(self._serve(active[key], cursor))

    async def prune(self, active: list[str]) -> int:
        """Delete the events that every active subscription has passed and whose
        versions are older than ``event_retention`` seconds (the outbox stays bounded;
        a Subscription activated later starts after them anyway)."""
        cutoff = format_instant(datetime.fromtimestamp(time.time() - self.retention, UTC))
        through = await self.outbox.seq_updated_before(cutoff)
        floor = await self.outbox.min_position(active)
        if floor is not None:
            through = min(through, floor)
        if through <= 0:
            return 0
        pruned = await self.outbox.prune(through)
        if pruned:
            log.info("outbox: %d delivered events pruned", pruned)
        return pruned

    def _due(self, key: str, last: int, now: float) -> bool:
        if key in self._working or now < self._not_before.get(key, 0.0):
            return False
        return last > self._seen.get(key, -1) or now >= self._recheck.get(key, 0.0)

    async def _subscriptions(self) -> list[tuple[StoredVersion, dict[str, Any]]]:
        query = parse_search(
            [TYPE],
            [("status", "requested,active")],
            strict=True,
            params_for=search_params,
            max_count=1000,
            default_count=1000,
        )
        out = []
        cursor = None
        while True:
            page = await self.store.search(query, cursor, 1000, False)
            for stored in page.entries:
                if stored.content is not None:
                    out.append((stored, fhir_json.loads(stored.content)))
            cursor = page.next_cursor
            if cursor is None:
                return out

    async def _activate(self, stored: StoredVersion, resource: dict[str, Any]) -> None:
        """``requested`` to ``active`` when the endpoint's host resolves to addresses the
        outbound guard allows (R4 has no handshake), else ``error``. The reason stays in
        the log: like every outbound failure, it is not told to the client."""
        endpoint = str((resource.get("channel") or {}).get("endpoint") or "")
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.guard.check_addresses, endpoint), ACTIVATION_TIMEOUT
            )
        except (OutboundError, TimeoutError) as error:
            reason = getattr(error, "reason", "the host name did not resolve in time")
            log.warning("Subscription/%s: endpoint refused: %s", stored.id, reason)
            await self._set_status(stored, resource, "error", ENDPOINT_REFUSED)
            return
        written = await self._set_status(stored, resource, "active")
        if written is not None and written.stored is not None:
            key = f"{TYPE}/{stored.id}"
            await self.outbox.open_cursor(key, written.stored.seq)
            self._opened[key] = written.stored.version

    async def _set_status(
        self, stored: StoredVersion, resource: dict[str, Any], status: str, error: str = ""
    ) -> WriteResult | None:
        """A compare-and-set of the Subscription's status (None: it changed meanwhile)."""
        changed = {**resource, "status": status}
        if error:
            changed["error"] = error
        else:
            changed.pop("error", None)
        request = WriteRequest(
            TYPE,
            stored.id,
            "update",
            content_builder(changed, stored.id),
            if_match=stored.version,
            index=index_entries(changed, stored.id),
        )
        try:
            result = await self.store.write(request)
        except VersionConflict:
            return None
        log.info("Subscription/%s is %s%s", stored.id, status, f": {error}" if error else "")
        return result

    async def _serve(self, subscription: dict[str, Any], cursor: CursorState) -> None:
        key = cursor.key
        try:
            more: CursorState | None = cursor
            while more is not None:  # a full batch: the next one at once
                more = await self._deliver_pending(subscription, more)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery for %s failed", key)
        finally:
            self._working.pop(key, None)

    async def _deliver_pending(
        self, subscription: dict[str, Any], cursor: CursorState
    ) -> CursorState | None:
        """One batch of events; the cursor to go on from when the batch was full."""
        key = cursor.key
        try:
            criteria = parse_criteria(str(subscription.get("criteria") or ""))
        except FhirError as error:  # stored before the rules (import): never delivers
            stored = await self.store.read(TYPE, key.split("/", 1)[1])
            if stored is not None and stored.content is not None:
                await self._set_status(
                    stored, subscription, "error", f"The criteria is not valid: {error}"
                )
            return None
        access = subscriber_access(subscription)
        position, number, attempts = cursor.position, cursor.number, cursor.attempts
        saved = position
        save_at = renew_at = time.time() + SAVE_EVERY
        events = await self.outbox.events_after(position, BATCH)
        matches = await self._matching(events, criteria, access)
        for event in events:
            if time.time() > renew_at:  # a long batch: keep the lease
                now = time.time()
                if not await self.outbox.claim([key], self.owner, now, now + LEASE):
                    return None
                renew_at = now + LEASE / 2
            found = matches.get(event.seq)
            if found is not None:
                try:
                    await deliver(self.guard, subscription, number + 1, found)
                except OutboundError as error:
                    if position != saved:
                        await self.outbox.advance(key, self.owner, position, number)
                    await self._failed(key, attempts, error)
                    return None
                number, attempts = number + 1, 0
            position = event.seq
            if found is not None and time.time() > save_at:
                if not await self.outbox.advance(key, self.owner, position, number):
                    return None  # the lease was lost: another process goes on from it
                saved, save_at = position, time.time() + SAVE_EVERY
        if position != saved and not await self.outbox.advance(key, self.owner, position, number):
            return None
        self._seen[key] = position
        if len(events) < BATCH:
            return None
        return CursorState(key, position, number, attempts)

    async def _matching(
        self, events: list[Event], criteria: Any, access: Any
    ) -> dict[int, tuple[str, str, bytes | None]]:
        """The events of a batch whose versions match (by seq): one search of the
        criteria for all their ids. The search sees current versions: an event whose
        resource has a newer version since is left out (the newer one's event is
        matched in its turn)."""
        wanted = {e.id: e for e in events if e.method != "delete" and e.type in criteria.types}
        if not wanted:
            return {}
        query = matching_query(criteria, tuple(wanted), access)
        page = await self.store.search(query, None, len(wanted), False)
        seqs = {(e.type, e.id, e.version): e.seq for e in events}
        found: dict[int, tuple[str, str, bytes | None]] = {}
        for current in page.entries:
            seq = seqs.get((current.type, current.id, current.version))
            if seq is not None:
                found[seq] = (current.type, current.id, current.content)
        return found

    async def _failed(self, key: str, failures: int, error: OutboundError) -> None:
        attempts = failures + 1
        log.warning(
            "notification of %s failed (attempt %d of %d): %s",
            key,
            attempts,
            self.attempts,
            error.reason,
        )
        if attempts < self.attempts:
            wait = self.backoff * 2 ** (attempts - 1)
            await self.outbox.failed(key, self.owner, attempts, time.time() + wait)
            self._not_before[key] = time.time() + wait
            return
        await self.outbox.failed(key, self.owner, 0, 0.0)
        stored = await self.store.read(TYPE, key.split("/", 1)[1])
        if stored is None or stored.content is None:
            return
        current = fhir_json.loads(stored.content)
        if current.get("status") == "active":
            text = DELIVERY_FAILED.format(attempts=attempts)
            await self._set_status(stored, current, "error", text)
