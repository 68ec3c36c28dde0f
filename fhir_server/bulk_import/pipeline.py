"""Validate, index and store a stream of resources in batched transactions.

Each resource goes the way of an API update (https://hl7.org/fhir/R4/http.html#update):
parsed losslessly, validated with ``check_valid``, indexed with ``index_entries`` and
stored with ``content_builder``, by its own id, through the store's ``write_batch`` (one
transaction per batch). A resource whose content equals the stored current version
(the bytes it would be stored as, apart from ``meta.versionId`` and
``meta.lastUpdated``) is not written again, so a second import of the same files makes no
new versions. With ``workers`` > 0, validation (the costliest step) runs in a process
pool while the main process indexes and writes; the next batch is prepared while the
store commits the previous one.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.bulk_import.report import ImportReport, Progress
from fhir_server.bulk_import.sources import Item
from fhir_server.interactions.context import check_id
from fhir_server.interactions.references import (
    conditional_reference,
    iter_references,
    rewrite_references,
)
from fhir_server.interactions.write import check_valid, content_builder, index_entries, with_meta
from fhir_server.storage.base import Store, StoredVersion, TransactionsUnavailable, WriteRequest
from resources import fhir_json
from resources.errors import FhirError
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.terminology import value_set_codes

BATCH_SIZE = 1000


@dataclass(slots=True)
class Checked:
    """An item after parsing and validation: its type and id, or what is wrong."""

    type: str | None
    id: str | None
    error: str | None = None
    resource: dict[str, Any] | None = None


def check_item(data: bytes, keep: bool = True) -> Checked:
    """Parse and validate one resource (runs in a worker process when there are some)."""
    type_: str | None = None
    try:
        resource = fhir_json.loads_resource(data)
        found = resource.get("resourceType")
        type_ = found if isinstance(found, str) else None
        if type_ is None:
            return Checked(None, None, "the resource has no resourceType")
        id_ = resource.get("id")
        if id_ is None:  # derive one from the content, so that a re-import finds it
            id_ = hashlib.sha256(fhir_json.dumps(resource)).hexdigest()[:32]
            resource = {**resource, "id": id_}
        if not isinstance(id_, str):
            return Checked(type_, None, "id must be a string")
        check_id(id_)
        check_valid(resource)
    except FhirError as exc:
        return Checked(type_, None, _message(exc))
    return Checked(type_, id_, None, resource if keep else None)


def check_chunk(chunk: Sequence[bytes]) -> list[Checked]:
    """Validate a chunk in a worker; the resources are parsed again by the writer."""
    return [check_item(data, keep=False) for data in chunk]


def _message(exc: FhirError) -> str:
    parts = []
    for issue in exc.issues:
        where = f"{', '.join(issue.expression)}: " if issue.expression else ""
        parts.append(f"{where}{issue.diagnostics}")
    return "; ".join(parts) or exc.diagnostics


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
        self.store = store
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.report = ImportReport()
        self._single_writes = False
        self._pending: asyncio.Task[None] | None = None
        self._resolved: dict[str, str] = {}
        """Conditional references (``Practitioner?identifier=…``) already resolved."""

    async def run(self, items: Iterable[Item]) -> ImportReport:
        loop = asyncio.get_running_loop()
        start = loop.time()
        batches = _batches(iter(items), self.batch_size)
        pool: Executor | None = ProcessPoolExecutor(self.workers) if self.workers > 0 else None
        try:
            pending: asyncio.Task[None] | None = None
            checks = self._checks(pool, batches)
            for batch, checked in checks:
                self._pending = pending
                requests = await self._requests(batch, await checked)
                if pending is not None:
                    await pending  # one batch is written while the next is prepared
                pending = asyncio.create_task(self._write(requests))
            if pending is not None:
                await pending
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if self.progress is not None:
                self.progress.close()
        self.report.seconds = loop.time() - start
        return self.report

    def _checks(
        self, pool: Executor | None, batches: Iterator[list[Item]]
    ) -> Iterator[tuple[list[Item], asyncio.Future[list[Checked]]]]:
        """Each batch with its validation under way (two batches ahead with a pool)."""
        loop = asyncio.get_running_loop()
        if pool is None:
            for batch in batches:
                future: asyncio.Future[list[Checked]] = loop.create_future()
                future.set_result([check_item(i.data) for i in batch if i.data is not None])
                yield batch, future
            return
        ahead: list[tuple[list[Item], asyncio.Future[list[Checked]]]] = []
        for batch in batches:
            ahead.append((batch, self._submit(pool, batch)))
            if len(ahead) > 2:
                yield ahead.pop(0)
        yield from ahead

    def _submit(self, pool: Executor, batch: list[Item]) -> asyncio.Future[list[Checked]]:
        loop = asyncio.get_running_loop()
        data = [item.data for item in batch if item.data is not None]
        size = max(1, -(-len(data) // self.workers))
        parts = [
            asyncio.wrap_future(pool.submit(check_chunk, data[i : i + size]), loop=loop)
            for i in range(0, len(data), size)
        ]

        async def gather() -> list[Checked]:
            return [c for part in await asyncio.gather(*parts) for c in part]

        return asyncio.ensure_future(gather())

    async def _requests(self, batch: list[Item], checked: list[Checked]) -> list[WriteRequest]:
        """The writes of a batch: valid resources that differ from what is stored."""
        report = self.report
        results = iter(checked)
        latest: dict[tuple[str, str], tuple[dict[str, Any], WriteRequest]] = {}
        nbytes = 0
        for item in batch:
            nbytes += item.size
            if item.data is None:
                if item.error is not None and item.error.startswith("skipped"):
                    report.skipped += 1
                elif item.error is not None:
                    report.problem(item.where, item.error)
                continue
            check = next(results)
            if check.error is not None or check.id is None or check.type is None:
                report.problem(item.where, check.error or "invalid", check.type)
                continue
            resource = check.resource
            if resource is None:  # validated in a worker: parse again here
                resource = fhir_json.loads_resource(item.data)
                if "id" not in resource:
                    resource = {**resource, "id": check.id}
            try:
                await self._resolve_conditional(resource, latest)
                request = _request(check.type, check.id, resource)
            except FhirError as exc:
                report.problem(item.where, _message(exc), check.type)
                continue
            key = (check.type, check.id)
            if key in latest:  # the same resource twice in one batch: the last one wins
                report.count(check.type, "unchanged")
            latest[key] = (resource, request)
        if self.progress is not None:
            self.progress.advance(len(batch), nbytes)
        return await self._changed(latest)

    async def _resolve_conditional(
        self,
        resource: dict[str, Any],
        latest: dict[tuple[str, str], tuple[dict[str, Any], WriteRequest]],
    ) -> None:
        """Rewrite ``Type?criteria`` references to the one resource each finds
        (https://hl7.org/fhir/R4/http.html#trules), as a transaction would. A target
        not found yet may be in what this import has not written yet: that is written
        first, then searched again."""
        mapping: dict[str, str] = {}
        for reference in set(iter_references(resource)):
            split = conditional_reference(reference)
            if split is None:
                continue
            target = self._resolved.get(reference)
            if target is None:
                found = await self._find(*split)
                if not found and (latest or self._pending is not None):
                    await self._flush(latest)
                    found = await self._find(*split)
                if len(found) != 1:
                    what = "no resource" if not found else "more than one resource"
                    raise FhirError(
                        412,
                        "not-found" if not found else "multiple-matches",
                        f"the conditional reference {reference!r} matches {what}",
                    )
                target = self._resolved[reference] = f"{split[0]}/{found[0].id}"
            mapping[reference] = target
        if mapping:
            rewrite_references(resource, mapping.get)

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

    async def _flush(
        self, latest: dict[tuple[str, str], tuple[dict[str, Any], WriteRequest]]
    ) -> None:
        """Write what is pending and what this batch has so far."""
        if self._pending is not None:
            await self._pending
            self._pending = None
        if latest:
            await self._write(await self._changed(latest))
            latest.clear()

    async def _changed(
        self, latest: dict[tuple[str, str], tuple[dict[str, Any], WriteRequest]]
    ) -> list[WriteRequest]:
        requests = []
        for (type_, id_), (resource, request) in latest.items():
            stored = await self.store.read(type_, id_)
            if stored is not None and not stored.deleted and stored.content is not None:
                same = with_meta(resource, id_, stored.version, stored.last_updated)
                if fhir_json.dumps(same) == stored.content:
                    self.report.count(type_, "unchanged")
                    continue
            requests.append(request)
        return requests

    async def _write(self, requests: list[WriteRequest]) -> None:
        if not requests:
            return
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


def _request(type_: str, id_: str, resource: dict[str, Any]) -> WriteRequest:
    return WriteRequest(
        type_, id_, "update", content_builder(resource, id_), index=index_entries(resource, id_)
    )


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(itertools.islice(items, size)):
        yield batch
