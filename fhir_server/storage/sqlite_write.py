"""The write transactions of the SQLite store (https://hl7.org/fhir/R4/http.html#versioning;
SQLite transactions, https://sqlite.org/lang_transaction.html).

:class:`SQLiteWrites` (a base of ``sqlite.SQLiteStore``, whose ``__init__`` and ``open``
set the attributes below) runs on the store's one writer thread, in this process's turn
to write (:meth:`~SQLiteWrites._writer_turn`, an ``flock`` of ``<file>-writer.lock``).
A batch of writes is one ``BEGIN IMMEDIATE`` transaction; for each write, in order:

- the current row is read and the conditions checked (``If-None-Exist`` as a search that
  sees the batch's earlier writes, the caller's access, ``If-Match`` against the version
  read, so that it is an atomic compare-and-set: ``base.check_preconditions``);
- the new version gets the next ``history.seq`` (the rowid SQLite would give it), the
  ``resource`` row takes its content and the replaced version's content moves to its
  ``history`` row (schema 4, ``sqlite_schema``);
- its ``history`` row, its ``event`` row of the outbox (``fhir_server.events.outbox_sqlite``),
  its compartment memberships (``sqlite_members``) and its search index rows
  (``sqlite_index``) are written in the same transaction.

After the ``COMMIT`` the checkpoint thread is woken (``sqlite_checkpoint``); on any error
the transaction is rolled back and the parameter ids it interned are forgotten.

**On the event loop when the writer is free.** A small batch (:data:`INLINE_MAX` writes,
no conditional create) is written on the calling thread, the event loop, when nothing is
queued for the writer thread (writes keep their order with the other work given to it),
this process's writer is idle and the other processes'
turn is free at once (a non-blocking ``flock``): no hand-off to the writer thread and
back, and no wait for the interpreter lock after each statement (a thread that SQLite
gave the lock back to waits for it while the event loop runs Python; with the
``flock`` held, every other writer waits too). Otherwise the writer thread takes it.

**Group commit.** The batches that requests queue while the writer is busy (or waiting
for another process's turn) are committed together: one turn, one ``BEGIN IMMEDIATE``
and one ``COMMIT`` for up to :data:`GROUP_BATCHES` of them (:data:`GROUP_WRITES`
writes), each batch inside a ``SAVEPOINT`` of its own, so that a batch that fails (a
compare-and-set that lost, a conditional create that matched, a refused write) is
rolled back alone and the others commit. Each batch is answered after the ``COMMIT``
(or with the error that ended it). A commit writes every page the transaction changed,
and random index inserts change many (https://sqlite.org/wal.html): batches that share a
commit share its pages, its turn and its write to the log. A batch alone commits as
before, without a savepoint.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

try:
    import fcntl
except ImportError:  # not on POSIX: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

from fhir_server.events import outbox_sqlite
from fhir_server.storage import sqlite_checkpoint, sqlite_index
from fhir_server.storage.base import (
    AccessDenied,
    ConditionMatched,
    StoredVersion,
    WriteRequest,
    WriteResult,
    check_preconditions,
    next_version,
)
from fhir_server.storage.sqlite_access import access_sql
from fhir_server.storage.sqlite_members import record_members
from fhir_server.storage.sqlite_page import run_search
from fhir_server.storage.sqlite_schema import COLUMNS, stored_row
from resources.search.query import AccessClause

_T = TypeVar("_T")

GROUP_BATCHES = 32
"""Queued write batches committed in one transaction at most."""
GROUP_WRITES = 256
"""Writes a group takes at most (its first batch whatever its size): a long transaction
holds the other processes' writes for as long."""
INLINE_MAX = 8
"""Writes of a batch that may be written on the event loop (see the module)."""

_Queued = tuple[Sequence[WriteRequest], "Future[list[WriteResult]]"]


