"""The SQLite store's write path: group commit of the writes of one process.

Every write of a process (``SQLiteStore.write`` / ``write_batch``: one request, or several
all-or-nothing) is queued in a :class:`WriteQueue`. When its turn comes, the writes at the
head of the queue (up to :data:`INLINE_REQUESTS` requests) are applied as one SQLite
transaction in one turn of the writer lock (:class:`WriterTurn`, :meth:`Writes.group`):
each write in a ``SAVEPOINT`` of its own, so one that is refused (a version conflict, an
id taken, a conditional create that matched, a denied replace, a failing statement) is
rolled back alone and answered with its error while the others commit. Each write is
acknowledged only after the ``COMMIT`` of its group (the durability of a transaction of
its own), and each sees what the writes before it in the group wrote: a group is a serial
execution of its writes in queue order.

Why: one booking's transaction (an Appointment, its Slot, their history, outbox events and
index rows) holds SQLite's single writer about a millisecond, and the processes of
``serve --workers N`` take turns on it. On the writer thread, a transaction waited for the
GIL after each of its ~45 statements while the event loop ran requests (the 5 ms switch
interval, more on busy CPUs), holding the file's writer lock meanwhile; a group runs on
the event loop's own thread, and the turns, ``BEGIN``/``COMMIT`` and wake-ups are shared
by the writes queued while the other process had its turn.

A group of one write runs without a savepoint, as a transaction of its own. When SQLite
rolled back the whole transaction (``SQLITE_FULL``, ``SQLITE_IOERR``, ...:
https://www.sqlite.org/lang_transaction.html#response_to_errors_within_a_transaction),
the write that failed gets the error and the others of its group are queued again; a
failing ``COMMIT`` fails every write of the group (none was stored). After any rollback
the interned parameter ids are forgotten (``ParamIds.forget``): ids interned by the
rolled-back writes are gone from the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # not on POSIX: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

from fhir_server.events import outbox_sqlite
from fhir_server.storage import sqlite_index
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
from resources.search.query import AccessClause

COLUMNS = "type, id, version, last_updated, method, content, seq"
"""The columns of ``resource`` that make a :class:`StoredVersion`."""

INLINE_REQUESTS = 32
"""Requests of a group at most (a write with more runs alone, on the writer thread)."""

_T = TypeVar("_T")


class _Again:
    """The outcome of a write whose group SQLite rolled back for another write's fault."""


AGAIN = _Again()
"""Run the write again (its group was rolled back for another write's fault)."""

Outcome = list[WriteResult] | BaseException | _Again
"""What a group did with one write: its results, its error, or :data:`AGAIN`."""


