"""Running one ``$export`` job (https://hl7.org/fhir/uv/bulkdata/export.html) in the
background of the server: the resources are read through the caller's guarded store in
pages (keyset cursors, never the whole result in memory) and written to NDJSON files off
the event loop.

``_since`` is exact: a resource whose current version was written after ``_since`` and
at or before the job's ``transactionTime`` is in the export; the next export with
``_since=transactionTime`` takes up what came after. Before it reads, the job waits
until every write that may have taken a ``lastUpdated`` at or before
``transactionTime`` has committed (SQLite: it takes the write lock once; MongoDB: it
writes the counters document every write transaction takes its instant from).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_server.audit.disclosure import Disclosure
from fhir_server.interactions.subsetting import subset
from fhir_server.operations.export_files import Files, TypeWriter
from fhir_server.operations.export_jobs import HEARTBEAT, Job, Jobs
from fhir_server.storage.base import HistoryQuery, Store, StoredVersion, bulk_reads
from fhir_server.storage.search_page import Cursor
from resources import fhir_json
from resources.compartments import (
    MEMBERSHIP_COMPARTMENT,
    literal_references,
    patient_member_types,
    patient_references,
    resources_in_compartment,
)
from resources.errors import FhirError
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import Grant, GrantClause, SearchQuery
from resources.terminology import value_set_codes

log = logging.getLogger("fhir_server.export")

PAGE = 1000
"""Resources read from the store at a time."""
PATIENT_BATCH = 20
"""Patients whose records are searched for at a time. A page of such a search reads the
batch's membership rows, and a batch has a page for every ~1000 resources: the cost
grows with the square of the batch (5,000 demo patients: 100 a batch 9.5k resources/s,
20 a batch 38k/s)."""
SETTLE = 1.0
"""Seconds a job waits after its transactionTime before reading, on a store that has no
barrier of its own."""

_running: set[asyncio.Task[None]] = set()
"""The jobs of this process (kept referenced while they run)."""


@dataclass
class Plan:
    """What a job exports (checked at kick-off)."""

    types: list[str]
    since: str | None
    filters: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    """Per type, the ``_typeFilter`` queries (ORed); a type without one: everything."""
    elements: dict[str, list[str]] = field(default_factory=dict)
    patients: list[str] | None = None
    """Patient ids (Group members or ``patient``); None: not limited to patients."""
    referenced_types: frozenset[str] = frozenset()
    """Types outside the Patient compartment whose resources the patients' resources
    refer to are exported too (for a Group or a ``patient`` list)."""
    all_patients: bool = False
    """The patients are every Patient the caller may read (a Patient-level export
    without ``patient``; an export organized by Patient): ``patients`` is filled when
    the job starts, and only their records are exported (resources in some Patient
    compartment, checked by the memberships stored with each version)."""
    organize_by: str | None = None
    """``organizeOutputBy`` (``Patient``): files of blocks, one per patient."""
    provenance: str | None = None
    """``includeAssociatedData``: ``latest`` or ``relevant`` Provenance of each resource
    exported (``fhir_server.operations.export_associated``)."""


class Cancelled(Exception):
    """The job was deleted while it ran."""


def start(jobs: Jobs, job: Job, plan: Plan, store: Store, inner: Store, max_bytes: int) -> None:
    """Run the job in the background of this process."""
    task = asyncio.get_running_loop().create_task(_run(jobs, job, plan, store, inner, max_bytes))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _run(
    jobs: Jobs, job: Job, plan: Plan, store: Store, inner: Store, max_bytes: int
) -> None:
    bulk_reads.set(True)  # this task's reads: apart from the requests' (small cache)
    run = _Run(jobs, job, plan, store, max_bytes)
    beat = asyncio.get_running_loop().create_task(run.heartbeat())
    try:
        await _settle(inner, job.transaction_time)
        await run.everything()
        job.state, job.finished, job.progress = "complete", time.time(), "complete"
        jobs.save(job)
        if run.disclosure is not None:  # the patients whose data the files hold
            run.disclosure.finish(job)
    except (Cancelled, FileNotFoundError):
        jobs.remove(job.id)  # deleted while it ran: nothing is kept
    except asyncio.CancelledError:
        _fail(jobs, job, "The export was stopped with the server; start it again")
        raise
    except FhirError as error:
        _fail(jobs, job, None, error.outcome())
    except Exception:
        log.exception("export %s failed", job.id)
        _fail(jobs, job, "The export failed on an unexpected error (see the server log)")
    finally:
        beat.cancel()
        run.close()


def _fail(jobs: Jobs, job: Job, text: str | None, outcome: dict[str, Any] | None = None) -> None:
    job.state, job.finished = "failed", time.time()
    job.output, job.deleted, job.error = [], [], []
    job.outcome = outcome or FhirError(500, "exception", text or "").outcome()
    try:
        jobs.save(job)
    except OSError:
        return
    shutil.rmtree(jobs.files(job.id), ignore_errors=True)


async def _settle(inner: Store, transaction_time: str) -> None:
    """Wait until no write can still commit a ``lastUpdated`` at or before
    ``transaction_time`` (see the module's docstring)."""
    await asyncio.sleep(0.002)  # later writes take a later millisecond
    for _ in range(4):  # through wrappers (timing, access) to the store itself
        wrapped = getattr(inner, "inner", None) or getattr(inner, "_inner", None)
        if wrapped is None:
            break
        inner = wrapped
    path = getattr(inner, "path", None)
    counters = getattr(inner, "_counters", None)
    if isinstance(path, Path):
        await asyncio.to_thread(_sqlite_barrier, path)
    elif counters is not None:
        await _mongo_barrier(counters, transaction_time)
    else:
        await asyncio.sleep(SETTLE)


async def _mongo_barrier(counters: Any, transaction_time: str) -> None:
    """Every MongoDB write transaction takes its ``lastUpdated`` from the ``counters``
    document (``fhir_server.storage.mongo``, its ``_Clock``). A write to that document
    outside a transaction waits until a transaction in progress that wrote it has ended
    (https://www.mongodb.com/docs/manual/core/transactions-production-consideration/#in-progress-transactions-and-write-conflicts),
    and one that had not written it yet conflicts and is retried, taking a later
    instant: after it, no write can still commit at or before ``transaction_time``."""
    from fhir_server.storage.mongo_setup import SEQUENCE

    await counters.update_one({"_id": SEQUENCE}, {"$max": {"last_updated": transaction_time}})


def _sqlite_barrier(path: Path) -> None:
    """Take SQLite's write lock once: every write transaction that began before has
    committed (or rolled back) by then, in any process."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60.0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


class _Run:
    def __init__(self, jobs: Jobs, job: Job, plan: Plan, store: Store, max_bytes: int) -> None:
        from fhir_server.operations.export_associated import Associated

        self.jobs, self.job, self.plan, self.store = jobs, job, plan, store
        self.folder = jobs.files(job.id)
        self.files = Files(self.folder, job, max_bytes)
        self.written = 0
        self.referenced: dict[str, set[str]] = {}
        """Resources outside the Patient compartment the patients' resources refer to."""
        self.exported: dict[str, set[str]] = {}
        """Of the types in ``plan.referenced_types``: the ids already written."""
        self.patient_set = frozenset(plan.patients or ())
        self.associated = Associated(self, plan.provenance) if plan.provenance else None
        self.disclosure = Disclosure.of_request()
        """The audit trail's record of the patients exported (None: audit off)."""

    async def heartbeat(self) -> None:
        while self.folder.is_dir():  # until the job is deleted (the run then stops too)
            await asyncio.sleep(HEARTBEAT)
            self.job.heartbeat = time.time()
            self.job.progress = f"{self.written} resources written"
            try:
                await asyncio.to_thread(self.jobs.save, self.job, heartbeat=True)
            except OSError:
                return

    def check(self) -> None:
        if not self.folder.is_dir():
            raise Cancelled

    def close(self) -> None:
        self.files.abort()

    async def everything(self) -> None:
        if self.plan.all_patients:
            self.plan.patients = await self.every_patient()
            self.patient_set = frozenset(self.plan.patients)
        if self.plan.organize_by is not None:
            from fhir_server.operations.export_blocks import export_blocks

            await export_blocks(self)
        else:
            if self.plan.patients is not None:  # the types without filters: together
                await self.export_records(
                    [t for t in self.plan.types if t not in self.plan.filters]
                )
            for type_ in self.plan.types:
                if self.plan.patients is None or type_ in self.plan.filters:
                    await self.export_type(type_)
            for type_ in sorted(self.referenced):
                ids = self.referenced[type_] - self.exported.get(type_, set())
                await self.export_referenced(type_, sorted(ids))
        if self.associated is not None:
            await self.associated.finish()
        if self.plan.since is not None:
            for type_ in self.plan.types:
                await self.export_deleted(type_)

    async def every_patient(self) -> list[str]:
        """The ids of every Patient the caller may read (a patient-context token: its
        own), in the store's order."""
        found: list[str] = []
        query = build_query("Patient", [])
        cursor: Cursor | None = None
        while True:
            self.check()
            page = await self.store.search(query, cursor, PAGE, False)
            found += [stored.id for stored in page.entries]
            cursor = page.next_cursor
            if cursor is None:
                return found

    def batches(self) -> list[list[str] | None]:
        """The patients searched for at a time (``[None]``: not limited to patients)."""
        if self.plan.patients is None:
            return [None]
        patients = self.plan.patients
        return [patients[i : i + PATIENT_BATCH] for i in range(0, len(patients), PATIENT_BATCH)]

    # -- resources -------------------------------------------------------------------

    async def export_type(self, type_: str) -> None:
        writer = TypeWriter(self.files, type_, "output")
        filters = self.plan.filters.get(type_) or [[]]
        batches = self.batches()
        # a resource matching two filters, or in the records of patients of two batches
        # (it refers to both), is written once: every id is remembered with several
        # filters; with one, only those of resources that may be in several records
        seen: set[str] | None = set() if len(filters) > 1 else None
        shared: set[str] | None = set() if seen is None and len(batches) > 1 else None
        collect = bool(self.plan.referenced_types)
        for items in filters:
            for patients in batches:
                query = self.query(type_, items, patients)
                cursor: Cursor | None = None
                while True:
                    self.check()
                    page = await self.store.search(query, cursor, PAGE, False)
                    kept = []
                    for stored in page.entries:
                        if seen is not None:
                            if stored.id in seen:
                                continue
                            seen.add(stored.id)
                        elif shared is not None and _in_several_records(stored):
                            if stored.id in shared:
                                continue
                            shared.add(stored.id)
                        kept.append(stored)
                        if stored.type in self.plan.referenced_types:
                            self.exported.setdefault(stored.type, set()).add(stored.id)
                    await writer.write([self.line(stored, collect) for stored in kept])
                    self.written += len(kept)
                    if self.associated is not None:
                        await self.associated.write(kept)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        await writer.finish()

    async def export_records(self, types: list[str]) -> None:
        """The patients' records of ``types`` (none with ``_typeFilter``), a batch of
        patients at a time in one search over every type: the rows of the batch's
        memberships are read once, not once a type."""
        if not types:
            return
        writers: dict[str, TypeWriter] = {}
        batches = self.batches()
        shared: dict[str, set[str]] | None = {} if len(batches) > 1 else None
        collect = bool(self.plan.referenced_types)
        for patients in batches:
            query = self.query(types, [], patients)
            cursor: Cursor | None = None
            while True:
                self.check()
                page = await self.store.search(query, cursor, PAGE, False)
                kept: dict[str, list[StoredVersion]] = {}
                for stored in page.entries:
                    if shared is not None and _in_several_records(stored):
                        written = shared.setdefault(stored.type, set())
                        if stored.id in written:
                            continue
                        written.add(stored.id)
                    kept.setdefault(stored.type, []).append(stored)
                    if stored.type in self.plan.referenced_types:
                        self.exported.setdefault(stored.type, set()).add(stored.id)
                for type_, entries in kept.items():
                    if type_ not in writers:
                        writers[type_] = TypeWriter(self.files, type_, "output")
                    await writers[type_].write([self.line(s, collect) for s in entries])
                    self.written += len(entries)
                    if self.associated is not None:
                        await self.associated.write(entries)
                cursor = page.next_cursor
                if cursor is None:
                    break
        for writer in writers.values():
            await writer.finish()

    def query(
        self, types: str | list[str], items: list[tuple[str, str]], patients: list[str] | None
    ) -> SearchQuery:
        when = [("_lastUpdated", f"le{self.job.transaction_time}")]
        if self.plan.since is not None:
            when.append(("_lastUpdated", f"gt{self.plan.since}"))
        query = build_query(types, [*items, *when])
        if patients is not None:
            query.conditions.append(records_of(patients))
        return query

    def line(self, stored: StoredVersion, collect: bool = False) -> bytes:
        assert stored.content is not None
        content = stored.content
        if self.disclosure is not None:
            self.disclosure.note(stored)
        if collect:
            self._collect(content)
        elements = self.plan.elements.get(stored.type)
        if elements:
            content = subset(content, stored.type, None, elements)
        return content

    def _collect(self, content: bytes) -> None:
        """The resources outside the Patient compartment this one refers to."""
        for type_, id_ in literal_references(fhir_json.loads(content)):
            if type_ in self.plan.referenced_types:
                self.referenced.setdefault(type_, set()).add(id_)

    async def export_referenced(self, type_: str, ids: Sequence[str]) -> None:
        writer = TypeWriter(self.files, type_, "output")
        for start in range(0, len(ids), PAGE):
            self.check()
            kept = []
            for id_ in ids[start : start + PAGE]:
                try:
                    stored = await self.referenced_version(type_, id_)
                except FhirError:
                    break  # not readable with this token
                if stored is not None:
                    kept.append(stored)
            await writer.write([self.line(stored) for stored in kept])
            self.written += len(kept)
            if self.associated is not None:
                await self.associated.write(kept)
        await writer.finish()

    async def referenced_version(self, type_: str, id_: str) -> StoredVersion | None:
        """A referenced resource as the export has it (None: deleted, or changed outside
        the export's time range); FhirError when the caller may not read it."""
        stored = await self.store.read(type_, id_)
        if stored is None or stored.deleted:
            return None
        if stored.last_updated > self.job.transaction_time:
            return None  # the next export has it
        if self.plan.since is not None and stored.last_updated <= self.plan.since:
            return None
        return stored

    # -- deleted -----------------------------------------------------------------------

    async def export_deleted(self, type_: str) -> None:
        """Tombstones written after ``_since`` (and at or before transactionTime), as
        Bundles of DELETE requests (the manifest's ``deleted``)."""
        since, until = self.plan.since or "", self.job.transaction_time
        writer = TypeWriter(self.files, type_, "deleted")
        before: int | None = None
        while True:
            self.check()
            query = HistoryQuery(type=type_, since=since, count=PAGE, before_seq=before)
            page = await self.store.history(query)
            lines = []
            for version in page.entries:
                if version.deleted and since < version.last_updated <= until:
                    if await self._recreated(version, until) or not await self._theirs(version):
                        continue
                    lines.append(_delete_bundle(version))
            await writer.write(lines)
            before = page.next_before_seq
            if before is None:
                break
        await writer.finish()

    async def _theirs(self, tombstone: StoredVersion) -> bool:
        """Whether a deleted resource was one of the export's patients' (always, when
        the export is not limited to patients): the version before the delete, as the
        caller may read it, is one of theirs or refers to one of them."""
        if self.plan.patients is None:
            return True
        patients = self.patient_set
        if tombstone.type == "Patient":
            return self.plan.all_patients or tombstone.id in patients
        try:
            before = await self.store.vread(tombstone.type, tombstone.id, tombstone.version - 1)
        except FhirError:
            return False
        if before is None or before.content is None:
            return False
        referred = patient_references(fhir_json.loads(before.content))
        if self.plan.all_patients:  # any patient's (the patient may be deleted too)
            return bool(referred)
        return any(r.split("/", 1)[1] in patients for r in referred)

    async def _recreated(self, tombstone: StoredVersion, until: str) -> bool:
        current = await self.store.read(tombstone.type, tombstone.id)
        return (
            current is not None
            and current.version > tombstone.version
            and current.last_updated <= until
        )


def _in_several_records(stored: StoredVersion) -> bool:
    """Whether the resource may be in the records of several patients: it names
    ``Patient/`` twice or more (a Patient: once, its own compartment being the other),
    a sound over-estimate of the memberships, which come from references."""
    assert stored.content is not None
    return stored.content.count(b"Patient/") >= (1 if stored.type == "Patient" else 2)


def build_query(types: str | list[str], items: list[tuple[str, str]]) -> SearchQuery:
    """The search of one type's resources, or several types' (400 for what the search
    engine refuses)."""
    return parse_search(
        [types] if isinstance(types, str) else types,
        items,
        strict=True,
        params_for=search_params,
        max_count=PAGE,
        default_count=PAGE,
        value_set=value_set_codes,
    )


def records_of(patients: Sequence[str]) -> GrantClause:
    """The resources that are the records of ``patients``, by the memberships stored with
    each version (as ``$everything`` reads a patient's record): the Patient compartment's
    types when in one of their compartments, other types (a Task, a Device) when they
    refer to these patients and to no other."""
    compartments = tuple(f"{MEMBERSHIP_COMPARTMENT}/{p}" for p in patients)
    return GrantClause(Grant(None, compartments, patient_member_types()))


def patient_compartment_types() -> frozenset[str]:
    return resources_in_compartment("Patient") | {"Patient"}


def _delete_bundle(version: StoredVersion) -> bytes:
    return fhir_json.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "request": {"method": "DELETE", "url": f"{version.type}/{version.id}"},
                }
            ],
        }
    )
