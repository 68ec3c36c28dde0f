"""The dispatcher: reads the outbox and delivers notifications of R4 Subscriptions
(https://hl7.org/fhir/R4/subscription.html), one background task per server process,
started and stopped with the app.

It looks at the outbox as soon as a write of this process commits (the store the
requests write through calls :meth:`Dispatcher.wake`, ``fhir_server.events.wake``), and
every :data:`POLL` seconds for the writes of other processes (other workers, other
servers on one MongoDB, ``fhir-server import``). Each look:

1. every :data:`RELOAD` seconds (at once after a Subscription was written here) lists the
   Subscriptions that are ``requested`` or ``active``; makes each ``requested`` one
   ``active`` once its endpoint passes the outbound guard's checks (the host's
   addresses; there is no handshake in R4): a compare-and-set write of the Subscription
   (``If-Match`` on the version it read, so one process does it), and opens its cursor at
   the outbox's newest event: it hears of what is committed after. An active one whose
   creator's authorization was revoked gets status ``error`` (``events.grants``);
2. claims the cursors of the active Subscriptions it does not hold yet (a lease: one
   compare-and-set for all, renewed every ``LEASE / 2`` seconds; a cursor whose owner died
   is free again when its lease ends, :data:`LEASE` seconds), so each subscription is
   served by one process;
3. reads the new events once for all the subscriptions it holds and matches them per
   criteria (subscriptions with the same criteria and creator share one search,
   ``events.matching``), queueing each subscription's matches;
4. every :data:`SAVE_EVERY` seconds saves the cursors that moved, in one write.

Each held subscription sends its queue in its own task, one notification at a time and in
order (``rest_hook.deliver``, over kept-alive connections, ``events.hook_client``), with
the next event number of the subscription: different subscriptions are sent to
concurrently, a slow endpoint holds up only its own. The cursor moves past an event only
once the endpoint accepted it (and past the events that did not match), so delivery is
at least once and in order: a process that dies sends the events since the last save
again, with the same numbers. A failure is retried after ``delivery_backoff`` seconds,
doubling, until ``delivery_attempts`` attempts failed; then the Subscription's status is
``error`` with an ``error`` text and delivery stops (a client writing it again restarts
it). Nothing here runs inside a request: a failing endpoint never slows a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_server.config import Settings
from fhir_server.events import backport, backport_channel, email_channel, notification_log, topics
from fhir_server.events.criteria import parse_criteria
from fhir_server.events.grants import GrantCheck
from fhir_server.events.hook_client import HookClient
from fhir_server.events.matching import (
    Matcher,
    Needs,
    RecentRefs,
    candidates,
    need_codes,
    reference_needs,
    refs_of,
)
from fhir_server.events.outbox import CursorState, Notification, Outbox
from fhir_server.events.rest_hook import deliver
from fhir_server.events.statuses import (
    endpoint_refusal,
    list_subscriptions,
    set_error,
    set_status,
)
from fhir_server.events.subscriptions import CREATOR, TYPE, subscriber_access
from fhir_server.events.websocket import WebsocketHub
from fhir_server.events.websocket_channel import is_websocket
from fhir_server.notifications import portal, readers
from fhir_server.notifications.mailer import Mailer
from fhir_server.notifications.templates import Templates
from fhir_server.outbound import OutboundError, OutboundGuard
from fhir_server.storage.base import StoredVersion
from resources.errors import FhirError
from resources.fhir_datetime import format_instant
from resources.search.query import AccessClause, SearchQuery

log = logging.getLogger("fhir_server.events")

POLL = 0.1
"""Seconds between looks at the outbox when nothing wakes the dispatcher (the writes of
other processes)."""
COALESCE = 0.002
"""Seconds a wake-up waits, so that the commits of a burst are read in one look."""
RELOAD = 1.0
"""Seconds between listings of the Subscriptions (at once after one is written here)."""
LEASE = 10.0
"""Seconds a claimed cursor stays with its process without being claimed again."""
READ_BATCH = 500
"""Events read at a time."""
QUEUE_MAX = 2000
"""Matches queued for one subscription before its matching waits for its sending."""
PRUNE_EVERY = 60.0
"""Seconds between prunings of the outbox."""
SAVE_EVERY = 0.5
"""Seconds between saves of the cursors that moved: a process that dies sends again what
it sent since the last save."""
DELIVERY_FAILED = (
    "Notifications failed {attempts} times in a row (the endpoint could not be reached or"
    " did not answer 2xx; the server's log has the reasons); write the Subscription with"
    " status requested to start again"
)


@dataclass
class Held:
    """A subscription whose cursor this process holds."""

    key: str
    subscription: dict[str, Any]
    version: int
    """The Subscription's version the cursor was claimed under."""
    criteria: SearchQuery
    access: AccessClause | None
    group: tuple[str, str]
    """Subscriptions with the same criteria and creator match with one search."""
    needs: Needs
    """What a resource must refer to to match (``matching.reference_needs``)."""
    position: int
    """Every event up to here was sent or did not match."""
    number: int
    """The event number of the last notification sent."""
    matched: int
    """Every event up to here was matched (its notifications are in ``queue``)."""
    until: float
    attempts: int = 0
    next_at: float = 0.0
    saved: tuple[int, int] = (0, 0)
    queue: deque[tuple[int, Notification]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    plan: backport.Plan | None = None
    """A topic-based Subscription's (``events.backport``); None for a classic one."""
    sent_at: float = field(default_factory=time.time)
    """When a notification or heartbeat last went out (``backport-heartbeat-period``)."""

    @property
    def types(self) -> tuple[str, ...]:
        """The resource types whose events can match."""
        return tuple(self.plan.searches) if self.plan is not None else self.criteria.types


class Dispatcher:
    """One process's dispatcher over ``store`` (the raw store, not a guarded one);
    ``grants``: the check of the Subscriptions' creators (None: nothing to check)."""

    def __init__(
        self,
        store: Any,
        settings: Settings,
        guard: OutboundGuard,
        grants: GrantCheck | None = None,
    ) -> None:
        self.store = store
        self.outbox: Outbox = store.outbox
        self.guard = guard
        self.grants = grants
        self.client = HookClient(guard)
        self.recent = RecentRefs()
        """The reference rows of this process's latest writes (noted by the store the
        requests write through, ``events.wake``): the pre-filter's input."""
        self.matcher = Matcher(store, self.recent)
        self.attempts = settings.delivery_attempts
        self.backoff = settings.delivery_backoff
        self.retention = settings.event_retention
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._active: dict[str, tuple[StoredVersion, dict[str, Any]]] = {}
        self._held: dict[str, Held] = {}
        self._opened: dict[str, int] = {}
        """Per subscription: the version whose activation this process opened a cursor for."""
        self._not_before: dict[str, float] = {}
        """Per subscription: no claim before then (another process holds it)."""
        self._reload_at = 0.0
        self._prune_at = 0.0
        self._save_at = 0.0
        self.mailer = Mailer.from_settings(settings.smtp_url, settings.smtp_from)
        self.templates = Templates(settings.notification_templates)
        self.portal_url = portal(settings)
        self.base_url = (
            settings.base_url or f"http://{settings.host}:{settings.port}/fhir"
        ).rstrip("/")
        self.readers = readers(store, settings, self.owner)
        """The other readers of the outbox: notifications to people (``notifications``)."""
        self._reading: asyncio.Task[None] | None = None
        self.websockets = WebsocketHub(store, grants, self.recent)
        """The websocket channel: the sockets bound in this process (``events.websocket``,
        not leased: each process pings its own sockets)."""

    # -- life --------------------------------------------------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="fhir-server-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        tasks = [h.task for h in self._held.values() if h.task is not None]
        if self._reading is not None:
            tasks.append(self._reading)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._save()
        # the cursors this process held: another process takes them at once
        for key in list(self._held):
            with contextlib.suppress(Exception):
                await self.outbox.release(key, self.owner)
        self._held.clear()
        for reader in self.readers:
            with contextlib.suppress(Exception):
                await reader.release()
        await self.websockets.stop()
        await self.client.close()
        await self.matcher.close()

    def wake(self, subscriptions_changed: bool = False) -> None:
        """Look at the outbox now (a write of this process committed); with
        ``subscriptions_changed``, list the Subscriptions again too."""
        if subscriptions_changed:
            self._reload_at = 0.0
        if self._wake is not None:
            self._wake.set()
        self.websockets.poke()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            began = time.perf_counter()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription dispatch failed; trying again")
            spent = time.perf_counter() - began
            with contextlib.suppress(TimeoutError):
                # not wait_for: on Python 3.11 it can swallow the cancellation of stop()
                # when the wait ends at the same moment, and stop() then waits forever
                async with asyncio.timeout(POLL):
                    await self._wake.wait()
            # at least as long as the look took: under a stream of writes the looks take
            # at most about half of the event loop, and each reads more events at once
            await asyncio.sleep(max(COALESCE, spent))

    async def tick(self) -> None:
        now = time.time()
        if now >= self._reload_at:
            self._reload_at = now + RELOAD
            await self._reload()
        last = await self.outbox.last_seq()
        if now >= self._prune_at:
            self._prune_at = now + PRUNE_EVERY
            await self.prune(list(self._active))
        await self._claim(now)
        await self._match(last)
        self._heartbeats(time.time())
        if self.readers and (self._reading is None or self._reading.done()):
            self._reading = asyncio.create_task(self._read(last))
        if time.time() >= self._save_at:
            self._save_at = time.time() + SAVE_EVERY
            await self._save()

    async def _read(self, last: int) -> None:
        """The other readers' turn (in a task of their own: a slow mail server holds up
        nothing else)."""
        for reader in self.readers:
            try:
                await reader.tick(last)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again", type(reader).__name__)

    # -- the Subscriptions -------------------------------------------------------------
    async def _reload(self) -> None:
        active: dict[str, tuple[StoredVersion, dict[str, Any]]] = {}
        for stored, resource in await list_subscriptions(self.store):
            key = f"{TYPE}/{stored.id}"
            if resource.get("status") == "requested":
                await self._activate(stored, resource)
                self._reload_at = 0.0  # list it again as active
                continue
            if resource.get("status") != "active":
                continue
            reason = self.grants.revoked(resource) if self.grants is not None else None
            if reason is not None:
                await set_status(self.store, stored, resource, "error", reason)
                continue
            if is_websocket(resource):
                continue  # no cursor, no lease: each process pings its own sockets
            active[key] = (stored, resource)
            if self._opened.get(key) != stored.version:
                # from its latest activation on (also when the process that
                # activated it died before opening the cursor)
                await self.outbox.open_cursor(key, stored.seq)
                self._opened[key] = stored.version
        self._active = active
        for key, held in list(self._held.items()):
            current = active.get(key)
            if current is None or current[0].version != held.version:
                await self._drop(held, save=False)

    async def _activate(self, stored: StoredVersion, resource: dict[str, Any]) -> None:
        """``requested`` to ``active`` once its endpoint checked out, else ``error``
        (``statuses.endpoint_refusal``); the cursor opens at the activation."""
        refusal = (
            None
            if is_websocket(resource)  # nothing to check (stored active; this: an import)
            else await endpoint_refusal(self.guard, self.mailer, stored.id, resource, self.store)
        )
        if refusal is None and backport.is_topic_based(resource):
            refusal = await self._handshake(stored, resource)
        if refusal is not None:
            await set_status(self.store, stored, resource, "error", refusal)
            return
        written = await set_status(self.store, stored, resource, "active")
        if written is not None and written.stored is not None:
            key = f"{TYPE}/{stored.id}"
            await self.outbox.open_cursor(key, written.stored.seq)
            self._opened[key] = written.stored.version

    async def _handshake(self, stored: StoredVersion, resource: dict[str, Any]) -> str | None:
        """A topic-based Subscription's handshake (None: accepted, else the error)."""
        try:
            plan = backport.plan_of(resource)
        except FhirError as error:
            return f"The Subscription is not valid: {error}"
        assert plan is not None
        await topics.install(self.store)
        if (resource.get("channel") or {}).get("type") != "rest-hook":
            return None  # the websocket channel has its own handshake
        sent = await backport_channel.handshake(
            self.client, self.base_url, {**resource, "id": stored.id}, plan
        )
        return None if sent else backport_channel.HANDSHAKE_FAILED

    async def _set_error(self, key: str, text: str) -> None:
        await set_error(self.store, key, text)
        self._reload_at = 0.0

    # -- cursors -----------------------------------------------------------------------
    async def _claim(self, now: float) -> None:
        new = [
            k for k in self._active if k not in self._held and now >= self._not_before.get(k, 0.0)
        ]
        renew = [k for k, h in self._held.items() if h.until - now < LEASE / 2]
        if not new and not renew:
            return
        got = {c.key: c for c in await self.outbox.claim(new + renew, self.owner, now, now + LEASE)}
        for key in renew:
            held = self._held.get(key)
            if held is None:
                continue
            if key in got:
                held.until = now + LEASE
            else:  # the lease was lost: another process goes on from the saved cursor
                await self._drop(held, save=False, release=False)
        for key in new:
            cursor = got.get(key)
            if cursor is None:  # another process has it: try again after a while
                self._not_before[key] = now + LEASE / 2
                continue
            stored, resource = self._active[key]
            held = await self._hold(cursor, stored, resource, now + LEASE)
            if held is not None:
                self._held[key] = held

    async def _hold(
        self, cursor: CursorState, stored: StoredVersion, resource: dict[str, Any], until: float
    ) -> Held | None:
        try:
            plan = backport.plan_of(resource)
            criteria = (
                next(iter(plan.searches.values()))
                if plan is not None
                else parse_criteria(str(resource.get("criteria") or ""))
            )
        except FhirError as error:  # stored before the rules (import): never delivers
            text = f"The criteria is not valid: {error}"
            await set_status(self.store, stored, resource, "error", text)
            await self.outbox.release(cursor.key, self.owner)
            return None
        creator = next(
            (e for e in resource.get("extension") or [] if e.get("url") == CREATOR), None
        )
        group = (
            plan.group if plan is not None else str(resource.get("criteria")),
            json.dumps(creator, sort_keys=True),
        )
        return Held(
            key=cursor.key,
            subscription=resource,
            version=stored.version,
            criteria=criteria,
            needs=reference_needs(criteria) if plan is None else plan.needs,
            access=subscriber_access(resource),
            plan=plan,
            group=group,
            position=cursor.position,
            number=cursor.number,
            matched=cursor.position,
            until=until,
            attempts=cursor.attempts,
            next_at=cursor.next_at,
            saved=(cursor.position, cursor.number),
        )

    async def _drop(self, held: Held, *, save: bool, release: bool = True) -> None:
        """Stop serving ``held`` (its task is cancelled unless it is the caller)."""
        self._held.pop(held.key, None)
        task = held.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if save and (held.position, held.number) != held.saved:
            await self.outbox.advance(held.key, self.owner, held.position, held.number)
        if release:
            await self.outbox.release(held.key, self.owner)
        await self.client.close_lane(held.key.split("/", 1)[1])

    async def _save(self) -> None:
        moved = [h for h in self._held.values() if (h.position, h.number) != h.saved]
        if not moved:
            return
        states = [(h.key, h.position, h.number) for h in moved]
        lost = await self.outbox.advance_many(self.owner, states)
        for held in moved:
            if held.key in lost:
                await self._drop(held, save=False, release=False)
            else:
                held.saved = (held.position, held.number)

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
        await notification_log.prune(self.store, through)
        if pruned:
            log.info("outbox: %d delivered events pruned", pruned)
        return pruned

    # -- matching and sending ----------------------------------------------------------
    async def _match(self, last: int) -> None:
        """Match the events up to ``last`` for every held subscription that has not yet
        (each group of subscriptions with one search) and start their sending."""
        while True:
            pending = [
                h for h in self._held.values() if h.matched < last and len(h.queue) < QUEUE_MAX
            ]
            if not pending:
                return
            start = min(h.matched for h in pending)
            events = await self.outbox.events_after(start, READ_BATCH)
            through = events[-1].seq if events else last
            groups: dict[tuple[str, str], list[Held]] = defaultdict(list)
            for held in pending:
                groups[held.group].append(held)
            refs = None
            by_seq = {e.seq: e for e in events}
            if any(h.needs for h in pending):  # the pre-filter: each resource indexed once
                codes = need_codes(h.needs for h in pending)
                types = {t for h in pending if h.needs for t in h.types}
                indexed = await self.matcher.rows_of(events, codes, types)
                refs = refs_of(indexed)
                # what the pre-filter cannot rule out: deletions, changed since
                unsure = [e for e in events if e.type in types and e.seq not in indexed]
            for group in groups.values():
                lowest = min(h.matched for h in group)
                first = group[0]
                if first.needs and refs is not None:
                    # the candidates and the unsure events of its types, in order (no
                    # pass over every event per group: many groups, few matches)
                    kinds = first.types
                    maybe = candidates(first.needs, refs)
                    batch = sorted(
                        [by_seq[s] for s in maybe if s > lowest]
                        + [e for e in unsure if e.seq > lowest and e.type in kinds],
                        key=lambda e: e.seq,
                    )
                    if not batch:
                        found: dict[int, Notification] = {}
                        self._queue(group, found, through)
                        continue
                else:
                    batch = [e for e in events if e.seq > lowest]
                if first.plan is not None:
                    found = await backport.matches(self.matcher, batch, first.plan, first.access)
                else:
                    found = await self.matcher.matches(batch, first.criteria, first.access)
                self._queue(group, found, through)
            if through >= last:
                return

    def _queue(self, group: list[Held], found: dict[int, Notification], through: int) -> None:
        """Queue a group's matches up to ``through`` and start the sending."""
        for held in group:
            if self._held.get(held.key) is not held:
                continue  # dropped meanwhile
            for seq in sorted(found):
                if held.matched < seq <= through:
                    held.queue.append((seq, found[seq]))
            held.matched = through
            if not held.queue and held.task is None:
                held.position = through
            elif held.queue and held.task is None:
                held.task = asyncio.create_task(self._send(held))

    async def _send(self, held: Held) -> None:
        try:
            while held.queue:
                wait = held.next_at - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                reason = self.grants.revoked(held.subscription) if self.grants else None
                if reason is not None:
                    await self._drop(held, save=True)
                    await self._set_error(held.key, reason)
                    return
                seq, notification = held.queue[0]
                try:
                    if held.plan is not None:
                        await backport_channel.send_event(
                            self.client,
                            self.store,
                            self.base_url,
                            held.subscription,
                            held.plan,
                            held.number + 1,
                            seq,
                            notification,  # type: ignore[arg-type]
                        )
                    elif (held.subscription.get("channel") or {}).get("type") == "email":
                        await email_channel.deliver(
                            self.mailer,
                            self.templates,
                            self.portal_url,
                            held.subscription,
                            notification,
                        )
                    else:
                        await deliver(self.client, held.subscription, held.number + 1, notification)
                except OutboundError as error:
                    if not await self._failed(held, error):
                        return
                    continue
                held.queue.popleft()
                held.sent_at = time.time()
                held.number, held.position, held.attempts, held.next_at = (
                    held.number + 1,
                    seq,
                    0,
                    0.0,
                )
            held.position = max(held.position, held.matched)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery for %s failed", held.key)
            await self._drop(held, save=True)
        finally:
            held.task = None

    def _heartbeats(self, now: float) -> None:
        """A heartbeat for each topic-based Subscription with a heartbeat period that
        sent nothing for that long (``backport_channel.heartbeat``)."""
        for held in self._held.values():
            plan = held.plan
            if plan is None or plan.heartbeat is None or held.task is not None or held.queue:
                continue
            if now - held.sent_at >= plan.heartbeat:
                held.sent_at = now
                held.task = asyncio.create_task(self._beat(held, plan))

    async def _beat(self, held: Held, plan: backport.Plan) -> None:
        try:
            await backport_channel.heartbeat(
                self.client, self.base_url, held.subscription, plan, held.number
            )
        except OutboundError:
            pass  # logged by the client; the next period tries again
        finally:
            held.task = None
        if held.queue and self._held.get(held.key) is held:
            held.task = asyncio.create_task(self._send(held))

    async def _failed(self, held: Held, error: OutboundError) -> bool:
        """Record a failed notification; False when the Subscription is now in error."""
        held.attempts += 1
        log.warning(
            "notification of %s failed (attempt %d of %d): %s",
            held.key,
            held.attempts,
            self.attempts,
            error.reason,
        )
        if (held.position, held.number) != held.saved:
            if not await self.outbox.advance(held.key, self.owner, held.position, held.number):
                await self._drop(held, save=False, release=False)
                return False
            held.saved = (held.position, held.number)
        if held.attempts < self.attempts:
            held.next_at = time.time() + self.backoff * 2 ** (held.attempts - 1)
            await self.outbox.failed(held.key, self.owner, held.attempts, held.next_at)
            return True
        await self.outbox.failed(held.key, self.owner, 0, 0.0)
        await self._drop(held, save=False)
        await self._set_error(held.key, DELIVERY_FAILED.format(attempts=held.attempts))
        return False