class SQLiteWrites:
    """The writer's transactions of ``sqlite.SQLiteStore`` (its base class)."""

    _writer: sqlite3.Connection | None
    _lock_fd: int | None
    _param_ids: sqlite_index.ParamIds
    _checkpointer: sqlite_checkpoint.Checkpointer | None
    _next_seq: int
    """The seq of the last version written (in the writer's transaction)."""
    _pending: deque[_Queued]
    """The write batches queued for the writer thread."""
    _jobs: int
    """Other work given to the writer thread and not finished (``run_write``): a write on
    the event loop waits its turn behind it, as on the writer thread."""
    _turn: threading.Lock
    """This process's writer at work (the writer thread or the event loop); taken before
    the ``flock``, which does not exclude two threads of one process."""

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

    def _write_now(self, requests: Sequence[WriteRequest]) -> list[WriteResult] | None:
        """``requests`` written on the calling thread if the writer is free at once (see
        the module); None: not now, the writer thread takes them."""
        fd = self._lock_fd
        if (
            fd is None
            or fcntl is None
            or self._writer is None
            or self._pending
            or self._jobs
            or len(requests) > INLINE_MAX
            or any(r.unless_exists is not None for r in requests)
            or not self._turn.acquire(blocking=False)
        ):
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process's turn
                return None
            try:
                return self._write_transaction(self._writer, requests)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._turn.release()

    def _queue_write(self, requests: Sequence[WriteRequest]) -> Future[list[WriteResult]]:
        """Queue a batch for the writer thread (a :meth:`_drain` of its own is submitted
        to it, but an earlier one may take the batch first); its results, or its error,
        once committed."""
        done: Future[list[WriteResult]] = Future()
        self._pending.append((requests, done))
        return done

    def _drain(self) -> None:
        """The writer thread: the batches queued by now (up to :data:`GROUP_BATCHES`) in
        one turn and one transaction."""
        pending = self._pending
        if not pending:
            return  # an earlier drain took this one's batch
        group: list[_Queued] = []
        try:
            with self._writer_turn():
                # taken in the turn: what was queued while waiting for it comes along
                writes = 0
                while pending and len(group) < GROUP_BATCHES:
                    writes += len(pending[0][0])
                    if group and writes > GROUP_WRITES:
                        break
                    group.append(pending.popleft())
                if not group:
                    return
                if len(group) == 1:
                    requests, done = group[0]
                    _settle(done, self._write_transaction, self._writer, requests)
                else:
                    self._write_group(group)
        except BaseException as error:  # the turn itself failed: nothing was written
            for _, done in group:
                if not done.done():
                    done.set_exception(error)
            if not isinstance(error, Exception):
                raise

    def _write_group(self, group: list[_Queued]) -> None:
        """Several batches in one transaction, each in a savepoint (see the module). Every
        batch is answered once the transaction has ended, the failed ones too: a caller
        that looks at the store after its error (the conflicting resource of a
        conditional create, the version that won a compare-and-set) sees what the
        batches committed with it wrote."""
        conn = self._writer
        assert conn is not None
        applied: list[tuple[_Queued, list[WriteResult]]] = []
        failed: list[tuple[Future[list[WriteResult]], Exception]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._next_seq = conn.execute("SELECT max(seq) FROM history").fetchone()[0] or 0
            for queued in group:
                requests, done = queued
                seq = self._next_seq
                conn.execute("SAVEPOINT batch")
                try:
                    _fail_fast(conn, requests)
                    index = sqlite_index.IndexWriter(conn, self._param_ids)
                    result = [self._apply(conn, index, request) for request in requests]
                    index.flush()
                except Exception as error:
                    self._param_ids.forget()  # ids interned by what is rolled back
                    failed.append((done, error))
                    if not conn.in_transaction:
                        # SQLite ended the whole transaction (SQLITE_FULL, SQLITE_IOERR):
                        # the batches applied before go again, in a transaction of their own
                        self._pending.extendleft(q for q, _ in reversed(applied))
                        for _ in applied:
                            self._executor_submit(self._drain)
                        _answer(failed)
                        return
                    conn.execute("ROLLBACK TO batch")
                    conn.execute("RELEASE batch")
                    self._next_seq = seq
                    continue
                conn.execute("RELEASE batch")
                applied.append((queued, result))
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._param_ids.forget()
            _answer(failed)
            for _, done in group:
                if not done.done():
                    done.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        if self._checkpointer is not None:
            self._checkpointer.poke()
        for (_, done), result in applied:
            done.set_result(result)
        _answer(failed)

    def _executor_submit(self, fn: Callable[[], None]) -> None:
        raise NotImplementedError  # ``sqlite.SQLiteStore``: its writer thread

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """This process's turn to write: its writer (:attr:`_turn`), then an exclusive
        ``flock`` on the lock file, which the kernel hands to waiting writers as it is
        released (no polling)."""
        with self._turn:
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
            _fail_fast(conn, requests)
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
            f"SELECT pk, {COLUMNS} FROM resource WHERE type=? AND id=?", (req.type, req.id)
        ).fetchone()
        previous = stored_row(row[1:]) if row else None
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
                f"INSERT INTO resource ({COLUMNS}) VALUES (?,?,?,?,?,?,?)",
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


def _fail_fast(conn: sqlite3.Connection, requests: Sequence[WriteRequest]) -> None:
    """The compare-and-set (``If-Match``) and must-not-exist conditions of the batch's
    later writes checked before its first is applied: a batch that lost a race (two
    bookings of one Slot: the Appointment, then the Slot at the version read) ends before
    writing anything. Each write checks them again where it is applied; a resource the
    batch writes twice is checked there only."""
    seen = {(requests[0].type, requests[0].id)} if requests else set()
    for req in requests[1:]:
        key = (req.type, req.id)
        if key in seen:
            continue
        seen.add(key)
        if req.if_match is None and not req.must_not_exist:
            continue
        row = conn.execute(
            "SELECT version, method FROM resource WHERE type=? AND id=?", key
        ).fetchone()
        current = None if row is None else StoredVersion(*key, row[0], "", row[1], None, 0)
        check_preconditions(req, current)


def _visible(conn: sqlite3.Connection, pk: int, access: AccessClause) -> bool:
    """Whether the current version of resource ``pk`` is visible under ``access``."""
    where, params = access_sql("resource", access)
    sql = f"SELECT 1 FROM resource WHERE pk = ? AND ({where})"
    return conn.execute(sql, (pk, *params)).fetchone() is not None


def _settle(
    done: Future[list[WriteResult]],
    fn: Callable[..., list[WriteResult]],
    *args: object,
) -> None:
    """``done`` answered with what ``fn(*args)`` returns, or with the error it raises."""
    try:
        result = fn(*args)
    except Exception as error:
        done.set_exception(error)
    else:
        done.set_result(result)


def _answer(failed: list[tuple[Future[list[WriteResult]], Exception]]) -> None:
    """The failed batches of a group answered with their errors."""
    for done, error in failed:
        done.set_exception(error)
