"""The dispatcher's cursors and their leases: which Subscriptions this process serves, and
how far each one got (R4 Subscription, https://hl7.org/fhir/R4/subscription.html; the
event numbers of topic-based ones, Subscriptions R5 Backport IG,
https://hl7.org/fhir/uv/subscriptions-backport/, ``events-since-subscription-start``).

Every active Subscription has a cursor in the outbox (``outbox.CursorState``): the last
event it was sent or passed, the number of the last notification sent, and its failed
attempts. A process serves a subscription only while it holds the cursor's lease
(:class:`Cursors`, the base of ``dispatcher.Dispatcher``):

- ``_claim`` claims the cursors of the active Subscriptions it does not hold yet and
  renews its own (one compare-and-set for all, every ``LEASE / 2`` seconds; a cursor whose
  owner died is free again when its lease ends, :data:`LEASE` seconds). One that another
  process holds is tried again ``LEASE / 2`` seconds later; one whose renewal failed is
  dropped (another process goes on from the saved cursor);
- ``_hold`` turns a claimed cursor and its Subscription into a :class:`Held` (the parsed
  criteria or topic plan, the creator's access, the group of subscriptions that share one
  search); a criteria stored before the rules (an import) makes the Subscription
  ``error``;
- ``_save`` writes the cursors that moved in one write; a cursor whose lease was lost
  meanwhile is dropped. A process that dies sends again what it sent since the last save,
  with the same numbers: delivery is at least once and in order;
- ``_drop`` stops serving one (its sending task cancelled, its cursor saved and released
  as asked, its connection closed).

The matching and sending of the held subscriptions are ``events.delivery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fhir_server.events import backport
from fhir_server.events.criteria import parse_criteria
from fhir_server.events.hook_client import HookClient
from fhir_server.events.matching import Needs, reference_needs
from fhir_server.events.outbox import CursorState, Notification, Outbox
from fhir_server.events.statuses import set_status
from fhir_server.events.subscriptions import CREATOR, subscriber_access
from fhir_server.storage.base import StoredVersion
from resources.errors import FhirError
from resources.search.query import AccessClause, SearchQuery

LEASE = 10.0
"""Seconds a claimed cursor stays with its process without being claimed again."""


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


class Cursors:
    """The cursor and lease handling of ``dispatcher.Dispatcher`` (its base class): the
    attributes below are set by the dispatcher's ``__init__`` and ``_reload``."""

    store: Any
    outbox: Outbox
    owner: str
    client: HookClient
    _active: dict[str, tuple[StoredVersion, dict[str, Any]]]
    """The active Subscriptions (``_reload``), by key."""
    _held: dict[str, Held]
    """The subscriptions whose cursor this process holds, by key."""
    _not_before: dict[str, float]
    """Per subscription: no claim before then (another process holds it)."""

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
