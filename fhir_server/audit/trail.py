"""The audit trail of one server process: an in-memory queue the request path appends
to (a tuple, no I/O, about a microsecond), and a writer task that turns what was queued
into R4 ``AuditEvent`` resources (:mod:`fhir_server.audit.balp`) and stores them in
batches, every :data:`FLUSH_EVERY` seconds or when :data:`WAKE_AT` requests or
:data:`WAKE_BYTES` of responses are queued.

A successful read is not even queued: like reads (the same interaction, user, app,
address and version read) are counted as they come, one dictionary lookup each, and the
writer finds what a version disclosed (its patients) once per version; only what
differs becomes an AuditEvent of the window's group (``FHIR_SERVER_AUDIT_WINDOW``).

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
``FHIR_SERVER_AUDIT_RETENTION`` are removed for good once an hour, history and index
included (:meth:`AuditTrail.prune`).
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
from fhir_server.audit.disclosure import Disclosed
from fhir_server.audit.index import audit_index
from fhir_server.audit.record import Activity, Captured
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

FLUSH_EVERY = 1.0
"""Seconds between writes of the queue (like reads are counted over it: the longer, the
fewer AuditEvents to build; at most this much of the reads is lost with the process)."""
BATCH = 500
"""Queued requests turned into AuditEvents at a time (the requests go on between)."""
WAKE_AT = 20_000
"""Queued requests that start a write before :data:`FLUSH_EVERY` has passed."""
WAKE_BYTES = 16 << 20
"""Bytes of queued response bodies that start a write before :data:`FLUSH_EVERY`."""
WRITE_SLICE = 10
"""AuditEvents built at a time on the event loop (the requests go on between slices)."""
TRANSACTION = 8
"""AuditEvents written in one transaction while the trail keeps up. The store has one
writer for all the server's processes and a transaction holds it for its whole length:
200 AuditEvents (~0.3 ms each in SQLite) held every write of both workers for 50-70 ms,
and at 450-550 ``$book`` requests a second those pauses made the p99 155-301 ms (32:
97-98 ms; 8: 43-65 ms, ``bench/scheduling_bench.py --rate``). A batch this small is written
on the event loop when the writer is free, or shares the commit of the writes queued
with it (``fhir_server.storage.sqlite_write``)."""
CATCH_UP_TRANSACTION = 200
"""AuditEvents written in one transaction while the trail is behind (:data:`CATCH_UP_AT`):
the writer is saturated and small transactions would fall further behind (each waits its
turn); bigger ones write more in a turn. Every commit also makes each reading connection
of SQLite drop its page cache: fewer transactions cost the reads less."""
CATCH_UP_AT = 2_000
"""AuditEvents still to write and activities queued behind them from which the trail
catches up (a search that returned 20,000 patients is 20,000 AuditEvents)."""
MAX_QUEUED = 100_000
"""Activities kept while the store refuses the writes; past it the oldest reads are
dropped (logged). Writes are still recorded by the sweep."""
PRUNE_EVERY = 3600.0
MAX_QUERIES = 50
"""Queries named in one AuditEvent of a group of searches."""

_WRITES = frozenset({"create", "update", "patch", "delete"})
_READS = frozenset({"read", "vread"})

DisplayLookup = Callable[[str], Awaitable[str | None]]
_Queued = Captured | Disclosed | tuple[Activity, list[WriteResult]]
"""What the queue holds: a FHIR request, a completed export, another activity."""


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
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prune_at = 0.0
        self._users: dict[str, str] = {}
        self._clients: dict[str, str] = {}
        self._held = 0
        """Bytes of the response bodies queued."""
        self._reads: dict[tuple[Any, ...], list[Any]] = {}
        """Like reads counted since the last write: [first, last, count] per interaction,
        user, app, address and version read."""
        self._disclosed: dict[tuple[str, bytes], tuple[str, ...]] = {}
        """The patients of each version read (``path``, ETag): a version never changes."""
        self.sweep: Any = None
        """The outbox sweep (:class:`fhir_server.audit.sweep.Sweep`), run by the writer."""

    # -- the request path ----------------------------------------------------------

    def record(self, activity: Activity, writes: list[WriteResult] | None = None) -> None:
        """Queue an activity (and the versions its request committed)."""
        self._queue.append((activity, writes or []))
        if len(self._queue) >= WAKE_AT:
            self._wake.set()

    def record_disclosed(self, disclosed: Disclosed) -> None:
        """Queue a completed bulk export (:mod:`fhir_server.audit.disclosure`)."""
        self._queue.append(disclosed)
        self._wake.set()

    def queue(self, captured: Captured) -> None:
        """Queue a finished FHIR request (:func:`fhir_server.audit.hook.capture`). A
        successful read is counted at once into the reads of its kind, user, app,
        address and version: nothing of it is kept but the count (like reads arrive by
        the thousand a second; what lives on until the writer runs is what the cyclic
        garbage collector promotes and then scans in its slowest, oldest generation)."""
        if (
            captured.code in _READS
            and captured.status < 400
            and not captured.writes
            and self.window > 0
        ):
            _count_read(self._reads, captured)
            if len(self._reads) >= WAKE_AT:
                self._wake.set()
            return
        queue = self._queue
        queue.append(captured)
        body = captured.body
        if body is not None:
            self._held += len(body)
        if self._held >= WAKE_BYTES or len(queue) >= WAKE_AT:
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
        self._held = 0
        while self._queue:
            taken, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            if written or len(taken) == BATCH:
                await asyncio.sleep(0)  # the requests go on between slices
            try:
                events = await self._events(taken)
            except Exception:
                self._keep(taken)
                raise
            await self._write_or_keep(events, taken)
            written += len(events)
        reads, self._reads = self._reads, {}
        for n, (first, last, count) in enumerate(reads.values()):
            if n % 200 == 199:
                await asyncio.sleep(0)
            self._group_reads(first, last, count)
        events = self._ended(force)
        if events:
            await self.write(events)
        return written + len(events)

    async def _write_or_keep(
        self,
        events: list[dict[str, Any]],
        taken: list[_Queued],
    ) -> None:
        try:
            await self.write(events)
        except Exception:
            self._keep([t for t in taken if _not_a_read(t)])
            raise

    def _keep(self, taken: list[_Queued]) -> None:
        """Put back what could not be written, for the next try (bounded)."""
        self._queue[:0] = taken
        if len(self._queue) > MAX_QUEUED:
            dropped = len(self._queue) - MAX_QUEUED
            del self._queue[:dropped]
            log.error("audit: %d queued activities dropped (the store fails)", dropped)

    async def write(self, events: Sequence[dict[str, Any]]) -> None:
        """Store AuditEvents, built :data:`WRITE_SLICE` at a time between the requests
        and written :data:`TRANSACTION` a transaction, :data:`CATCH_UP_TRANSACTION` when
        the trail is behind (one at a time where a transaction cannot be: a standalone
        MongoDB, or an id the sweep wrote first)."""
        start = 0
        while start < len(events):
            behind = len(self._queue) + len(events) - start >= CATCH_UP_AT
            end = min(start + (CATCH_UP_TRANSACTION if behind else TRANSACTION), len(events))
            requests = []
            for at in range(start, end, WRITE_SLICE):
                if at:
                    await asyncio.sleep(0)
                requests += [_request(e) for e in events[at : min(at + WRITE_SLICE, end)]]
            start = end
            try:
                await self.store.write_batch(requests)
                continue
            except (AlreadyExists, TransactionsUnavailable):
                pass
            for request in requests:
                with contextlib.suppress(AlreadyExists):
                    await self.store.write(request)

    async def _events(self, taken: list[_Queued]) -> list[dict[str, Any]]:
        names = await self._names(taken)
        events: list[dict[str, Any]] = []
        slow = 0
        for item in taken:
            if isinstance(item, Captured):
                activity, writes = item.activity(), item.writes
            elif isinstance(item, Disclosed):
                events += await _disclosed_events(item, names)
                continue
            else:
                activity, writes = item
            slow += 1
            if slow % 100 == 0:
                await asyncio.sleep(0)  # the requests go on between slices
            if activity.kind == "rest":
                events += await self._rest(activity, writes, names)
            else:
                events.append(balp.auth_event(activity, names))
        return events

    def _group_reads(self, first: Captured, last: Captured, count: int) -> None:
        """``count`` like reads of one version, from ``first`` to ``last``, into their
        window's group."""
        activity = last.activity()
        reference = _read_reference(activity)
        if reference is None:
            touched = []
        elif first.etag is None:
            touched = [resource_touched(reference, last.body)]
        else:
            known = self._disclosed.get((last.path, first.etag))
            if known is None:
                if len(self._disclosed) > 10_000:
                    self._disclosed.clear()
                known = resource_touched(reference, last.body).patients
                self._disclosed[(last.path, first.etag)] = known
            touched = [Touched(reference, known)]
        self._group(activity, touched, count, first.recorded)

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

    def _group(
        self,
        activity: Activity,
        touched: list[Touched],
        count: int = 1,
        first: float | None = None,
    ) -> None:
        """Count ``count`` successful reads (the latest: ``activity``; the first at
        ``first``) into the group of their kind, user, app, address and patient (one per
        patient whose data they returned)."""
        a = activity.agent
        search = activity.code.startswith("search")
        line = f"{activity.method} {activity.path}?{activity.query}" if search else ""
        for patient, items in (balp.per_patient(touched) or {None: []}).items():
            key = (activity.code, a.user, a.subject, a.client_id, a.address, a.patient, patient)
            group = self._groups.get(key)
            if group is None:
                start = activity.recorded if first is None else first
                group = self._groups[key] = _Group(activity, start)
            group.activity = activity
            group.count += count
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

    async def _names(self, taken: list[_Queued]) -> Names:
        """Display names of the users (staff, patients) and apps of a batch, looked up
        once per process and remembered."""
        users, clients = self._users, self._clients
        for item in taken:
            if isinstance(item, Captured):
                policy = item.policy
                if policy is None:
                    continue
                user, client = policy.fhir_user, policy.client_id or None
            else:  # an activity, or a disclosure (its first field: the kick-off's)
                user, client = item[0].agent.user, item[0].agent.client_id
            if user and user not in users and self._user_display is not None:
                if len(users) > 10_000:
                    users.clear()
                try:
                    users[user] = await self._user_display(user) or ""
                except Exception:
                    users[user] = ""
            if client and client not in clients and self._client_name is not None:
                if len(clients) > 10_000:
                    clients.clear()
                try:
                    found = await asyncio.to_thread(self._client_name, client)
                except Exception:
                    found = None
                clients[client] = found or ""
        return Names(users, clients)

    # -- retention -----------------------------------------------------------------

    async def prune(self) -> int:
        """Remove the AuditEvents recorded before the retention period for good: the
        resources, every version of their history and their index rows (the store's
        ``purge``; nothing else removes an AuditEvent: the API is append-only)."""
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
            ids = [s.id for s in page.entries]
            removed = await self.store.purge(balp.TYPE, ids) if ids else 0
            pruned += removed
            if not removed:  # none left (or only the newest version: the next time)
                break
            await asyncio.sleep(0)
        if pruned:
            log.info("audit: %d AuditEvents older than the retention removed", pruned)
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


