"""Checkpoints of the SQLite write-ahead log off the write path
(https://sqlite.org/wal.html#checkpointing, https://sqlite.org/pragma.html#pragma_wal_checkpoint).

SQLite checkpoints automatically in the ``COMMIT`` that takes the log past 1000 pages:
that commit copies the pages into the database file and syncs it while it still holds
the write lock, so every writer queued behind it waits too. At 1M resources a booking's
commit took 0.19 ms at the median and 17.6 ms at p99 that way (``bench/scheduling_bench.py``
with the commits timed), the spikes being the checkpoints.

Here a thread of the store runs a ``PASSIVE`` checkpoint on a connection of its own,
:data:`INTERVAL` seconds after a commit woke it (one checkpoint for a burst of commits).
A passive checkpoint takes no write lock: writers and readers go on meanwhile. The
writer connection's own automatic checkpoint stays as a backstop at
:data:`BACKSTOP_PAGES` pages, for a log that grows faster than the thread copies it.
Each process of a server runs its own thread; two checkpoints at once are harmless (the
second finds the work done or SQLite answers busy and it tries at the next commit).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("fhir_server.storage")

INTERVAL = 0.2
"""Seconds between a commit that wakes the thread and its checkpoint."""
BACKSTOP_PAGES = 8000
"""The writer's automatic checkpoint threshold (pages of the log; SQLite's default: 1000)."""


class Checkpointer:
    """The checkpoint thread of one store; ``connect`` opens its connection."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        """Checkpoints run (for tests and curiosity)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """A commit happened: checkpoint soon."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint of what is pending."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._wake.wait()
                if not self._stop.wait(INTERVAL):
                    self._wake.clear()
                self._checkpoint(conn)
                if self._stop.is_set():
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as error:  # busy with another process's checkpoint, a full disk
            log.debug("WAL checkpoint: %s", error)