def stored_version(row: Sequence[Any]) -> StoredVersion:
    """A row of :data:`COLUMNS` as a :class:`StoredVersion`."""
    return StoredVersion(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


class WriterTurn:
    """This process's turn to write among the processes sharing the file: an exclusive
    ``flock`` of ``<file>-writer.lock``, which the kernel hands to a waiting writer as it
    is released (no polling; SQLite's own busy handler sleeps up to 100 ms between
    tries and lets a waiting writer starve). Without the lock file (a read-only folder,
    not POSIX) SQLite's locking alone serialises the writers."""

    def __init__(self, path: str) -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            self._fd = None
        if fcntl is None:
            self.close()

    def try_take(self) -> bool:
        """Take the turn if no other process has it (without waiting)."""
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def take(self) -> None:
        """Wait for the turn (blocks the calling thread)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def give_back(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextmanager
    def held(self) -> Iterator[None]:
        self.take()
        try:
            yield
        finally:
            self.give_back()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(slots=True)
class _Queued:
    requests: Sequence[WriteRequest]
    call: Callable[[], Any] | None
    """A job of its own instead of writes (``SQLiteStore.run_write``)."""
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class WriteQueue:
    """The writes of one process (and its other jobs on the writer connection), applied
    one job at a time in queue order.

    Consecutive writes of at most :data:`INLINE_REQUESTS` requests together are a group,
    run by ``run_group`` on the event loop's thread, in this process's turn: taken right
    away when no other process has it, else waited for on the writer thread (``executor``)
    and handed back to the loop, the writes queued meanwhile joining the group. A larger
    write, or a ``call`` (``fn()`` in a transaction of its own), runs on the writer thread.

    On the loop because a transaction on the writer thread needs the GIL back from the
    event loop after each statement (up to the 5 ms switch interval when the loop is
    busy, more when the CPUs are) while it holds the file's single writer; the loop's
    thread has it already, and a group of bookings takes it a few milliseconds."""

    def __init__(
        self,
        turn: WriterTurn,
        run_group: Callable[[list[Sequence[WriteRequest]]], list[Outcome]],
    ) -> None:
        self._turn = turn
        self._run_group = run_group
        self._lock = threading.Lock()
        self._pending: deque[_Queued] = deque()
        self._running = False
        """A job is started, running, or waiting for the turn."""
        self._executor: Executor | None = None

    async def write(self, executor: Executor, requests: Sequence[WriteRequest]) -> Any:
        """Queue a write (all of ``requests`` or none) and wait for its group's commit."""
        return await self._submit(executor, requests, None)

    async def call(self, executor: Executor, fn: Callable[[], _T]) -> _T:
        """Queue ``fn()`` (run on the writer thread in this process's turn) and wait."""
        return await self._submit(executor, (), fn)

    async def idle(self) -> None:
        """Return when nothing is queued or running."""
        while self._running:
            await asyncio.sleep(0.005)

    async def _submit(
        self, executor: Executor, requests: Sequence[WriteRequest], call: Callable[[], Any] | None
    ) -> Any:
        loop = asyncio.get_running_loop()
        queued = _Queued(requests, call, loop.create_future(), loop)
        self._executor = executor
        with self._lock:
            self._pending.append(queued)
            start, self._running = not self._running, True
        if start:
            loop.call_soon(self._start)  # writes queued by the tasks ready now join it
        return await queued.future

    def _start(self) -> None:
        """On the event loop of the job at the head of the queue: start that job."""
        with self._lock:
            while self._pending and self._pending[0].future.cancelled():
                self._pending.popleft()  # its request is gone: not run
            if not self._pending:
                self._running = False
                return
            head = self._pending[0]
            alone = head.call is not None or len(head.requests) > INLINE_REQUESTS
            if alone:
                self._pending.popleft()
        if alone:
            self._on_thread(self._alone, head)
        elif self._turn.try_take():
            self._group()
        else:
            self._on_thread(self._wait_turn, head.loop)

    def _on_thread(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._executor is not None
        try:
            self._executor.submit(fn, *args)
        except RuntimeError as error:  # the executor is shut down: nothing will run
            with self._lock:
                stranded = list(self._pending)
                self._pending.clear()
                self._running = False
            _settle([(queued, error) for queued in stranded])

    def _wait_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the writer thread: wait for the turn, then run the group on the loop."""
        self._turn.take()
        try:
            loop.call_soon_threadsafe(self._group)
        except RuntimeError:  # the loop is closed
            self._turn.give_back()
            with self._lock:
                self._running = False

    def _take_group(self) -> list[_Queued]:
        group: list[_Queued] = []
        size = 0
        with self._lock:
            while self._pending:
                queued = self._pending[0]
                if queued.future.cancelled():  # its request is gone: not written
                    self._pending.popleft()
                    continue
                size += len(queued.requests)
                if queued.call is not None or (group and size > INLINE_REQUESTS):
                    break
                group.append(self._pending.popleft())
        return group

    def _group(self) -> None:
        """In this process's turn, on the event loop: the writes at the head of the
        queue as one group; then the next job."""
        fatal: BaseException | None = None
        group: list[_Queued] = []
        try:
            group = self._take_group()
            outcomes = self._run_group([queued.requests for queued in group]) if group else []
        except Exception as error:
            outcomes = [error] * len(group)
        except BaseException as error:  # e.g. KeyboardInterrupt: answered, then raised
            outcomes = [error] * len(group)
            fatal = error
        finally:
            self._turn.give_back()
        answers = list(zip(group, outcomes, strict=True))
        with self._lock:
            self._pending.extendleft(reversed([q for q, outcome in answers if outcome is AGAIN]))
        _settle([(queued, outcome) for queued, outcome in answers if outcome is not AGAIN])
        self._next()
        if fatal is not None:
            raise fatal

    def _alone(self, queued: _Queued) -> None:
        """On the writer thread, in this process's turn: a large write or a call."""
        try:
            with self._turn.held():
                if queued.call is not None:
                    outcome: Any = queued.call()
                else:
                    outcome = self._run_group([queued.requests])[0]
        except BaseException as error:
            outcome = error
        _settle([(queued, outcome)])
        self._next()

    def _next(self) -> None:
        """Start the next job on its event loop (from any thread), or stop."""
        with self._lock:
            if not self._pending:
                self._running = False
                return
            loop = self._pending[0].loop
        try:
            if _running_loop() is loop:
                loop.call_soon(self._start)
            else:
                loop.call_soon_threadsafe(self._start)
        except RuntimeError:  # its loop is closed: its jobs are dropped
            with self._lock:
                stranded = [q for q in self._pending if q.loop is loop]
                for queued in stranded:
                    self._pending.remove(queued)
            self._next()


def _settle(answers: list[tuple[_Queued, Any]]) -> None:
    """Hand outcomes to their event loops (one call per loop; at once on this one)."""
    current = _running_loop()
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Queued, Any]]] = {}
    for queued, outcome in answers:
        by_loop.setdefault(queued.loop, []).append((queued, outcome))
    for loop, some in by_loop.items():
        if loop is current:
            _resolve(some)
            continue
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, some)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(answers: list[tuple[_Queued, Any]]) -> None:
    for queued, outcome in answers:
        if queued.future.done():  # cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            queued.future.set_exception(outcome)
        else:
            queued.future.set_result(outcome)


