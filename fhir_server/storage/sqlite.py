"""Embedded SQLite store (stdlib ``sqlite3``, WAL mode).

Implements the versioning rules of https://hl7.org/fhir/R4/http.html#versioning:
``resource`` holds the current version of each logical resource (tombstones included),
``history`` a row for every version ever written, both updated in one transaction. A
version's content is stored once: in ``resource`` while it is current (the row every read
and search takes it from), moved to its ``history`` row when a newer version replaces it
(schema 4; before, every current content was stored twice, a quarter of a 1M-resource
file). Writes run on one dedicated thread with ``BEGIN IMMEDIATE`` (SQLite's write lock
also serialises other processes); the processes of one server (``serve --workers N``)
first queue on an ``flock`` of ``<file>-writer.lock``, because SQLite's own busy handler
polls with sleeps of up to 100 ms and lets a waiting writer starve (a CRUD mix on 2
workers had a p99 of 1.25 s at 1M resources); the version check inside that transaction
makes ``If-Match`` an atomic compare-and-set. Reads are short indexed lookups run on the
calling thread with their own connection (WAL lets readers proceed during a write).

Every version is also an ``event`` row of the outbox, inserted in the same transaction
(schema 7, ``fhir_server.events.outbox_sqlite``).

Durability: WAL with ``synchronous=NORMAL`` survives a crash (``kill -9``) of the server
process; ``FULL`` (setting ``sqlite_synchronous``) also survives power loss. The log is
checkpointed on a thread of the store, not inside a commit (``sqlite_checkpoint``).

Reads go through memory-mapped I/O (``PRAGMA mmap_size``, https://sqlite.org/mmap.html;
setting ``sqlite_mmap_mib``, default 1024) on the request connections: every commit of
any connection makes the others drop their page caches, and a mapped page is read again
without a copy, which keeps reads cheap while writes (bookings, AuditEvents written in
the background) commit. Bulk-read connections (exports) keep a small cache and no map.

This module opens and closes the store and runs its reads (read, vread, history, search
within the event loop's budget); the tables and their migrations are ``sqlite_schema``,
the write transactions ``sqlite_write`` (:class:`SQLiteStore`'s base class), the search
SQL ``sqlite_page``/``sqlite_search``, the index rows ``sqlite_index``, the compartment
memberships ``sqlite_members``.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fhir_server.events import outbox_sqlite
from fhir_server.storage import sqlite_checkpoint, sqlite_index, sqlite_purge, sqlite_schema
from fhir_server.storage.base import (
    HistoryPage,
    HistoryQuery,
    StoredVersion,
    WriteRequest,
    WriteResult,
    bulk_reads,
)
from fhir_server.storage.search_page import Cursor, SearchPage
from fhir_server.storage.sqlite_access import access_sql, any_type_driver, member_driver
from fhir_server.storage.sqlite_page import run_search
from fhir_server.storage.sqlite_schema import COLUMNS, HISTORY_COLUMNS, stored_row
from fhir_server.storage.sqlite_write import SQLiteWrites
from resources.search.query import AccessClause, SearchQuery

_SCHEMA_VERSION = sqlite_schema.SCHEMA_VERSION
"""The schema this release writes (``sqlite_schema``; the name kept for its importers)."""


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/path`` or ``sqlite:////absolute/path`` to a Path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"SQLite storage URL must start with sqlite:/// (got {url!r})")
    rest = url[len("sqlite:///") :]
    if not rest or rest == "/":
        raise ValueError("SQLite storage URL needs a file path")
    return Path(rest)


_T = TypeVar("_T")

INLINE_BUDGET = 0.005
"""Seconds a search (or history page) may run on the event loop before it moves to a thread."""
_PROGRESS_STEPS = 1000
"""SQLite virtual-machine steps between checks of the budget."""
BULK_CACHE_KIB = 2048
"""The page cache of a bulk job's connection (``base.bulk_reads``): it reads each page
once, and the requests' connections keep 64 MB each."""


