"""Validate, index and store a stream of resources in batched transactions.

Each resource goes the way of an API update (https://hl7.org/fhir/R4/http.html#update):
parsed losslessly, validated with ``check_valid``, indexed with ``index_entries`` and
stored by its own id through the store's ``write_batch`` (one transaction per batch); see
:mod:`~fhir_server.bulk_import.prepare`. A resource whose content equals the stored
current version (the bytes it would be stored as, apart from ``meta.versionId`` and
``meta.lastUpdated``) is not written again, so a second import of the same files makes no
new versions. With ``workers`` > 0, all of that preparation runs in a process pool (two
batches ahead) and the main process only resolves conditional references, compares and
writes; the next batch is prepared while the store commits the previous one.

Conditional references (``Practitioner?identifier=…``) are resolved against the store
(after writing what is pending when it may hold the target's type). A resource whose
target is not found yet waits in a :class:`~fhir_server.bulk_import.deferred.Spool` and
is tried again once everything else is written, pass after pass while a pass can make
progress; only what no pass could resolve is reported.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.bulk_import.deferred import Spool
from fhir_server.bulk_import.prepare import (
    Prepared,
    message,
    prepare_chunk,
    prepare_item,
    start_worker,
    unpack,
)
from fhir_server.bulk_import.report import NOT_RESOURCE, ImportReport, Progress
from fhir_server.bulk_import.sources import Item
from fhir_server.interactions.references import (
    conditional_reference,
    iter_references,
    rewrite_references,
)
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.storage.base import Store, StoredVersion, TransactionsUnavailable, WriteRequest
from fhir_server.workflows import Caller, WorkflowStore
from resources import fhir_json
from resources.errors import FhirError
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.terminology import value_set_codes

BATCH_SIZE = 1000
MAX_MISSING = 100_000
"""Conditional references remembered as not found, per target type."""
_CONDITIONAL = re.compile(rb'"reference"\s*:\s*"([A-Z][A-Za-z]*\?[^"\\]*)"')
"""A conditional reference in a resource's JSON as read (one with escapes is not found
here: the writer resolves it)."""

_Latest = dict[tuple[str, str], WriteRequest]
"""The writes of the batch being prepared, by (type, id): the last one of each wins."""


def default_workers() -> int:
    """Worker processes when none are asked for: one per core the process may use but
    one, which the writing process keeps busy (its thread in SQLite runs without the
    GIL); none on a single core. On 2 cores, 1 worker imports faster than 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(cores - 1, 0)


