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
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

try:
    import fcntl
except ImportError:  # not on POSIX: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

from fhir_server.events import outbox_sqlite
from fhir_server.storage import sqlite_checkpoint, sqlite_index, sqlite_purge
from fhir_server.storage.base import (
    AccessDenied,
    ConditionMatched,
    HistoryPage,
    HistoryQuery,
    StoredVersion,
    WriteRequest,
    WriteResult,
    bulk_reads,
    check_preconditions,
    next_version,
)
from fhir_server.storage.search_page import Cursor, SearchPage
from fhir_server.storage.sqlite_access import (
    MEMBER_SCHEMA,
    access_sql,
    any_type_driver,
    member_driver,
)
from fhir_server.storage.sqlite_members import (
    backfill_members,
    backfill_referring_members,
    backfill_slot_members,
    record_members,
)
from fhir_server.storage.sqlite_page import run_search
from resources.search.query import AccessClause, SearchQuery

_SCHEMA_VERSION = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resource (
    pk INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    method TEXT NOT NULL,
    content BLOB,
    seq INTEGER NOT NULL,
    UNIQUE (type, id)
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,
    res_pk INTEGER NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    ended TEXT,
    method TEXT NOT NULL,
    content BLOB,  -- NULL while the version is current: its content is resource.content
    UNIQUE (res_pk, version)
);
-- the live resources of a type in pk order: counts and unsorted pages of a broad search
CREATE INDEX IF NOT EXISTS resource_live ON resource (type) WHERE method != 'delete';
-- _lastUpdated ranges and sorts ("what changed since", the sync of an EHR or an app)
CREATE INDEX IF NOT EXISTS resource_updated ON resource (type, last_updated)
    WHERE method != 'delete';
-- schema 4 keeps a current content only in resource: a server of an earlier release still
-- writing to the file would end a version without moving its content there (lost): refused
CREATE TRIGGER IF NOT EXISTS history_keeps_content BEFORE UPDATE OF ended ON history
    WHEN NEW.content IS NULL AND NEW.method != 'delete'
    BEGIN SELECT RAISE(ABORT, 'schema 4: a replaced version needs its content'); END;
CREATE INDEX IF NOT EXISTS history_by_type ON history (type, seq);
CREATE INDEX IF NOT EXISTS history_by_time ON history (last_updated);
"""

_COLUMNS = "type, id, version, last_updated, method, content, seq"
_HISTORY_COLUMNS = (
    "type, id, version, last_updated, method, CASE WHEN content IS NULL AND method != 'delete'"
    " THEN (SELECT r.content FROM resource r WHERE r.pk = history.res_pk AND r.seq = history.seq)"
    " ELSE content END, seq"
)
"""A history row's columns, its content taken from ``resource`` while it is current."""


