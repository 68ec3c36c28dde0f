"""Matching and sending the held subscriptions' notifications, and what a failure does (R4
Subscription, https://hl7.org/fhir/R4/subscription.html: the channels and the ``error``
status; topic-based Subscriptions and their heartbeats, Subscriptions R5 Backport IG,
https://hl7.org/fhir/uv/subscriptions-backport/).

:class:`Delivery` (a base of ``dispatcher.Dispatcher``, over the cursors it holds,
``events.cursors``):

- ``_match`` reads the new events once for all held subscriptions (:data:`READ_BATCH` at a
  time) and matches them per group (subscriptions with the same criteria and creator
  share one search, ``events.matching``; the reference pre-filter first rules out the
  events that cannot match), queueing each subscription's matches (at most
  :data:`QUEUE_MAX`: then its matching waits for its sending);
- ``_send``: each held subscription sends its queue in its own task, one notification at
  a time and in order, with the subscription's next event number (``rest_hook.deliver``
  for R4 rest-hook, ``email_channel`` for email, ``backport_channel.send_event`` for a
  topic-based one, over kept-alive connections, ``events.hook_client``): different
  subscriptions are sent to concurrently, a slow endpoint holds up only its own. The
  cursor moves past an event only once the endpoint accepted it (and past the events
  that did not match). A Subscription whose creator's authorization was revoked gets
  status ``error`` (``events.grants``);
- ``_failed``: a failure is retried after ``delivery_backoff`` seconds, doubling, until
  ``delivery_attempts`` attempts failed; then the Subscription's status is ``error`` with
  an ``error`` text (:data:`DELIVERY_FAILED`) and delivery stops (a client writing it
  again restarts it);
- ``_heartbeats``: a heartbeat for each topic-based Subscription with a
  ``backport-heartbeat-period`` that sent nothing for that long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from fhir_server.events import backport, backport_channel, email_channel
from fhir_server.events.cursors import Cursors, Held
from fhir_server.events.grants import GrantCheck
from fhir_server.events.matching import Matcher, candidates, need_codes, refs_of
from fhir_server.events.outbox import Notification
from fhir_server.events.rest_hook import deliver
from fhir_server.events.statuses import set_error
from fhir_server.notifications.mailer import Mailer
from fhir_server.notifications.templates import Templates
from fhir_server.outbound import OutboundError

log = logging.getLogger("fhir_server.events")

READ_BATCH = 500
"""Events read at a time."""
QUEUE_MAX = 2000
"""Matches queued for one subscription before its matching waits for its sending."""
DELIVERY_FAILED = (
    "Notifications failed {attempts} times in a row (the endpoint could not be reached or"
    " did not answer 2xx; the server's log has the reasons); write the Subscription with"
    " status requested to start again"
)


class Delivery(Cursors):
    """The matching and sending of ``dispatcher.Dispatcher`` (its base class): the
    attributes below are set by the dispatcher's ``__init__``."""

    matcher: Matcher
    grants: GrantCheck | None
    mailer: Mailer | None
    templates: Templates
    portal_url: str
    base_url: str
    attempts: int
    """``delivery_attempts``: failed attempts before the Subscription is ``error``."""
    backoff: float
    """``delivery_backoff``: seconds before the first retry, doubling."""
    _reload_at: float

    async def _set_error(self, key: str, text: str) -> None:
        await set_error(self.store, key, text)
        self._reload_at = 0.0

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
