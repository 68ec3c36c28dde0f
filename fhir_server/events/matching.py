"""Which events of the outbox a Subscription's criteria matches
(https://hl7.org/fhir/R4/subscription.html: "a write matches when the new version is in
that search's results"), with the store's own search engine.

- A created or updated version matches when its resource is in the results of the
  criteria's search plus ``_id`` of the batch's ids, under the read access of the
  Subscription's creator (one search for a whole batch of events). The search sees the
  current versions: an event whose resource has a newer version since is passed over (the
  newer one's event is matched in its turn: the receiver gets the latest state).
- Before searching, a batch is cut to the events that can match at all: when the criteria
  names references (``subject=Patient/123``, no chain, no ``:not``), an event whose
  resource has no such reference in its search index rows (the same indexer the store
  uses) cannot be in the results. With many subscriptions of different patients, most
  groups then need no search for a batch. The search still decides.
- A deletion matches when the version it deleted did: that version is written to a
  scratch SQLite store of this process (a temporary file, renewed now and then) and the
  same search runs there. Criteria that follow references (chained parameters, ``_has``)
  cannot be followed there: a deletion never matches them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.events.criteria import matching_query
from fhir_server.events.outbox import Event, Notification
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.storage.base import WriteRequest, WriteResult
from resources import fhir_json
from resources.search.extract import Indexer, indexer_for
from resources.search.model import IndexRow, ReferenceRow
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AccessClause, Clause, ReferenceMatch, SearchQuery

Needs = tuple[tuple[str, frozenset[tuple[str | None, str]]], ...]
"""Per reference parameter of a criteria: the (type, id) targets one of which a matching
resource must refer to (a type of None: any type)."""


def reference_needs(criteria: SearchQuery) -> Needs:
    """What a resource must refer to in order to be in the criteria's results (see the
    module): the plain reference clauses (``param=Type/id,...``)."""
    needs = []
    for clause in criteria.conditions:
        if not isinstance(clause, Clause) or clause.negate or clause.param.type != "reference":
            continue
        values = clause.values
        if values and all(
            isinstance(v, ReferenceMatch)
            and v.target_id
            and v.url is None
            and v.version is None
            and v.identifier_value is None
            and v.identifier_system is None
            and not v.below
            for v in values
        ):
            targets = frozenset((v.target_type, v.target_id) for v in values)  # type: ignore[union-attr]
            needs.append((clause.param.code, targets))
    return tuple(needs)


Refs = dict[tuple[str, str | None, str], set[int]]
"""The events (seqs) whose resource refers, through a reference parameter, to a target:
``(code, type, id)``, and ``(code, None, id)`` for matching by id alone."""


def refs_of(rows_by_seq: dict[int, list[IndexRow]]) -> Refs:
    refs: Refs = defaultdict(set)
    for seq, rows in rows_by_seq.items():
        for row in rows:
            if isinstance(row, ReferenceRow) and row.target_id is not None:
                refs[(row.code, row.target_type, row.target_id)].add(seq)
                refs[(row.code, None, row.target_id)].add(seq)
    return refs


def candidates(needs: Needs, refs: Refs) -> set[int]:
    """The seqs (among the indexed ones) whose resources meet every need."""
    found: set[int] | None = None
    for code, targets in needs:
        meeting: set[int] = set()
        for type_, id_ in targets:
            meeting |= refs.get((code, type_, id_), set())
        found = meeting if found is None else found & meeting
        if not found:
            return set()
    return found or set()


def need_codes(needs: Iterable[Needs]) -> frozenset[str]:
    """The reference parameters that a set of :data:`Needs` reads."""
    return frozenset(code for need in needs for code, _ in need)


@cache
def _only(resource_type: str, codes: frozenset[str]) -> Indexer:
    """An indexer of ``resource_type`` extracting only the parameters ``codes`` (those it
    has; plus the few every indexer has)."""
    params = search_params(resource_type)
    return Indexer({c: params[c] for c in codes if c in params}, resource_type)


class RecentRefs:
    """The reference rows of the versions this process wrote lately, by type, id and
    version (the store this process writes through notes them, ``events.wake``): the
    pre-filter reads them rather than reading each resource again and extracting its
    rows (the write extracted them already). Bounded: the oldest are forgotten first
    (their events are then read from the store)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._rows: dict[tuple[str, str, int], list[IndexRow]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def note(self, requests: Sequence[WriteRequest], results: Sequence[WriteResult]) -> None:
        """Remember the rows of the versions ``requests`` wrote (``results``)."""
        for request, result in zip(requests, results, strict=False):
            stored = result.stored
            if request.index is None or stored is None or request.method == "delete":
                continue
            refs: list[IndexRow] = [
                row
                for row in request.index.rows
                if isinstance(row, ReferenceRow) and row.target_id is not None
            ]
            self._rows[(stored.type, stored.id, stored.version)] = refs
        while len(self._rows) > self.capacity:
            del self._rows[next(iter(self._rows))]

    def get(self, type_: str, id_: str, version: int) -> list[IndexRow] | None:
        return self._rows.get((type_, id_, version))


SCRATCH_WRITES = 1000
"""Writes to the scratch store before it is replaced by an empty one."""


class Matcher:
    """Matches batches of events for the dispatcher over ``store``."""

    def __init__(self, store: Any, recent: RecentRefs | None = None) -> None:
        self.store = store
        self.recent = recent if recent is not None else RecentRefs()
        self._scratch: Any = None
        self._scratch_dir: str | None = None
        self._scratch_writes = 0

    async def close(self) -> None:
        await self._drop_scratch()

    async def rows_of(
        self,
        events: list[Event],
        codes: frozenset[str] | None = None,
        types: set[str] | None = None,
    ) -> dict[int, list[IndexRow]]:
        """The search index rows of the current versions of the resources of ``events``
        (not deletions), by the seq of the event of that version: those this process
        wrote from :class:`RecentRefs` (their reference rows), the others with one search
        by ``_id`` per type (an event whose resource changed since gets no rows: it is
        searched).
        With ``codes``, only the rows of those parameters (what the pre-filter reads:
        extracting every parameter of each resource again was most of its cost); with
        ``types``, only the events of those types (no criteria reads the others)."""
        out: dict[int, list[IndexRow]] = {}
        by_type: dict[str, dict[str, Event]] = defaultdict(dict)
        for event in events:
            if event.method == "delete" or (types is not None and event.type not in types):
                continue
            known = self.recent.get(event.type, event.id, event.version)
            if known is not None:
                out[event.seq] = known
            else:
                by_type[event.type][event.id] = event
        seqs = {(e.type, e.id, e.version): e.seq for e in events}
        for type_, wanted in by_type.items():
            every = parse_search(
                [type_], [], strict=True, params_for=search_params, max_count=1, default_count=1
            )
            query = matching_query(every, tuple(wanted), None)
            page = await self.store.search(query, None, len(wanted), False)
            for stored in page.entries:
                seq = seqs.get((stored.type, stored.id, stored.version))
                if seq is not None and stored.content is not None:
                    resource = fhir_json.loads(stored.content)
                    indexer = indexer_for(type_) if codes is None else _only(type_, codes)
                    out[seq] = indexer.index(resource)[0]
        return out

    async def matches(
        self,
        events: list[Event],
        criteria: SearchQuery,
        access: AccessClause | None,
    ) -> dict[int, Notification]:
        """The notifications of the matching events, by seq."""
        found: dict[int, Notification] = {}
        wanted = {e.id: e for e in events if e.method != "delete" and e.type in criteria.types}
        if wanted:
            query = matching_query(criteria, tuple(wanted), access)
            page = await self.store.search(query, None, len(wanted), False)
            seqs = {(e.type, e.id, e.version): e.seq for e in events}
            for current in page.entries:
                seq = seqs.get((current.type, current.id, current.version))
                if seq is not None:
                    found[seq] = Notification(current.type, current.id, current.content)
        for event in events:
            deleted = event.method == "delete" and event.type in criteria.types
            if deleted and await self._deleted_matched(event, criteria, access):
                found[event.seq] = Notification(event.type, event.id, None, deleted=True)
        return found

    async def _deleted_matched(
        self, event: Event, criteria: SearchQuery, access: AccessClause | None
    ) -> bool:
        """Whether the version a deletion removed was in the criteria's results."""
        if event.version <= 1:
            return False
        before = await self.store.vread(event.type, event.id, event.version - 1)
        if before is None or before.content is None:
            return False
        resource = fhir_json.loads(before.content)
        scratch = await self._scratch_store()
        request = WriteRequest(
            event.type,
            event.id,
            "update",
            content_builder(resource, event.id),
            index=index_entries(resource, event.id),
        )
        await scratch.write(request)
        self._scratch_writes += 1
        query = matching_query(criteria, (event.id,), access)
        page = await scratch.search(query, None, 1, False)
        return bool(page.entries)

    async def _scratch_store(self) -> Any:
        if self._scratch is not None and self._scratch_writes >= SCRATCH_WRITES:
            await self._drop_scratch()
        if self._scratch is None:
            from fhir_server.storage.open import open_store

            self._scratch_dir = tempfile.mkdtemp(prefix="fhir-server-match-")
            path = Path(self._scratch_dir) / "scratch.sqlite3"
            self._scratch = open_store(f"sqlite:///{path}", sqlite_synchronous="OFF")
            await self._scratch.open()
            self._scratch_writes = 0
        return self._scratch

    async def _drop_scratch(self) -> None:
        if self._scratch is not None:
            with contextlib.suppress(Exception):
                await self._scratch.close()
            self._scratch = None
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None
