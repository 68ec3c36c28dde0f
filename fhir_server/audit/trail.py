"""The audit trail of one server process: an in-memory queue the request path appends
to (no I/O, a few microseconds), and a writer task that turns what was queued into R4
``AuditEvent`` resources (:mod:`fhir_server.audit.balp`) and stores them in batches, one
transaction each, every :data:`FLUSH_EVERY` seconds or :data:`BATCH` events.

The writer stores through the raw store, never through the API: an AuditEvent it writes
is not itself audited and passes no access rules. (Its versions are events of the
outbox like every version; subscriptions match them only when their criteria are on
AuditEvent, and :mod:`fhir_server.audit.sweep` passes over them.)

What is queued in memory is lost when the process dies before the next flush (at most
:data:`FLUSH_EVERY` seconds of it). For a write that is not all: a committed version is
an event of the durable outbox, written in the version's transaction, and the sweep
(:mod:`fhir_server.audit.sweep`) writes the AuditEvent of any version whose own was not
written, so the record of a committed write is never lost (it then names no user: the
request's details died with the process). Retention: AuditEvents recorded longer ago than
``FHIR_SERVER_AUDIT_RETENTION`` are deleted once an hour (:meth:`AuditTrail.prune`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server.audit import balp
from fhir_server.audit.balp import Names, Touched
from fhir_server.audit.content import bundle_patients, failure_text, patients_in, resource_touched
from fhir_server.audit.index import audit_index
from fhir_server.audit.record import Activity
from fhir_server.interactions.write import content_builder
from fhir_server.storage.base import (
    AlreadyExists,
    TransactionsUnavailable,
    WriteRequest,
    WriteResult,
)
from resources.search.parameters import search_params
from resources.search.parse import parse_search

log = logging.getLogger("fhir_server.audit")

FLUSH_EVERY = 0.25
"""Seconds between writes of the queue."""
BATCH = 500
"""AuditEvents written in one transaction (a fuller queue is written at once)."""
WRITE_SLICE = 10
"""AuditEvents built and written at a time (a slice costs the loop a few milliseconds)."""
MAX_QUEUED = 100_000
"""Activities kept while the store refuses the writes; past it the oldest reads are
dropped (logged). Writes are still recorded by the sweep."""
PRUNE_EVERY = 3600.0
MAX_QUERIES = 50
"""Queries named in one AuditEvent of a group of searches."""

_WRITES = frozenset({"create", "update", "patch", "delete"})
_READS = frozenset({"read", "vread"})

DisplayLookup = Callable[[str], Awaitable[str | None]]


class AuditTrail:
    """One process's queue of activities and the task that stores them."""

    def __init__(
        self,
        store: Any,
        retention: int | None,
        window: float = 0.0,
        user_display: DisplayLookup | None = None,
        client_name: Callable[[str], str | None] | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.window = window
        """Seconds over which like reads are one AuditEvent (0: one per interaction)."""
        self._groups: dict[tuple[str | None, ...], _Group] = {}
        self._user_display = user_display
        self._client_name = client_name
        self._queue: list[tuple[Activity, list[WriteResult]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prune_at = 0.0
        self._users: dict[str, str] = {}
        self._clients: dict[str, str] = {}
        self.sweep: Any = None
        """The outbox sweep (:class:`fhir_server.audit.sweep.Sweep`), run by the writer."""

    # -- the request path ----------------------------------------------------------

    def record(self, activity: Activity, writes: list[WriteResult] | None = None) -> None:
        """Queue an activity (and the versions its request committed)."""
        self._queue.append((activity, writes or []))
        if len(self._queue) >= BATCH:
            self._wake.set()

    # -- the writer ----------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fhir-server-audit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                # not wait_for: on Python 3.11 it can lose the cancellation of stop() when
                # the wait ends at the same moment, and stop() then waits forever
                async with asyncio.timeout(FLUSH_EVERY):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush(force=False)
                await self._housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit: writing the trail failed; trying again")

    async def _housekeeping(self) -> None:
        if self.sweep is not None:
            await self.sweep.tick()
        if self.retention and time.time() >= self._prune_at:
            self._prune_at = time.time() + PRUNE_EVERY
            await self.prune()

    async def flush(self, force: bool = True) -> int:
        """Store what is queued, and the groups of reads whose window has ended (all of
        them when ``force``); the number of AuditEvents written."""
        written = 0
        while self._queue:
            taken, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            try:
                events = await self._events(taken)
            except Exception:
                self._keep(taken)
                raise
            await self._write_or_keep(events, taken)
            written += len(events)
        events = self._ended(force)
        if events:
            await self.write(events)
        return written + len(events)

    async def _write_or_keep(
        self, events: list[dict[str, Any]], taken: list[tuple[Activity, list[WriteResult]]]
    ) -> None:
        try:
            await self.write(events)
        except Exception:
            self._keep([t for t in taken if t[0].kind != "rest" or t[1] or t[0].failed])
            raise

    def _keep(self, taken: list[tuple[Activity, list[WriteResult]]]) -> None:
        """Put back what could not be written, for the next try (bounded)."""
        self._queue[:0] = taken
        if len(self._queue) > MAX_QUEUED:
            dropped = len(self._queue) - MAX_QUEUED
            del self._queue[:dropped]
            log.error("audit: %d queued activities dropped (the store fails)", dropped)

    async def write(self, events: Sequence[dict[str, Any]]) -> None:
        """Store AuditEvents, :data:`WRITE_SLICE` a transaction, the requests served
        between slices (one at a time where a transaction cannot be: a standalone
        MongoDB, or an id the sweep wrote first)."""
        for start in range(0, len(events), WRITE_SLICE):
            if start:
                await asyncio.sleep(0)
            requests = [_request(event) for event in events[start : start + WRITE_SLICE]]
            try:
                await self.store.write_batch(requests)
                continue
            except (AlreadyExists, TransactionsUnavailable):
                pass
            for request in requests:
                with contextlib.suppress(AlreadyExists):
                    await self.store.write(request)

    async def _events(self, taken: list[tuple[Activity, list[WriteResult]]]) -> list[dict]:
        names = await self._names(activity for activity, _ in taken)
        events: list[dict[str, Any]] = []
        for n, (activity, writes) in enumerate(taken):
            if n % 100 == 99:
                await asyncio.sleep(0)  # the requests go on between slices
            if activity.kind == "rest":
                events += await self._rest(activity, writes, names)
            else:
                events.append(balp.auth_event(activity, names))
        return events

    async def _rest(
        self, activity: Activity, writes: list[WriteResult], names: Names
    ) -> list[dict[str, Any]]:
        failure = failure_text(activity.body) if activity.failed else None
        if writes:
            touched = [await self._written(result) for result in writes]
            return balp.rest_events(activity, touched, names, write_ids=True)
        if activity.failed:
            return balp.rest_events(activity, [], names, failure=failure)
        if activity.code in _READS:
            reference = _read_reference(activity)
            touched = [resource_touched(reference, activity.body)] if reference else []
        elif activity.code in _WRITES:
            touched = []  # nothing changed (a delete of what was not there)
        else:  # a Bundle (searches, history, operations): the query and the patients
            touched = [Touched(p, (p,)) for p in bundle_patients(activity.body)]
        if self.window <= 0:
            return balp.rest_events(activity, touched, names)
        self._group(activity, touched)
        return []

    def _group(self, activity: Activity, touched: list[Touched]) -> None:
        """Count a successful read into the group of its kind, user, app, address and
        patient (one per patient whose data it returned)."""
        a = activity.agent
        search = activity.code.startswith("search")
        line = f"{activity.method} {activity.path}?{activity.query}" if search else ""
        for patient, items in (balp.per_patient(touched) or {None: []}).items():
            key = (activity.code, a.user, a.subject, a.client_id, a.address, a.patient, patient)
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(activity, activity.recorded)
            group.activity = activity
            group.count += 1
            for item in items:
                group.touched.setdefault(item.reference, item)
            if search:
                group.queries.setdefault(line, activity)

    def _ended(self, force: bool) -> list[dict[str, Any]]:
        """The AuditEvents of the groups whose window has ended (or that are full)."""
        names = Names(self._users, self._clients)
        events = []
        cutoff = time.time() - self.window
        for key, group in list(self._groups.items()):
            full = len(group.touched) >= balp.MAX_ENTITIES or len(group.queries) >= MAX_QUERIES
            if force or full or group.first <= cutoff:
                del self._groups[key]
                touched = list(group.touched.values())
                queries = list(group.queries.values())
                events.append(
                    balp.grouped_event(
                        group.activity, key[-1], touched, queries, group.first, group.count, names
                    )
                )
        return events

    async def _written(self, result: WriteResult) -> Touched:
        stored = result.stored
        assert stored is not None
        reference = f"{stored.type}/{stored.id}/_history/{stored.version}"
        content = stored.content
        if stored.deleted and result.previous is not None:
            content = result.previous.content
        return Touched(
            reference,
            patients_in(stored.type, stored.id, content),
            balp.action_of(stored.method),
        )

    async def _names(self, activities: Any) -> Names:
        """Display names of the users (staff, patients) and apps of a batch, looked up
        once per process and remembered."""
        for activity in activities:
            user, client = activity.agent.user, activity.agent.client_id
            if user and user not in self._users and self._user_display is not None:
                if len(self._users) > 10_000:
                    self._users.clear()
                try:
                    self._users[user] = await self._user_display(user) or ""
                except Exception:
                    self._users[user] = ""
            if client and client not in self._clients and self._client_name is not None:
                if len(self._clients) > 10_000:
                    self._clients.clear()
                try:
                    found = await asyncio.to_thread(self._client_name, client)
                except Exception:
                    found = None
                self._clients[client] = found or ""
        return Names(self._users, self._clients)

    # -- retention -----------------------------------------------------------------

    async def prune(self) -> int:
        """Delete the AuditEvents recorded before the retention period (tombstones:
        they leave searches and reads; their versions stay in the history)."""
        assert self.retention
        cutoff = balp.instant(time.time() - self.retention)
        query = parse_search(
            [balp.TYPE],
            [("date", f"lt{cutoff}")],
            strict=True,
            params_for=search_params,
            max_count=500,
            default_count=500,
        )
        pruned = 0
        while True:
            page = await self.store.search(query, None, 500, False)
            live = [s for s in page.entries if not s.deleted]
            if not live:
                break
            requests = [WriteRequest(balp.TYPE, s.id, "delete") for s in live]
            try:
                await self.store.write_batch(requests)
            except TransactionsUnavailable:
                for request in requests:
                    await self.store.write(request)
            pruned += len(requests)
        if pruned:
            log.info("audit: %d AuditEvents older than the retention pruned", pruned)
        return pruned


@dataclass(slots=True)
class _Group:
    """Like reads of one patient's data within the window: the latest, since when, how
    many, the resources and queries."""

    activity: Activity
    first: float
    count: int = 0
    touched: dict[str, Touched] = field(default_factory=dict)
    queries: dict[str, Activity] = field(default_factory=dict)


def _request(event: dict[str, Any]) -> WriteRequest:
    id_ = event["id"]
    return WriteRequest(
        balp.TYPE,
        id_,
        "create",
        content_builder(event, id_),
        must_not_exist=True,
        index=audit_index(event),
    )


def _read_reference(activity: Activity) -> str | None:
    """``Type/id/_history/v`` of a read (the version from the ETag)."""
    parts = activity.path.split("/")
    if len(parts) < 2:
        return None
    etag = activity.headers.get("etag", "")
    version = etag.removeprefix("W/").strip('"')
    reference = f"{parts[0]}/{parts[1]}"
    return f"{reference}/_history/{version}" if version.isdigit() else reference
