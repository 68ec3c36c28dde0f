"""The pings of the R4 ``websocket`` channel
(https://hl7.org/fhir/R4/subscription.html#2.46.7.2): a client binds an open websocket to
a Subscription (``bind [id]``, answered ``bound [id]``) and the server sends ``ping [id]``
on it for every event that matches the Subscription's criteria.

One :class:`WebsocketHub` per server process serves the sockets connected to that
process. A websocket may be connected to any worker, whichever process holds the
rest-hook lease of the outbox: so the hub does not use the leased cursors
(``fhir_server.events.dispatcher``) at all. It reads the outbox itself, for the
Subscriptions bound to its own sockets only, from an in-memory position per
Subscription: the outbox head when the first socket of this process was bound to it. A
socket gets the ping of each event committed after its ``bound`` answer, once, in commit
order (sockets bound later start later). Nothing is stored per socket: a socket that
closes is forgotten, and one that reconnects and binds again hears of what is committed
from then on (a ping only says "look": the client searches for what changed).

The hub looks at the outbox as soon as a write of this process commits (the dispatcher's
wake-up, :meth:`WebsocketHub.poke`) and every :data:`POLL` seconds for the writes of other
processes; it matches events with the dispatcher's engine (``events.matching``: the
criteria's search under the creator's read access, so a patient's Subscription pings only
for what that patient may read; Subscriptions with the same criteria and creator share
one search; events that cannot refer to what a criteria names are passed over unread).

Every :data:`RELOAD` seconds (and before every ping, through the cached grant checks) it
checks the bound Subscriptions and the sockets' own authorization: a Subscription that
is no longer an active websocket one (changed, ``off``, ``error``, deleted), or whose
creator's grant, account or app was revoked (``events.grants``), gets ``error [id]
<reason>`` on its sockets and is unbound; a socket whose own grant (the token it bound
with) was revoked is closed with code 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.events.criteria import parse_criteria
from fhir_server.events.grants import GrantCheck
from fhir_server.events.matching import (
    Matcher,
    Needs,
    RecentRefs,
    candidates,
    need_codes,
    reference_needs,
    refs_of,
)
from fhir_server.events.outbox import Event
from fhir_server.events.subscriptions import CREATOR, TYPE, subscriber_access
from fhir_server.events.websocket_channel import is_websocket
from resources import fhir_json
from resources.errors import FhirError
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AccessClause, SearchQuery

log = logging.getLogger("fhir_server.events")

POLL = 0.1
"""Seconds between looks at the outbox for the writes of other processes."""
RELOAD = 1.0
"""Seconds between checks of the bound Subscriptions and of the sockets' grants."""
READ_BATCH = 500
"""Events read at a time."""
RELOAD_BATCH = 100
"""Bound Subscriptions read with one search."""

NOT_ACTIVE = "Subscription/{id} is no longer an active websocket subscription (status {status})"
GONE = "Subscription/{id} was deleted"
BINDER_REVOKED = "the authorization this websocket was bound with was revoked"


class Socket(Protocol):
    """What the hub needs of a connected websocket (``events.websocket_endpoint``)."""

    binder: dict[str, Any] | None
    """The authorization it was bound with, shaped like a Subscription's creator
    extension for :class:`GrantCheck` (None: nothing to check)."""

    def push(self, text: str) -> None:
        """Queue a text message (never blocks)."""
        ...

    def end(self, code: int, reason: str) -> None:
        """Close the socket."""
        ...


class BindRefused(Exception):
    """A ``bind`` the hub refuses: its text goes to the client after ``error [id]``."""


@dataclass(eq=False)
class Watched:
    """A Subscription bound to sockets of this process."""

    id: str
    subscription: dict[str, Any]
    version: int
    criteria: SearchQuery
    access: AccessClause | None
    needs: Needs
    group: tuple[str, str]
    """Subscriptions with the same criteria and creator match with one search."""
    matched: int
    """Every event up to here was matched (and pinged)."""
    sockets: dict[Socket, int] = field(default_factory=dict)
    """The bound sockets, each with the outbox head when it was bound: it is pinged for
    the events after it."""