def _row(row: tuple[Any, ...]) -> StoredVersion:
    return StoredVersion(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


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


class SQLiteStore:
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
        version it was written for."""
        with self._writer_turn():
            return self._migrate()

    def _migrate(self) -> sqlite3.Connection:
        conn = self._writer
        assert conn is not None
        old_version = conn.execute("PRAGMA user_version").fetchone()[0]
        if old_version > _SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema {old_version}, written by a newer fhir-server; this"
                f" one knows schema {_SCHEMA_VERSION} (upgrade it instead)"
            )
        conn.executescript(_SCHEMA)
        conn.executescript(sqlite_index.SCHEMA)
        conn.executescript(MEMBER_SCHEMA)
        # v7: the event outbox (versions written before it are not events)
        conn.executescript(outbox_sqlite.SCHEMA)
        if 0 < old_version < 2:
            conn.execute("BEGIN IMMEDIATE")
            backfill_members(conn)
            conn.execute("COMMIT")
        if 0 < old_version < 3:
            # v3: the per-resource index of each index table is (res_pk, pid), so that a
            # probe of one parameter seeks to its rows instead of reading all of them
            conn.execute("BEGIN IMMEDIATE")
            sqlite_index.rebuild_res_indexes(conn)
            conn.execute("COMMIT")
        if 0 < old_version < 4:
            # v4: a current version's content only in resource (the freed pages are reused
            # by later writes; VACUUM gives them back to the file system)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE history SET content = NULL WHERE seq IN (SELECT seq FROM resource)"
                " AND content IS NOT NULL"
            )
            conn.execute("COMMIT")
        if 0 < old_version < 5:
            # v5: idx_reference_match covers res_pk (4.4M reference rows at 1M resources: 9 s)
            conn.execute("BEGIN IMMEDIATE")
            sqlite_index.rebuild_reference_match(conn)
            conn.execute("COMMIT")
        if 0 < old_version < 6:
            # v6: types outside the R4 Patient compartment are members of the patients
            # they refer to (default-deny for patient-context tokens)
            conn.execute("BEGIN IMMEDIATE")
            backfill_referring_members(conn)
            conn.execute("COMMIT")
        if 0 < old_version < 8:
            # v8: the Slots of a patient's own Schedule are members of that patient's
            # compartment (resources.compartments.slot_schedule)
            conn.execute("BEGIN IMMEDIATE")
            backfill_slot_members(conn)
            conn.execute("COMMIT")
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return conn

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
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

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

    def _run_write_sync(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._writer
        assert conn is not None
        with self._writer_turn():
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return result

    # -- reads -----------------------------------------------------------------------

    async def read(
        self, type_: str, id_: str, access: AccessClause | None = None
    ) -> StoredVersion | None:
        sql = f"SELECT {_COLUMNS} FROM resource WHERE type=? AND id=?"
        params: tuple[Any, ...] = (type_, id_)
        if access is not None:
            access_where, access_params = access_sql("resource", access)
            sql += f" AND ({access_where})"
            params += tuple(access_params)
        rows = self._query(sql, params)
        return _row(rows[0]) if rows else None

    async def vread(
        self, type_: str, id_: str, version: int, access: AccessClause | None = None
    ) -> StoredVersion | None:
        sql = (
            f"SELECT {_HISTORY_COLUMNS} FROM history"
            " WHERE res_pk=(SELECT pk FROM resource WHERE type=? AND id=?) AND version=?"
        )
        params: tuple[Any, ...] = (type_, id_, version)
        if access is not None:
            access_where, access_params = access_sql("history", access)
            sql += f" AND ({access_where})"
            params += tuple(access_params)
        rows = self._query(sql, params)
        return _row(rows[0]) if rows else None

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
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE seq IN (SELECT seq FROM history"
            f" WHERE {page_where} ORDER BY seq DESC LIMIT ?) ORDER BY seq DESC",
            (*page_params, query.count + 1),
        ).fetchall()
        entries = [_row(r) for r in rows[: query.count]]
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

    # -- writes ----------------------------------------------------------------------

    async def write(self, request: WriteRequest) -> WriteResult:
        return await self._in_writer(self._write_sync, request)

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        return await self._in_writer(self._write_batch_sync, requests)

    def _write_sync(self, request: WriteRequest) -> WriteResult:
        return self._write_batch_sync([request])[0]

    def _write_batch_sync(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        conn = self._writer
        assert conn is not None
        with self._writer_turn():
            return self._write_transaction(conn, requests)

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """This process's turn to write: an exclusive ``flock`` on the lock file, which
        the kernel hands to waiting writers as it is released (no polling)."""
        fd = self._lock_fd
        if fd is None or fcntl is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_transaction(
        self, conn: sqlite3.Connection, requests: Sequence[WriteRequest]
    ) -> list[WriteResult]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # history.seq is the rowid: given here as SQLite would (max + 1), so the
            # resource row is written once, with the seq of its new version
            self._next_seq = conn.execute("SELECT max(seq) FROM history").fetchone()[0] or 0
            index = sqlite_index.IndexWriter(conn, self._param_ids)
            result = [self._apply(conn, index, request) for request in requests]
            index.flush()
            conn.execute("COMMIT")
            if self._checkpointer is not None:
                self._checkpointer.poke()
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR, ...):
            # https://www.sqlite.org/lang_transaction.html#response_to_errors_within_a_transaction
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._param_ids.forget()  # ids interned by the rolled-back transaction
            raise
        return result

    def _apply(
        self, conn: sqlite3.Connection, index: sqlite_index.IndexWriter, req: WriteRequest
    ) -> WriteResult:
        row = conn.execute(
            f"SELECT pk, {_COLUMNS} FROM resource WHERE type=? AND id=?", (req.type, req.id)
        ).fetchone()
        previous = _row(row[1:]) if row else None
        pk = row[0] if row else None
        if req.unless_exists is not None:
            index.flush()  # earlier writes of this transaction must be searchable
            found = run_search(conn, self._param_ids, req.unless_exists, None, 2, False)
            if found.entries:
                raise ConditionMatched(found.entries)
        if req.access is not None and pk is not None and not _visible(conn, pk, req.access):
            raise AccessDenied(req)
        no_op = check_preconditions(req, previous)
        if no_op is not None:
            return no_op
        version, last_updated = next_version(previous)
        content = None if req.build is None else req.build(version, last_updated)
        seq = self._next_seq = self._next_seq + 1
        if pk is None:
            pk = conn.execute(
                f"INSERT INTO resource ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (req.type, req.id, version, last_updated, req.method, content, seq),
            ).lastrowid
            assert pk is not None
        else:
            conn.execute(
                "UPDATE resource SET version=?, last_updated=?, method=?, content=?, seq=?"
                " WHERE pk=?",
                (version, last_updated, req.method, content, seq, pk),
            )
            # the replaced version's content moves to its history row
            assert previous is not None
            conn.execute(
                "UPDATE history SET ended=?, content=? WHERE seq=?",
                (last_updated, previous.content, previous.seq),
            )
        conn.execute(
            "INSERT INTO history (seq, res_pk, type, id, version, last_updated, method)"
            " VALUES (?,?,?,?,?,?,?)",
            (seq, pk, req.type, req.id, version, last_updated, req.method),
        )
        # the outbox: the version is an event, committed with it
        conn.execute(outbox_sqlite.INSERT_EVENT, (seq, req.type, req.id, version, req.method))
        record_members(conn, req, seq, previous, index.flush)
        self._reindex(index, req, pk, fresh=previous is None)
        stored = StoredVersion(req.type, req.id, version, last_updated, req.method, content, seq)
        created = previous is None or previous.deleted
        return WriteResult(stored, created, previous)

    @staticmethod
    def _reindex(index: sqlite_index.IndexWriter, req: WriteRequest, pk: int, fresh: bool) -> None:
        if req.index is not None and req.method != "delete":
            index.replace(req.type, pk, req.index.rows, req.index.sort_keys, fresh)
        elif not fresh:
            index.discard(pk)


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


def _visible(conn: sqlite3.Connection, pk: int, access: AccessClause) -> bool:
    """Whether the current version of resource ``pk`` is visible under ``access``."""
    where, params = access_sql("resource", access)
    sql = f"SELECT 1 FROM resource WHERE pk = ? AND ({where})"
    return conn.execute(sql, (pk, *params)).fetchone() is not None
