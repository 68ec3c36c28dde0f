"""The tables of the SQLite store and their migrations (SQLite ``user_version``,
https://sqlite.org/pragma.html#pragma_user_version).

``resource`` holds the current version of each logical resource (tombstones included),
``history`` a row for every version ever written, per the versioning rules of
https://hl7.org/fhir/R4/http.html#versioning. :func:`migrate` creates the tables (with the
search index's, the memberships' and the outbox's) and brings a file of an earlier schema
to :data:`SCHEMA_VERSION`, one step per version, each in a transaction of its own; the
store runs it in its process's turn to write (``SQLiteStore._create_schema``).

:data:`COLUMNS`, :data:`HISTORY_COLUMNS` and :func:`stored_row` are the columns a version
is read with and the :class:`~fhir_server.storage.base.StoredVersion` a row makes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server.events import outbox_sqlite
from fhir_server.storage import sqlite_index
from fhir_server.storage.base import StoredVersion
from fhir_server.storage.sqlite_access import MEMBER_SCHEMA
from fhir_server.storage.sqlite_members import (
    backfill_members,
    backfill_referring_members,
    backfill_slot_members,
)

SCHEMA_VERSION = 8

SCHEMA = """
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

COLUMNS = "type, id, version, last_updated, method, content, seq"
HISTORY_COLUMNS = (
    "type, id, version, last_updated, method, CASE WHEN content IS NULL AND method != 'delete'"
    " THEN (SELECT r.content FROM resource r WHERE r.pk = history.res_pk AND r.seq = history.seq)"
    " ELSE content END, seq"
)
"""A history row's columns, its content taken from ``resource`` while it is current."""


def stored_row(row: tuple[Any, ...]) -> StoredVersion:
    return StoredVersion(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def migrate(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """Create or migrate the schema of the file at ``path`` on the writer ``conn`` (in the
    caller's turn to write: each step must run once, on the version it was written for)."""
    old_version = conn.execute("PRAGMA user_version").fetchone()[0]
    if old_version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has schema {old_version}, written by a newer fhir-server; this"
            f" one knows schema {SCHEMA_VERSION} (upgrade it instead)"
        )
    conn.executescript(SCHEMA)
    conn.executescript(sqlite_index.SCHEMA)
    conn.executescript(MEMBER_SCHEMA)
    # v7: the event outbox (versions written before it are not events)
    conn.executescript(outbox_sqlite.SCHEMA)
    for version, step in _STEPS:
        if 0 < old_version < version:
            conn.execute("BEGIN IMMEDIATE")
            step(conn)
            conn.execute("COMMIT")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn


def _current_content_in_resource_only(conn: sqlite3.Connection) -> None:
    """v4: a current version's content only in resource (the freed pages are reused by
    later writes; VACUUM gives them back to the file system)."""
    conn.execute(
        "UPDATE history SET content = NULL WHERE seq IN (SELECT seq FROM resource)"
        " AND content IS NOT NULL"
    )


_STEPS: list[tuple[int, Callable[[sqlite3.Connection], object]]] = [
    (2, backfill_members),
    # v3: the per-resource index of each index table is (res_pk, pid), so that a probe
    # of one parameter seeks to its rows instead of reading all of them
    (3, sqlite_index.rebuild_res_indexes),
    (4, _current_content_in_resource_only),
    # v5: idx_reference_match covers res_pk (4.4M reference rows at 1M resources: 9 s)
    (5, sqlite_index.rebuild_reference_match),
    # v6: types outside the R4 Patient compartment are members of the patients they
    # refer to (default-deny for patient-context tokens)
    (6, backfill_referring_members),
    # v8: the Slots of a patient's own Schedule are members of that patient's
    # compartment (resources.compartments.slot_schedule)
    (8, backfill_slot_members),
]
"""The migration steps: each runs, in a transaction of its own, on a file whose schema
is older than its version."""