class Importer:
    """Writes items to a store in batches and counts what happened."""

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = BATCH_SIZE,
        workers: int = 0,
        progress: Progress | None = None,
    ) -> None:
        # the workflow rules see imported data too (origin "import": they record what
        # follows from it, e.g. a booked Appointment's Slot busy, and refuse nothing)
        self.store = WorkflowStore(store, Caller.system(), origin="import")
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.report = ImportReport()
        self._single_writes = False
        self._pending: asyncio.Task[None] | None = None
        self._pending_types: set[str] = set()
        """The types that the batch being written (``_pending``) holds."""
        self._batch_types: set[str] = set()
        """The types that the batch being prepared holds so far."""
        self._resolved: dict[str, str] = {}
        """Conditional references (``Practitioner?identifier=…``) already resolved."""
        self._missing: dict[str, set[str]] = {}
        """Conditional references not found, by target type, until that type is written."""
        self._spool = Spool()
        self._validate = True
        """Off while resources that waited are tried again (validated the first time)."""

    async def run(self, items: Iterable[Item]) -> ImportReport:
        loop = asyncio.get_running_loop()
        start = loop.time()
        gc.collect()
        gc.freeze()  # what is loaded by now stays: spare the cyclic GC scanning it
        pool: Executor | None = None
        if self.workers > 0:
            pool = ProcessPoolExecutor(self.workers, initializer=start_worker)
        try:
            await self._pass(pool, iter(items))
            self.report.waited = self._spool.count
            previous: int | None = None
            while self._spool.count:
                if not await self._may_progress(previous):
                    self._report_unresolved()
                    break
                previous = self._spool.count
                await self._retry(pool)
        finally:
            self._spool.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            gc.unfreeze()
            if self.progress is not None:
                self.progress.close()
        self.report.seconds = loop.time() - start
        return self.report

    async def _pass(self, pool: Executor | None, items: Iterator[Item]) -> None:
        """Prepare, resolve and write ``items`` in batches."""
        pending: asyncio.Task[None] | None = None
        for batch, prepared in self._prepared(pool, _batches(items, self.batch_size)):
            self._pending = pending
            requests = await self._requests(batch, await prepared)
            if pending is not None:
                await pending  # one batch is written while the next is prepared
            pending = asyncio.create_task(self._write(requests))
            self._pending_types = {request.type for request in requests}
        if pending is not None:
            await pending
        self._pending, self._pending_types = None, set()

    async def _retry(self, pool: Executor | None) -> None:
        """Another pass over the resources that wait for conditional references."""
        waiting, self._spool = self._spool, Spool()
        self._missing.clear()
        self._validate = False
        self.report.passes += 1
        if self.progress is not None:
            self.progress.note(
                f"{waiting.count:,} resources with conditional references to resources"
                " read later: resolving them now"
            )
        try:
            with waiting:
                superseded = self._superseded
                await self._pass(pool, (w.item for w in waiting.items(superseded)))
        finally:
            self._validate = True

    def _superseded(self, type_: str) -> None:
        self.report.count(type_, "unchanged")

    async def _may_progress(self, previous: int | None) -> bool:
        """Whether another pass may resolve some of what waits: the last pass resolved
        some, and one of the references not found then is found now (those found are
        remembered, so that the workers rewrite them)."""
        spool = self._spool
        if previous is not None and spool.count >= previous:
            return False
        if spool.references is None:  # too many to look up: just try
            return True
        progress = False
        for reference in sorted(spool.references):
            split = conditional_reference(reference)
            found = await self._find(*split) if split is not None else []
            if len(found) == 1 and split is not None:
                self._resolved[reference] = f"{split[0]}/{found[0].id}"
            progress = progress or bool(found)
        return progress

    def _report_unresolved(self) -> None:
        for waiting in self._spool.items(self._superseded):
            self.report.problem(waiting.item.where, waiting.reason, waiting.type)

    def _prepared(
        self, pool: Executor | None, batches: Iterator[list[Item]]
    ) -> Iterator[tuple[list[Item], asyncio.Future[list[Prepared]]]]:
        """Each batch with its preparation under way (two batches ahead with a pool)."""
        loop = asyncio.get_running_loop()
        if pool is None:
            for batch in batches:
                future: asyncio.Future[list[Prepared]] = loop.create_future()
                future.set_result(
                    [
                        prepare_item(i.data, self._known(i.data), self._validate)
                        for i in batch
                        if i.data is not None
                    ]
                )
                yield batch, future
            return
        ahead: list[tuple[list[Item], asyncio.Future[list[Prepared]]]] = []
        for batch in batches:
            ahead.append((batch, self._submit(pool, batch)))
            if len(ahead) > 2:
                yield ahead.pop(0)
        yield from ahead

    def _submit(self, pool: Executor, batch: list[Item]) -> asyncio.Future[list[Prepared]]:
        loop = asyncio.get_running_loop()
        data = [item.data for item in batch if item.data is not None]
        known = {i: k for i, d in enumerate(data) if (k := self._known(d))}
        # several chunks per worker: the first results arrive (and are unpacked) early
        size = max(1, -(-len(data) // (self.workers * 4)))
        parts = [
            asyncio.wrap_future(
                pool.submit(
                    prepare_chunk,
                    data[i : i + size],
                    {n - i: known[n] for n in range(i, i + size) if n in known},
                    self._validate,
                ),
                loop=loop,
            )
            for i in range(0, len(data), size)
        ]

        async def gather() -> list[Prepared]:
            return [unpack(packed) for part in await asyncio.gather(*parts) for packed in part]

        return asyncio.ensure_future(gather())

    def _known(self, data: bytes) -> dict[str, str] | None:
        """The conditional references of ``data`` resolved already (so that a worker
        rewrites them and prepares the resource), if any."""
        if b"?" not in data or not self._resolved:
            return None
        known = {}
        for found in _CONDITIONAL.findall(data):
            reference = found.decode()
            target = self._resolved.get(reference)
            if target is not None:
                known[reference] = target
        return known or None

    async def _requests(self, batch: list[Item], prepared: list[Prepared]) -> list[WriteRequest]:
        """The writes of a batch: valid resources that differ from what is stored."""
        report = self.report
        results = iter(prepared)
        latest: _Latest = {}
        self._batch_types = set()
        nbytes = 0
        for item in batch:
            nbytes += item.size
            if item.data is None:
                if item.error == NOT_RESOURCE:
                    report.not_resource(item.where)
                elif item.error is not None and item.error.startswith("skipped"):
                    report.skipped += 1
                elif item.error is not None:
                    report.problem(item.where, item.error)
                continue
            ready = next(results)
            type_, id_ = ready.type, ready.id
            if ready.error == NOT_RESOURCE:
                report.not_resource(item.where)
                continue
            if ready.error is not None or id_ is None or type_ is None:
                report.problem(item.where, ready.error or "invalid", type_)
                continue
            if ready.conditional:
                try:
                    request = await self._conditional_request(item.data, ready, latest)
                except _NotFound as exc:  # may be read later: wait for the next pass
                    self._spool.put(item, type_, id_, str(exc), exc.references)
                    continue
                except FhirError as exc:
                    report.problem(item.where, message(exc), type_)
                    continue
            else:
                request = ready.request()
            self._spool.written(type_, id_)
            key = (type_, id_)
            if key in latest:  # the same resource twice in one batch: the last one wins
                report.count(type_, "unchanged")
            latest[key] = request
            self._batch_types.add(type_)
        if self.progress is not None:
            self.progress.advance(len(batch), nbytes)
        return await self._changed(latest)

    async def _conditional_request(
        self, data: bytes, ready: Prepared, latest: _Latest
    ) -> WriteRequest:
        """The write of a resource with conditional references, once they are resolved."""
        assert ready.type is not None and ready.id is not None
        resource = ready.resource
        if resource is None:  # prepared in a worker: parse again here (validated there)
            resource = fhir_json.loads_resource(data)
            if "id" not in resource:
                resource = {**resource, "id": ready.id}
        await self._resolve_conditional(resource, latest)
        return WriteRequest(
            ready.type,
            ready.id,
            "update",
            content_builder(resource, ready.id),
            index=index_entries(resource, ready.id),
        )

    async def _resolve_conditional(
        self,
        resource: dict[str, Any],
        latest: _Latest,
    ) -> None:
        """Rewrite ``Type?criteria`` references to the one resource each finds
        (https://hl7.org/fhir/R4/http.html#trules), as a transaction would. Raises
        :class:`_NotFound` when some find none (yet), FhirError when one finds several."""
        mapping: dict[str, str] = {}
        missing: list[str] = []
        for reference in set(iter_references(resource)):
            split = conditional_reference(reference)
            if split is None:
                continue
            target = self._resolved.get(reference)
            if target is None:
                target = await self._lookup(reference, *split, latest)
            if target is None:
                missing.append(reference)
            else:
                mapping[reference] = target
        if missing:
            raise _NotFound(sorted(missing))
        if mapping:
            rewrite_references(resource, mapping.get)

    async def _lookup(self, reference: str, type_: str, query: str, latest: _Latest) -> str | None:
        """``Type/id`` of the one resource ``reference`` finds (None: none yet). What
        this import has not written yet may hold the target when it holds resources of
        that type: that is written first. A reference not found stays not found (no
        search) until resources of its type are written."""
        if type_ in self._batch_types or type_ in self._pending_types:
            await self._flush(latest)
        elif reference in self._missing.get(type_, ()):
            return None
        found = await self._find(type_, query)
        if len(found) > 1:
            raise FhirError(
                412,
                "multiple-matches",
                f"the conditional reference {reference!r} matches more than one resource",
            )
        if not found:
            missing = self._missing.setdefault(type_, set())
            if len(missing) >= MAX_MISSING:  # memory stays bounded: search again instead
                missing.clear()
            missing.add(reference)
            return None
        target = self._resolved[reference] = f"{type_}/{found[0].id}"
        return target

    async def _find(self, type_: str, query: str) -> list[StoredVersion]:
        search = parse_search(
            [type_],
            parse_qsl(query, keep_blank_values=True),
            strict=True,
            params_for=search_params,
            max_count=2,
            default_count=2,
            value_set=value_set_codes,
        )
        return (await self.store.search(search, None, 2, False)).entries

    async def _flush(self, latest: _Latest) -> None:
        """Write what is pending and what this batch has so far."""
        if self._pending is not None:
            await self._pending
            self._pending = None
        self._pending_types = set()
        if latest:
            await self._write(await self._changed(latest))
            latest.clear()
        self._batch_types = set()

    async def _changed(self, latest: _Latest) -> list[WriteRequest]:
        requests = []
        for (type_, id_), request in latest.items():
            stored = await self.store.read(type_, id_)
            if stored is not None and not stored.deleted and stored.content is not None:
                assert request.build is not None
                if request.build(stored.version, stored.last_updated) == stored.content:
                    self.report.count(type_, "unchanged")
                    continue
            requests.append(request)
        return requests

    async def _write(self, requests: list[WriteRequest]) -> None:
        if not requests:
            return
        await self._store(requests)
        for type_ in {request.type for request in requests}:
            self._missing.pop(type_, None)  # a reference not found may be found now

    async def _store(self, requests: list[WriteRequest]) -> None:
        if not self._single_writes:
            try:
                results = await self.store.write_batch(requests)
            except TransactionsUnavailable:
                self._single_writes = True  # a standalone MongoDB: one write at a time
            else:
                for request, result in zip(requests, results, strict=True):
                    self.report.count(request.type, "created" if result.created else "updated")
                return
        for request in requests:
            result = await self.store.write(request)
            self.report.count(request.type, "created" if result.created else "updated")


class _NotFound(Exception):
    """Conditional references that find no resource (yet)."""

    def __init__(self, references: list[str]) -> None:
        super().__init__(
            "; ".join(f"the conditional reference {r!r} matches no resource" for r in references)
        )
        self.references = references


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(itertools.islice(items, size)):
        yield batch