async def _disclosed_events(item: Disclosed, names: Names) -> list[dict[str, Any]]:
    """One AuditEvent per patient whose data an export's files hold."""
    events = []
    for n, (id_, types) in enumerate(sorted(item.patients.items())):
        if n % 100 == 99:
            await asyncio.sleep(0)  # the requests go on between slices
        patient = f"Patient/{id_.decode('ascii')}"
        files: list[tuple[str | None, str]] = [
            (t, name) for t in sorted(types) for name in item.files.get(t, ())
        ]
        files += [(None, name) for name in item.files.get(None, ())]  # blocks: any type
        events.append(balp.export_event(item.activity, item.job, patient, files, names))
    return events


def _count_read(reads: dict[tuple[Any, ...], list[Any]], item: Captured) -> None:
    """Count a successful read into ``reads``: [first, last, count] per interaction,
    user, app, address and version read."""
    policy = item.policy
    who = (
        (policy.fhir_user, policy.subject, policy.client_id, policy.patient)
        if policy is not None
        else None
    )
    client = item.client
    key = (item.code, who, client[0] if client else None, item.path, item.etag)
    found = reads.get(key)
    if found is None:
        reads[key] = [item, item, 1]
    else:
        found[1] = item
        found[2] += 1


def _not_a_read(item: _Queued) -> bool:
    """Kept for another try when a write fails: all but the successful reads and
    searches that changed nothing (bounded loss; a write's record is the sweep's too)."""
    if isinstance(item, Captured):
        return bool(item.writes) or item.status >= 400
    if isinstance(item, Disclosed):
        return True
    activity, writes = item
    return activity.kind != "rest" or bool(writes) or activity.failed


def _read_reference(activity: Activity) -> str | None:
    """``Type/id/_history/v`` of a read (the version from the ETag)."""
    parts = activity.path.split("/")
    if len(parts) < 2:
        return None
    etag = activity.headers.get("etag", "")
    version = etag.removeprefix("W/").strip('"')
    reference = f"{parts[0]}/{parts[1]}"
    return f"{reference}/_history/{version}" if version.isdigit() else reference