class Writes:
    """Applies groups of writes on the writer connection (the writer thread only)."""

    def __init__(self, param_ids: sqlite_index.ParamIds) -> None:
        self._param_ids = param_ids
        self._next_seq = 0
        """The seq of the last version written (in the writer's transaction)."""

    def group(
        self, conn: sqlite3.Connection, writes: Sequence[Sequence[WriteRequest]]
    ) -> list[Outcome]:
        """``writes`` in one transaction, each all-or-nothing in a savepoint of its own
        (none for a single write): an outcome each (:data:`AGAIN`: SQLite rolled back the
        whole transaction because of another write of the group). Raises when
        the transaction fails as a whole (its ``COMMIT``, or a single write)."""
        single = len(writes) == 1
        outcomes: list[Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            # history.seq is the rowid: given here as SQLite would (max + 1), so the
            # resource row is written once, with the seq of its new version
            self._next_seq = conn.execute("SELECT max(seq) FROM history").fetchone()[0] or 0
            for requests in writes:
                outcomes.append(
                    self._transaction(conn, requests) if single else self._savepoint(conn, requests)
                )
            conn.execute("COMMIT")
        except BaseException as error:
            # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR, ...)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._param_ids.forget()  # ids interned by the rolled-back transaction
            failed = len(outcomes)
            if single or failed == len(writes) or not isinstance(error, Exception):
                raise
            return [AGAIN] * failed + [error] + [AGAIN] * (len(writes) - failed - 1)
        return outcomes

    def _transaction(
        self, conn: sqlite3.Connection, requests: Sequence[WriteRequest]
    ) -> list[WriteResult]:
        index = sqlite_index.IndexWriter(conn, self._param_ids)
        results = [self._apply(conn, index, request) for request in requests]
        index.flush()
        return results

    def _savepoint(self, conn: sqlite3.Connection, requests: Sequence[WriteRequest]) -> Outcome:
        conn.execute("SAVEPOINT write")
        seq = self._next_seq
        try:
            results = self._transaction(conn, requests)
        except Exception as error:
            if not conn.in_transaction:
                raise  # the whole transaction is gone: see group()
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
            self._next_seq = seq
            self._param_ids.forget()  # ids interned by the rolled-back write
            return error
        conn.execute("RELEASE write")
        return results

    def _apply(
        self, conn: sqlite3.Connection, index: sqlite_index.IndexWriter, req: WriteRequest
    ) -> WriteResult:
        row = conn.execute(
            f"SELECT pk, {COLUMNS} FROM resource WHERE type=? AND id=?", (req.type, req.id)
        ).fetchone()
        previous = stored_version(row[1:]) if row else None
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
        record_members(conn, req, seq, previous)
        _reindex(index, req, pk, fresh=previous is None)
        stored = StoredVersion(req.type, req.id, version, last_updated, req.method, content, seq)
        created = previous is None or previous.deleted
        return WriteResult(stored, created, previous)


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
