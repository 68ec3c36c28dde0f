"""The storage protocol every backend implements.

Versioning and history follow https://hl7.org/fhir/R4/http.html#versioning and
https://hl7.org/fhir/R4/http.html#history: every version is kept, a delete writes a
tombstone version, and `If-Match` is an atomic compare-and-set on the version id.

A write is described by a :class:`WriteRequest`; the store decides the new version
number and `lastUpdated` inside its transaction and asks the caller's ``build`` callback
for the bytes to store, so the stored JSON carries exactly the version the store commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from resources.fhir_datetime import format_instant
from resources.search.model import IndexRow, SortKey

if TYPE_CHECKING:
    from fhir_server.storage.search_page import Cursor, SearchPage
    from resources.search.query import AccessClause, SearchQuery

Method = Literal["create", "update", "patch", "delete"]

bulk_reads: ContextVar[bool] = ContextVar("bulk_reads", default=False)
"""True in a bulk job's task (``$export``): its searches read every page of the store
once, so a store may run them apart from the requests' (SQLite: on a thread and a
connection of their own, with a small page cache, so the job leaves the server's memory
as it found it)."""


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One stored version of a resource (a tombstone when ``deleted``)."""

    type: str
    id: str
    version: int
    last_updated: str
    method: Method
    content: bytes | None
    seq: int = 0

    @property
    def deleted(self) -> bool:
        return self.method == "delete"


@dataclass(frozen=True, slots=True)
class IndexEntries:
    """What a resource version contributes to the search indexes."""

    rows: Sequence[IndexRow] = ()
    sort_keys: Sequence[SortKey] = ()
    compartments: Sequence[str] = ()
    """The Patient compartments the version is in (``"Patient/1"``): recorded with the
    version, so access checks on reads, history and searches are query conditions."""


BuildContent = Callable[[int, str], bytes]
"""Called as ``build(version, last_updated)`` inside the write; returns the stored bytes."""


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A create, update, patch or delete of one resource."""

    type: str
    id: str
    method: Method
    build: BuildContent | None = None
    if_match: int | None = None
    must_not_exist: bool = False
    index: IndexEntries | None = None
    """Search index rows and sort keys of the new version (None: index nothing)."""
    unless_exists: SearchQuery | None = None
    """Conditional create: checked atomically with the write; matches raise
    :class:`ConditionMatched` and nothing is written."""
    access: AccessClause | None = None
    """The caller's grants: the version this write replaces must be visible under them
    (checked inside the write transaction; :class:`AccessDenied` otherwise)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the new version and what it replaced.

    A delete of something absent or already deleted changes nothing: ``changed`` is False
    and ``stored`` is the existing tombstone (or None when the resource never existed).
    """

    stored: StoredVersion | None
    created: bool
    previous: StoredVersion | None
    changed: bool = True


class VersionConflict(Exception):
    """`If-Match` did not match the current version (HTTP 412)."""

    def __init__(self, current: int | None) -> None:
        super().__init__(f"current version is {current}")
        self.current = current


class ConditionMatched(Exception):
    """A conditional create found matches (the resources found, at most two)."""

    def __init__(self, matches: list[StoredVersion]) -> None:
        super().__init__(f"{len(matches)} match(es)")
        self.matches = matches


class AlreadyExists(Exception):
    """A create found the id taken (HTTP 409 / retry with another id)."""


class AccessDenied(Exception):
    """The version a write would replace is not visible under ``WriteRequest.access``;
    nothing was written."""


class TransactionsUnavailable(Exception):
    """The store cannot apply several writes all-or-nothing (a MongoDB standalone
    server has no transactions); nothing was written. The message says what to do."""


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A history request at instance (type+id), type (type) or system level."""

    type: str | None = None
    id: str | None = None
    since: str | None = None
    at_start: str | None = None
    at_end: str | None = None
    count: int = 50
    before_seq: int | None = None
    access: AccessClause | None = None
    """Only versions the caller may see (None: all). Grants with ``where`` conditions
    (v2 granular scopes) need the current search index, so history ignores them."""


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[StoredVersion]
    total: int
    next_before_seq: int | None


class Store(Protocol):
    """Async storage of versioned FHIR resources."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Return when the store answers a cheap request, raise otherwise (readiness)."""
        ...

    async def read(
        self, type_: str, id_: str, access: AccessClause | None = None
    ) -> StoredVersion | None:
        """The current version (possibly a tombstone), or None if never stored or not
        visible under ``access`` (whose grants with ``where`` conditions are ignored)."""
        ...

    async def vread(
        self, type_: str, id_: str, version: int, access: AccessClause | None = None
    ) -> StoredVersion | None: ...

    async def write(self, request: WriteRequest) -> WriteResult:
        """Apply one write atomically. Raises VersionConflict or AlreadyExists."""
        ...

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        """Apply several writes in one transaction: all of them, or none."""
        ...

    async def history(self, query: HistoryQuery) -> HistoryPage: ...

    async def search(
        self, query: SearchQuery, cursor: Cursor | None, count: int, with_total: bool
    ) -> SearchPage:
        """One page of matches (keyset paging), with the total when asked."""
        ...


def now_instant() -> str:
    """The current time as a FHIR instant in UTC with millisecond precision (the text up
    to the seconds is formatted once per second)."""
    global _second
    now = time.time()
    whole = int(now)
    second, prefix = _second
    if whole != second:
        prefix = format_instant(datetime.fromtimestamp(whole, UTC))[:-5]
        _second = (whole, prefix)
    return f"{prefix}.{int((now - whole) * 1000):03d}Z"


_second: tuple[int, str] = (-1, "")


def next_instant(previous: str | None) -> str:
    """Now, but never earlier than ``previous`` (clock steps back do not reorder versions)."""
    current = now_instant()
    if previous is not None and current < previous:
        return previous
    return current


def check_preconditions(req: WriteRequest, previous: StoredVersion | None) -> WriteResult | None:
    """The checks every store makes against the current version, inside its transaction:
    raises AlreadyExists / VersionConflict; returns the no-op result of deleting something
    absent or already deleted; None when the write goes ahead."""
    if req.must_not_exist and previous is not None:
        raise AlreadyExists(f"{req.type}/{req.id}")
    if req.if_match is not None and (
        previous is None or previous.deleted or previous.version != req.if_match
    ):
        raise VersionConflict(None if previous is None else previous.version)
    if req.method == "delete" and (previous is None or previous.deleted):
        return WriteResult(previous, False, previous, changed=False)
    return None


def next_version(previous: StoredVersion | None) -> tuple[int, str]:
    """The new version number and ``lastUpdated`` (never before the previous one's)."""
    version = 1 if previous is None else previous.version + 1
    return version, next_instant(previous.last_updated if previous else None)
