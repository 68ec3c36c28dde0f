"""The dispatcher: reads the outbox and delivers notifications of R4 Subscriptions
(https://hl7.org/fhir/R4/subscription.html) and of topic-based ones (Subscriptions R5
Backport IG, https://hl7.org/fhir/uv/subscriptions-backport/), one background task per
server process, started and stopped with the app.

It looks at the outbox as soon as a write of this process commits (the store the
requests write through calls :meth:`Dispatcher.wake`, ``fhir_server.events.wake``), and
every :data:`POLL` seconds for the writes of other processes (other workers, other
servers on one MongoDB, ``fhir-server import``). Each look:

1. every :data:`RELOAD` seconds (at once after a Subscription was written here) lists the
   Subscriptions that are ``requested`` or ``active``; makes each ``requested`` one
   ``active`` once its endpoint passes the outbound guard's checks (the host's
   addresses; there is no handshake in R4; a topic-based one's handshake,
   ``backport_channel.handshake``): a compare-and-set write of the Subscription
   (``If-Match`` on the version it read, so one process does it), and opens its cursor at
   the outbox's newest event: it hears of what is committed after. A topic-based
   rest-hook one is claimed first (a lease on an outbox cursor of that version, then the
   Subscription read again): one process sends its handshake, and when that process
   dies before it is settled, another one does once the lease ends. An active one whose
   creator's authorization was revoked gets status ``error`` (``events.grants``);
2. claims the cursors of the active Subscriptions it does not hold yet (a lease: one
   compare-and-set for all, renewed every ``LEASE / 2`` seconds; a cursor whose owner died
   is free again when its lease ends, ``cursors.LEASE`` seconds), so each subscription is
   served by one process (``events.cursors``);
3. reads the new events once for all the subscriptions it holds and matches them per
   criteria (subscriptions with the same criteria and creator share one search,
   ``events.matching``), queueing each subscription's matches, which each subscription
   sends in its own task, retrying failures with a backoff (``events.delivery``);
4. every :data:`SAVE_EVERY` seconds saves the cursors that moved, in one write;
5. every :data:`PRUNE_EVERY` seconds prunes the outbox (:meth:`Dispatcher.prune`), and
   drives the outbox's other readers (notifications to people, ``notifications``).

:class:`Dispatcher` is built on :class:`~fhir_server.events.delivery.Delivery` (the
matching, sending, heartbeats and failures), itself on
:class:`~fhir_server.events.cursors.Cursors` (claims, leases and saves of the cursors).
Nothing here runs inside a request: a failing endpoint never slows a write.
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
from fhir_server.events import backport, backport_channel, notification_log, topics
from fhir_server.events.cursors import LEASE, Held
from fhir_server.events.delivery import DELIVERY_FAILED, QUEUE_MAX, READ_BATCH, Delivery
from fhir_server.events.grants import GrantCheck
from fhir_server.events.hook_client import HookClient
from fhir_server.events.matching import Matcher, RecentRefs
from fhir_server.events.outbox import Outbox
from fhir_server.events.reader import OutboxReader
from fhir_server.events.statuses import (
    ACTIVATION_TIMEOUT,
    endpoint_refusal,
    list_subscriptions,
    set_status,
)
from fhir_server.events.subscriptions import TYPE
from fhir_server.events.websocket import WebsocketHub
from fhir_server.events.websocket_channel import is_websocket
from fhir_server.notifications import portal, readers
from fhir_server.notifications.mailer import Mailer
from fhir_server.notifications.templates import Templates
from fhir_server.outbound import OutboundGuard
from fhir_server.storage.base import StoredVersion
from resources.errors import FhirError
from resources.fhir_datetime import format_instant

__all__ = [
    "COALESCE",
    "DELIVERY_FAILED",
    "LEASE",
    "POLL",
    "PRUNE_EVERY",
    "QUEUE_MAX",
    "READ_BATCH",
    "RELOAD",
    "SAVE_EVERY",
    "Dispatcher",
    "Held",
]
"""``Held``, ``LEASE`` (``events.cursors``), ``READ_BATCH``, ``QUEUE_MAX`` and
``DELIVERY_FAILED`` (``events.delivery``) are only re-exported here: they are read in
their own modules, so a test changes them there."""

log = logging.getLogger("fhir_server.events")

POLL = 0.1
"""Seconds between looks at the outbox when nothing wakes the dispatcher (the writes of
other processes)."""
COALESCE = 0.002
"""Seconds a wake-up waits, so that the commits of a burst are read in one look."""
RELOAD = 1.0
"""Seconds between listings of the Subscriptions (at once after one is written here)."""
PRUNE_EVERY = 60.0
"""Seconds between prunings of the outbox."""
SAVE_EVERY = 0.5
"""Seconds between saves of the cursors that moved: a process that dies sends again what
it sent since the last save."""


class Dispatcher(Delivery):
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
        for reader in self.readers:  # before any request: its events are heard
            if not isinstance(reader, OutboxReader):
                continue  # a scan of its own (reminders): the cursor is only its lease
            try:
                await reader.open()
            except Exception:  # the store is not there yet: the first tick opens it
                log.exception("%s: opening its cursor failed", type(reader).__name__)
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
        with contextlib.suppress(Exception):  # the records of the last notifications
            await notification_log.flush(self.store)
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
                if await self._activate(stored, resource):
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

    async def _activate(self, stored: StoredVersion, resource: dict[str, Any]) -> bool:
        """``requested`` to ``active`` once its endpoint checked out, else ``error``
        (``statuses.endpoint_refusal``); the cursor opens at the activation. False when
        another process is activating it (a topic-based one's handshake, :meth:`_claimed`).
        """
        key = f"{TYPE}/{stored.id}"
        claim = _activation_key(stored) if _sends_handshake(resource) else None
        if claim is not None and not await self._claimed(claim, stored, resource):
            return False
        try:
            refusal = (
                None
                if is_websocket(resource)  # nothing to check (stored active; this: an import)
                else await endpoint_refusal(
                    self.guard, self.mailer, stored.id, resource, self.store
                )
            )
            if refusal is None and backport.is_topic_based(resource):
                refusal = await self._handshake(stored, resource)
            if refusal is not None:
                await set_status(self.store, stored, resource, "error", refusal)
            else:
                written = await set_status(self.store, stored, resource, "active")
                if written is not None and written.stored is not None:
                    await self.outbox.open_cursor(key, written.stored.seq)
                    self._opened[key] = written.stored.version
        except BaseException:
            if claim is not None:  # not settled: another process may try at once
                with contextlib.suppress(Exception):
                    await self.outbox.release(claim, self.owner)
            raise
        if claim is not None:
            # settled: the Subscription has a new version (this write or another), so a
            # process that claims this one's activation later reads that and stops
            await self.outbox.drop_cursor(claim)
        return True

    async def _claimed(self, claim: str, stored: StoredVersion, resource: dict[str, Any]) -> bool:
        """Whether this process may send the handshake of ``stored`` (the Backport IG: one
        handshake when the Subscription is requested, before it is active): a lease on
        the outbox cursor ``claim`` (one compare-and-set, as the subscriptions' cursors),
        then the Subscription read again, still that version (a process that activated it
        changed its version before it dropped the claim). The lease outlasts the endpoint
        check and the handshake: a process that dies meanwhile leaves the Subscription
        ``requested`` until it ends, then another one activates it."""
        now = time.time()
        until = now + LEASE + ACTIVATION_TIMEOUT + _timeout(resource, self.guard.timeout)
        await self.outbox.open_cursor(claim, 0)
        if not await self.outbox.claim([claim], self.owner, now, until):
            return False  # another process is activating it
        current = await self.store.read(TYPE, stored.id)
        if current is None or current.version != stored.version:
            await self.outbox.drop_cursor(claim)  # activated (or changed) meanwhile
            return False
        return True

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

    # -- the outbox ------------------------------------------------------------------
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


def _sends_handshake(resource: dict[str, Any]) -> bool:
    """A topic-based rest-hook Subscription: its activation sends a handshake."""
    channel = resource.get("channel") or {}
    return backport.is_topic_based(resource) and channel.get("type") == "rest-hook"


def _activation_key(stored: StoredVersion) -> str:
    """The outbox cursor whose lease is the activation of that version."""
    return f"{TYPE}/{stored.id}/_history/{stored.version}/$activate"


def _timeout(resource: dict[str, Any], default: float) -> float:
    """The seconds a handshake may take (``backport-timeout``, else the guard's)."""
    try:
        plan = backport.plan_of(resource)
    except FhirError:
        return default
    return float(plan.timeout or default) if plan is not None else default