class SQLiteStore(SQLiteWrites):
    """The embedded default store."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", mmap_mib: int = 1024) -> None:
        self.path = path
        self._synchronous = synchronous
        self._mmap_bytes = max(0, mmap_mib) * 1024 * 1024
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader_lock = threading.Lock()
        self._param_ids = sqlite_index.ParamIds()
        self._search_pool: ThreadPoolExecutor | None = None
        self._bulk_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._search_conns: list[sqlite3.Connection] = []
        self._inline: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._checkpointer: sqlite_checkpoint.Checkpointer | None = None
        self._deadline = math.inf
        """When the search running on the event loop's connection is stopped."""
        self._next_seq = 0
        """The seq of the last version written (in the writer's transaction)."""
        self._turn = threading.Lock()
        self._jobs = 0
        """Calls of :meth:`_in_writer` under way (transactions of ``run_write``...)."""
        self._pending: deque[Any] = deque()
        """Write batches queued for the writer thread (``sqlite_write``: group commit)."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SQLiteStore:
        return cls(path_from_url(url), **kwargs)

    # -- lifecycle -------------------------------------------------------------------

    def _connect(self, cache_kib: int = 65536) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        if cache_kib >= 65536:  # a request connection, not a bulk reader's (exports)
            conn.execute(f"PRAGMA mmap_size={self._mmap_bytes}")
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock_fd = os.open(f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # e.g. a read-only folder: SQLite's own locking still holds
            self._lock_fd = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer = await self._in_writer(self._connect)
        await self._in_writer(self._create_schema)
        # checkpoints on a thread of their own, not in a commit (``sqlite_checkpoint``)
        await self._in_writer(
            self._writer.execute, f"PRAGMA wal_autocheckpoint={sqlite_checkpoint.BACKSTOP_PAGES}"
        )
        self._checkpointer = sqlite_checkpoint.Checkpointer(lambda: self._connect(BULK_CACHE_KIB))
        self._checkpointer.start()
        self._reader = self._connect()
        self._inline = self._connect()
        self._inline.set_progress_handler(self._over_budget, _PROGRESS_STEPS)
        self._search_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-search")
        self._bulk_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-bulk")

    def _create_schema(self) -> sqlite3.Connection:
        """Create or migrate the schema, in this process's turn to write: the processes
        of one server start together, and each migration step must run once, on the
        version it was written for (``sqlite_schema.migrate``)."""
        with self._writer_turn():
            conn = self._writer
            assert conn is not None
            return sqlite_schema.migrate(conn, self.path)

    async def ping(self) -> None:
        """A read of the file's schema on a connection of its own, off the event loop (a
        file that went away is an error, not a new empty file)."""
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        uri = f"file:{quote(str(self.path))}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=1.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
            self._checkpointer = None
        if self._search_pool is not None:
            self._search_pool.shutdown(wait=True)
            self._search_pool = None
        if self._bulk_pool is not None:
            self._bulk_pool.shutdown(wait=True)
            self._bulk_pool = None
        for conn in self._search_conns:
            conn.close()
        self._search_conns.clear()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._writer is not None:
            await self._in_writer(self._optimize)
            await self._in_writer(self._writer.close)
            self._writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _optimize(self) -> None:
        """Planner statistics for the tables that changed (``PRAGMA optimize``, bounded
        by ``analysis_limit``: cheap at close). The search SQL does not depend on them
        for its plan, but they help the rest."""
        assert self._writer is not None
        try:
            self._writer.execute("PRAGMA analysis_limit=1000")
            self._writer.execute("PRAGMA optimize")
        except sqlite3.Error:  # e.g. the file went read-only: statistics are optional
            pass

    async def _in_writer(self, fn: Any, *args: Any) -> Any:
        assert self._executor is not None, "store is not open"
        self._jobs += 1  # a write on the event loop does not overtake it (``sqlite_write``)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._jobs -= 1

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._reader is not None, "store is not open"
        with self._reader_lock:
            return self._reader.execute(sql, params).fetchall()

    query = _query
    """A short indexed read on the reader connection (the outbox's)."""

    @property
    def outbox(self) -> outbox_sqlite.SQLiteOutbox:
        return outbox_sqlite.SQLiteOutbox(self)

    async def purge(self, type_: str, ids: Sequence[str]) -> int:
        """Remove resources for good: every version, index row and membership (the audit
        retention's, never the API's: :mod:`fhir_server.storage.sqlite_purge`)."""
        return await self.run_write(lambda conn: sqlite_purge.purge(conn, type_, ids))

    async def run_write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` in a transaction of the writer, in this process's turn (the
        outbox's cursor changes: compare-and-sets across processes)."""
        return await self._in_writer(self._run_write_sync, fn)

    # -- reads -----------------------------------------------------------------------

    async def read(
        self, type_: str, id_: str, access: AccessClause | None = None
    ) -> StoredVersion | None:
        sql = f"SELECT {COLUMNS} FROM resource WHERE type=? AND id=?"
        params: tuple[Any, ...] = (type_, id_)
        if access is not None:
            access_where, access_params = access_sql("resource", access)
            sql += f" AND ({access_where})"
            params += tuple(access_params)
        rows = self._query(sql, params)
        return stored_row(rows[0]) if rows else None

    async def vread(
        self, type_: str, id_: str, version: int, access: AccessClause | None = None
    ) -> StoredVersion | None:
        sql = (
            f"SELECT {HISTORY_COLUMNS} FROM history"
            " WHERE res_pk=(SELECT pk FROM resource WHERE type=? AND id=?) AND version=?"
        )
        params: tuple[Any, ...] = (type_, id_, version)
        if access is not None:
            access_where, access_params = access_sql("history", access)
            sql += f" AND ({access_where})"
            params += tuple(access_params)
        rows = self._query(sql, params)
        return stored_row(rows[0]) if rows else None

    async def history(self, query: HistoryQuery) -> HistoryPage:
        """Within the event loop's budget, like a search: the total of a type's or the
        system's history counts every version (570k for Observation at 1M resources)."""
        return await self._budgeted(self._history_sync, query)

    def _history_sync(self, conn: sqlite3.Connection, query: HistoryQuery) -> HistoryPage:
        where, params = self._history_filter(query)
        total = conn.execute(f"SELECT count(*) FROM history WHERE {where}", params).fetchone()[0]
        page_where, page_params = where, params
        if query.before_seq is not None:
            page_where += " AND seq < ?"
            page_params = (*params, query.before_seq)
        # the page's seqs first (sorted without the content), then their rows
        rows = conn.execute(
            f"SELECT {HISTORY_COLUMNS} FROM history WHERE seq IN (SELECT seq FROM history"
            f" WHERE {page_where} ORDER BY seq DESC LIMIT ?) ORDER BY seq DESC",
            (*page_params, query.count + 1),
        ).fetchall()
        entries = [stored_row(r) for r in rows[: query.count]]
        more = len(rows) > query.count
        return HistoryPage(entries, total, entries[-1].seq if more and entries else None)

    def _history_filter(self, query: HistoryQuery) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.type is not None and query.id is not None:
            clauses.append("res_pk = (SELECT pk FROM resource WHERE type=? AND id=?)")
            params += [query.type, query.id]
        elif query.type is not None:
            clauses.append("type = ?")
            params.append(query.type)
        if query.since is not None:
            clauses.append("last_updated >= ?")
            params.append(query.since)
        if query.at_start is not None and query.at_end is not None:
            # the version was current at some point of [at_start, at_end)
            clauses.append("last_updated < ? AND (ended IS NULL OR ended > ?)")
            params += [query.at_end, query.at_start]
        if query.access is not None:
            types = [query.type] if query.type is not None else None
            members = member_driver("history", query.access, types)
            if members is None and types is None:
                members = any_type_driver("history", query.access)
            if members is not None:
                clauses.append(f"({members[0]})")
                params += members[1]
            access_where, access_params = access_sql("history", query.access)
            clauses.append(f"({access_where})")
            params += access_params
        return (" AND ".join(clauses) or "1=1"), tuple(params)

    async def search(
        self, query: SearchQuery, cursor: Cursor | None, count: int, with_total: bool
    ) -> SearchPage:
        return await self._budgeted(
            lambda conn: run_search(conn, self._param_ids, query, cursor, count, with_total)
        )

    async def _budgeted(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the event loop's own connection, within
        :data:`INLINE_BUDGET`; stopped there and run again on a thread when it needs longer.

        Most searches take well under a millisecond of SQLite time, and handing them to
        a thread costs more than that (the hop, and the two threads contending for the
        GIL: ~0.5 ms of CPU per search, measured with ``bench/profile.py --cpu``); the
        budget keeps a costly query from holding up the other requests for more than a
        few milliseconds. ``fn`` only reads (a stopped statement changes nothing)."""
        assert self._search_pool is not None and self._inline is not None, "store is not open"
        if bulk_reads.get():  # a bulk job's page: on its own thread and small cache
            assert self._bulk_pool is not None
            return await asyncio.get_running_loop().run_in_executor(
                self._bulk_pool, self._on_thread, fn, args, BULK_CACHE_KIB
            )
        self._deadline = time.perf_counter() + INLINE_BUDGET
        try:
            return fn(self._inline, *args)
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_INTERRUPT:
                raise
        finally:
            self._deadline = math.inf
        return await asyncio.get_running_loop().run_in_executor(
            self._search_pool, self._on_thread, fn, args
        )

    def _over_budget(self) -> bool:
        """SQLite's progress handler on the inline connection: true stops the statement."""
        return time.perf_counter() > self._deadline

    def _on_thread(
        self, fn: Callable[..., _T], args: tuple[Any, ...], cache_kib: int = 65536
    ) -> _T:
        conn = getattr(self._local, "conn", None)
        if conn is None:  # one connection per thread (a bulk thread's: a small cache)
            conn = self._local.conn = self._connect(cache_kib)
            self._search_conns.append(conn)
        return fn(conn, *args)

    # -- writes (the transactions: ``sqlite_write``) ---------------------------------

    async def write(self, request: WriteRequest) -> WriteResult:
        return (await self.write_batch([request]))[0]

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        """One transaction of ``requests``: on the event loop when the writer is free,
        else on the writer thread, committed with the batches queued meanwhile (group
        commit; both: ``sqlite_write``)."""
        written = self._write_now(requests)
        if written is not None:
            return written
        done = self._queue_write(requests)
        self._executor_submit(self._drain)
        return await asyncio.wrap_future(done)

    def _executor_submit(self, fn: Callable[[], None]) -> None:
        assert self._executor is not None, "store is not open"
        self._executor.submit(fn)


def vacuum(path: Path) -> None:
    """Rewrite the file without its free pages (SQLite's ``VACUUM``), e.g. after the
    schema-4 conversion freed the duplicated contents. Rewrites every page: run it with
    the server stopped (a running server's writes would wait for it)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
