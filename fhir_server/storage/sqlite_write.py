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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
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


class SQLiteWrites:
    """The writer's transactions of ``sqlite.SQLiteStore`` (its base class)."""

    _writer: sqlite3.Connection | None
    _lock_fd: int | None
    _param_ids: sqlite_index.ParamIds
    _checkpointer: sqlite_checkpoint.Checkpointer | None
    _next_seq: int
    """The seq of the last version written (in the writer's transaction)."""

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


def _visible(conn: sqlite3.Connection, pk: int, access: AccessClause) -> bool:
    """Whether the current version of resource ``pk`` is visible under ``access``."""
    where, params = access_sql("resource", access)
    sql = f"SELECT 1 FROM resource WHERE pk = ? AND ({where})"
    return conn.execute(sql, (pk, *params)).fetchone() is not None