def _watched(id_: str, version: int, resource: dict[str, Any], matched: int) -> Watched:
    """Raises :class:`BindRefused` when its criteria is not a valid search (stored
    before the rules: imported)."""
    try:
        criteria = parse_criteria(str(resource.get("criteria") or ""))
    except FhirError as error:
        raise BindRefused(f"the criteria is not valid: {error}") from None
    creator = next((e for e in resource.get("extension") or [] if e.get("url") == CREATOR), None)
    return Watched(
        id=id_,
        subscription=resource,
        version=version,
        criteria=criteria,
        access=subscriber_access(resource),
        needs=reference_needs(criteria),
        group=(str(resource.get("criteria")), json.dumps(creator, sort_keys=True)),
        matched=matched,
    )


class WebsocketHub:
    """This process's bound websockets over ``store`` (the raw store); ``grants``: the
    check of the creators' and binders' authorizations (None: nothing to check)."""

    def __init__(
        self, store: Any, grants: GrantCheck | None = None, recent: RecentRefs | None = None
    ) -> None:
        self.store = store
        self.outbox = store.outbox
        self.grants = grants
        self.matcher = Matcher(store, recent)
        self._watched: dict[str, Watched] = {}
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._reload_at = 0.0

    # -- life ----------------------------------------------------------------------
    def poke(self) -> None:
        """Look at the outbox now (a write of this process committed)."""
        if self._wake is not None and self._watched:
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for socket in {s for w in self._watched.values() for s in w.sockets}:
            socket.end(1001, "the server is shutting down")
        self._watched.clear()
        await self.matcher.close()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="fhir-server-websockets")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                async with self._lock:
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("websocket notifications failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await self._wake.wait()

    # -- binding -------------------------------------------------------------------
    async def bind(self, socket: Socket, stored: Any, resource: dict[str, Any]) -> None:
        """Bind ``socket`` to the Subscription read as ``stored`` (its ``resource``): it
        is pinged for every matching event committed from now on. Raises
        :class:`BindRefused`. Binding twice changes nothing."""
        status = resource.get("status")
        if not is_websocket(resource):
            raise BindRefused(f"Subscription/{stored.id} does not have a websocket channel")
        if status != "active":
            raise BindRefused(NOT_ACTIVE.format(id=stored.id, status=status))
        reason = self.grants.revoked(resource) if self.grants is not None else None
        if reason is not None:
            raise BindRefused(reason)
        async with self._lock:
            head = await self.outbox.last_seq()
            watched = self._watched.get(stored.id)
            if watched is None or watched.version < stored.version:
                fresh = _watched(stored.id, stored.version, resource, head)
                if watched is not None:  # a newer version: same sockets, same position
                    fresh.sockets, fresh.matched = watched.sockets, watched.matched
                watched = self._watched[stored.id] = fresh
            watched.sockets.setdefault(socket, head)
        self._start()

    def bound_count(self, socket: Socket) -> int:
        return sum(1 for w in self._watched.values() if socket in w.sockets)

    def unbind(self, socket: Socket) -> None:
        """Forget ``socket`` (it closed)."""
        for key, watched in list(self._watched.items()):
            watched.sockets.pop(socket, None)
            if not watched.sockets:
                del self._watched[key]

    # -- the look ------------------------------------------------------------------
    async def tick(self) -> None:
        if not self._watched:
            return
        now = time.monotonic()
        if now >= self._reload_at:
            self._reload_at = now + RELOAD
            await self._reload()
        await self._match(await self.outbox.last_seq())

    async def _reload(self) -> None:
        """Whether each bound Subscription is still an active websocket one (its latest
        version), its creator's and its sockets' grants alive."""
        current = await self._current(list(self._watched))
        for watched in list(self._watched.values()):
            stored = current.get(watched.id)
            if self._watched.get(watched.id) is not watched:
                continue  # unbound meanwhile
            if stored is None or stored.deleted or stored.content is None:
                self._end(watched, GONE.format(id=watched.id))
                continue
            if stored.version > watched.version:
                resource = fhir_json.loads(stored.content)
                if not is_websocket(resource) or resource.get("status") != "active":
                    status = resource.get("status")
                    self._end(watched, NOT_ACTIVE.format(id=watched.id, status=status))
                    continue
                try:
                    fresh = _watched(watched.id, stored.version, resource, watched.matched)
                except BindRefused as refused:
                    self._end(watched, str(refused))
                    continue
                fresh.sockets = watched.sockets
                watched = self._watched[watched.id] = fresh
            self._check_grants(watched)

    async def _current(self, ids: list[str]) -> dict[str, Any]:
        """The current versions of the Subscriptions ``ids`` (one search per
        :data:`RELOAD_BATCH`; a deleted one is absent)."""
        found: dict[str, Any] = {}
        for start in range(0, len(ids), RELOAD_BATCH):
            chunk = ids[start : start + RELOAD_BATCH]
            query = parse_search(
                [TYPE],
                [("_id", ",".join(chunk))],
                strict=True,
                params_for=search_params,
                max_count=RELOAD_BATCH,
                default_count=RELOAD_BATCH,
            )
            page = await self.store.search(query, None, RELOAD_BATCH, False)
            found.update((stored.id, stored) for stored in page.entries)
        return found

    def _check_grants(self, watched: Watched) -> bool:
        """Whether ``watched`` may still ping (its creator's grant), dropping the
        sockets whose own grant was revoked."""
        if self.grants is None:
            return True
        reason = self.grants.revoked(watched.subscription)
        if reason is not None:
            self._end(watched, reason)
            return False
        for socket in list(watched.sockets):
            if socket.binder is not None and self.grants.revoked(socket.binder) is not None:
                self.unbind(socket)
                socket.end(1008, BINDER_REVOKED)
        return bool(watched.sockets)

    def _end(self, watched: Watched, reason: str) -> None:
        """Unbind ``watched``: its sockets are told why."""
        self._watched.pop(watched.id, None)
        for socket in watched.sockets:
            socket.push(f"error {watched.id} {reason}")
        log.info("websocket bindings of Subscription/%s ended: %s", watched.id, reason)

    async def _match(self, last: int) -> None:
        """Match the events up to ``last`` for every bound Subscription and ping."""
        while True:
            pending = [w for w in self._watched.values() if w.matched < last]
            if not pending:
                return
            events = await self.outbox.events_after(min(w.matched for w in pending), READ_BATCH)
            through = events[-1].seq if events else last
            groups: dict[tuple[str, str], list[Watched]] = defaultdict(list)
            for watched in pending:
                groups[watched.group].append(watched)
            refs = None
            if any(w.needs for w in pending):
                codes = need_codes(w.needs for w in pending)
                types = {t for w in pending if w.needs for t in w.criteria.types}
                indexed = await self.matcher.rows_of(events, codes, types)
                refs = refs_of(indexed), set(indexed)
            pings: list[tuple[int, int, Watched]] = []  # commit order across groups
            for group in groups.values():
                found = await self._found(group, events, refs)
                for watched in group:
                    pings.extend(
                        (seq, id(watched), watched)
                        for seq in found
                        if watched.matched < seq <= through
                    )
            for seq, _, watched in sorted(pings, key=lambda p: p[:2]):
                self._ping(watched, seq)
            for watched in pending:
                watched.matched = max(watched.matched, through)
            if through >= last:
                return

    async def _found(self, group: list[Watched], events: list[Event], refs: Any) -> set[int]:
        """The seqs of ``events`` that match the group's criteria."""
        first, lowest = group[0], min(w.matched for w in group)
        batch = [e for e in events if e.seq > lowest]
        if first.needs and refs is not None:
            by_target, indexed = refs
            maybe = candidates(first.needs, by_target)
            batch = [e for e in batch if e.seq in maybe or e.seq not in indexed]
        if not batch:
            return set()
        return set(await self.matcher.matches(batch, first.criteria, first.access))

    def _ping(self, watched: Watched, seq: int) -> None:
        if self._watched.get(watched.id) is not watched or not self._check_grants(watched):
            return
        for socket, after in list(watched.sockets.items()):
            if seq > after:
                socket.push(f"ping {watched.id}")
