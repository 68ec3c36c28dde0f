"""Search index tables of the SQLite store, written in the same transaction as the
resource (https://hl7.org/fhir/R4/search.html).

One table per parameter type, each row keyed by the resource's ``pk`` and an interned
parameter id (``search_param.pid`` for a (resource type, code) pair), so the indexes that
serve searches stay narrow. Only current versions are indexed: an update replaces the
rows, a delete removes them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from resources.search.index.packed import (
    COMPOSITE,
    ROW_CLASSES,
    PackedRows,
    PackedSortKeys,
    unpack_row,
)
from resources.search.model import (
    CompositeRow,
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    SortKey,
    StringRow,
    TokenRow,
    UriRow,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS search_param (
    pid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    code TEXT NOT NULL,
    UNIQUE (type, code)
);
CREATE TABLE IF NOT EXISTS idx_string (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_string_match ON idx_string (pid, norm);
CREATE INDEX IF NOT EXISTS idx_string_res ON idx_string (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_token (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, system TEXT, value TEXT, text TEXT,
    type_system TEXT, type_code TEXT
);
CREATE INDEX IF NOT EXISTS idx_token_match ON idx_token (pid, value, system, res_pk);
CREATE INDEX IF NOT EXISTS idx_token_res ON idx_token (res_pk, pid, value, system);
CREATE TABLE IF NOT EXISTS idx_date (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, low TEXT NOT NULL, high TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_match ON idx_date (pid, low, high);
CREATE INDEX IF NOT EXISTS idx_date_res ON idx_date (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_number (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL,
    high REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_number_match ON idx_number (pid, value);
CREATE INDEX IF NOT EXISTS idx_number_res ON idx_number (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_quantity (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL,
    high REAL NOT NULL, system TEXT, code TEXT, unit TEXT
);
CREATE INDEX IF NOT EXISTS idx_quantity_match ON idx_quantity (pid, code, value);
CREATE INDEX IF NOT EXISTS idx_quantity_res ON idx_quantity (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_reference (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, target_type TEXT, target_id TEXT,
    url TEXT, version TEXT, ident_system TEXT, ident_value TEXT
);
CREATE INDEX IF NOT EXISTS idx_reference_match
    ON idx_reference (pid, target_id, target_type, res_pk);
CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (pid, url) WHERE url IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_reference_res ON idx_reference (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_uri (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_uri_match ON idx_uri (pid, value);
CREATE INDEX IF NOT EXISTS idx_uri_res ON idx_uri (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_composite (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL,
    s1 TEXT, v1 TEXT, lo1, hi1, n1,
    s2 TEXT, v2 TEXT, lo2, hi2, n2,
    s3 TEXT, v3 TEXT, lo3, hi3, n3
);
CREATE INDEX IF NOT EXISTS idx_composite_match ON idx_composite (pid, v1, s1);
CREATE INDEX IF NOT EXISTS idx_composite_res ON idx_composite (res_pk, pid);
CREATE TABLE IF NOT EXISTS idx_sort (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, low NOT NULL, high NOT NULL,
    PRIMARY KEY (res_pk, pid)
) WITHOUT ROWID;
"""

INDEX_TABLES = (
    "idx_string",
    "idx_token",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
    "idx_composite",
    "idx_sort",
)


RES_INDEX_COLUMNS = {"idx_token": ("res_pk", "pid", "value", "system")}
"""Columns of ``idx_*_res`` beyond ``(res_pk, pid)``: token probes (the most frequent)
are answered from the index alone, without reading the table's rows."""


def res_index_columns(table: str) -> tuple[str, ...]:
    return RES_INDEX_COLUMNS.get(table, ("res_pk", "pid"))


TOKEN_MATCH_COLUMNS = ("pid", "value", "system", "res_pk")
"""``idx_token_match``: with ``res_pk``, a count of the resources a token matches is read
from the index alone (``Observation?code=`` with 56,729 matches at 1M: 633 -> 25 ms)."""


REFERENCE_MATCH_COLUMNS = ("pid", "target_id", "target_type", "res_pk")
"""``idx_reference_match``: with ``res_pk``, the resources that refer to a target (a
patient's resources, the driving condition of most portal searches) are read from the
index alone, without a seek into the table per row (``Observation?patient=&code=`` at
1M resources, 20,000 random searches: 94-104 -> 73-82 us of SQLite time)."""


def rebuild_reference_match(conn: sqlite3.Connection) -> None:
    """Stores made before schema v5 had ``idx_reference_match`` without ``res_pk``:
    rebuilt on :data:`REFERENCE_MATCH_COLUMNS` (inside the caller's transaction)."""
    columns = ", ".join(REFERENCE_MATCH_COLUMNS)
    log.info("rebuilding index idx_reference_match on (%s)", columns)
    conn.execute("DROP INDEX IF EXISTS idx_reference_match")
    conn.execute(f"CREATE INDEX idx_reference_match ON idx_reference ({columns})")


def rebuild_res_indexes(conn: sqlite3.Connection) -> None:
    """Stores made before schema v3 had ``idx_*_res`` on ``(res_pk)`` alone and
    ``idx_token_match`` without ``res_pk``: rebuilt on :func:`res_index_columns` and
    :data:`TOKEN_MATCH_COLUMNS` (inside the caller's transaction)."""
    log.info("rebuilding index idx_token_match on (%s)", ", ".join(TOKEN_MATCH_COLUMNS))
    conn.execute("DROP INDEX IF EXISTS idx_token_match")
    conn.execute(f"CREATE INDEX idx_token_match ON idx_token ({', '.join(TOKEN_MATCH_COLUMNS)})")
    for table in INDEX_TABLES:
        if table == "idx_sort":  # its primary key is (res_pk, pid) already
            continue
        columns = ", ".join(res_index_columns(table))
        log.info("rebuilding index %s_res on (%s)", table, columns)
        conn.execute(f"DROP INDEX IF EXISTS {table}_res")
        conn.execute(f"CREATE INDEX {table}_res ON {table} ({columns})")


log = logging.getLogger("fhir_server.storage")


TABLE_OF_TYPE = {
    "string": "idx_string",
    "token": "idx_token",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "reference": "idx_reference",
    "uri": "idx_uri",
    "composite": "idx_composite",
}
"""Where a parameter of each type keeps its values (for ``:missing`` and matching)."""


class ParamIds:
    """Interned (resource type, code) -> pid. The mapping only ever grows, so caching it
    in a process is safe even with several processes writing the same file."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._by_type: dict[str, dict[str, int]] = {}

    def forget(self) -> None:
        self._ids = {}
        self._by_type = {}

    def lookup(self, conn: sqlite3.Connection, type_: str, code: str) -> int | None:
        key = (type_, code)
        pid = self._ids.get(key)
        if pid is None:
            row = conn.execute(
                "SELECT pid FROM search_param WHERE type=? AND code=?", key
            ).fetchone()
            if row is None:
                return None
            pid = self._ids[key] = row[0]
        return pid

    def ensure(self, conn: sqlite3.Connection, type_: str, code: str) -> int:
        pid = self.lookup(conn, type_, code)
        if pid is None:
            conn.execute(
                "INSERT OR IGNORE INTO search_param (type, code) VALUES (?, ?)", (type_, code)
            )
            pid = self.lookup(conn, type_, code)
            assert pid is not None
        return pid

    def of_type(self, type_: str) -> dict[str, int]:
        """The pids of ``type_`` interned so far, by code (see :meth:`ensure_all`)."""
        found = self._by_type.get(type_)
        if found is None:
            found = self._by_type[type_] = {}
        return found

    def ensure_all(self, conn: sqlite3.Connection, type_: str, codes: Iterable[str]) -> None:
        """Intern ``codes`` of ``type_`` (in the writer's transaction) into :meth:`of_type`."""
        known = self.of_type(type_)
        for code in codes:
            if code not in known:
                known[code] = self.ensure(conn, type_, code)


class IndexWriter:
    """Collects the index rows of one transaction and inserts them table by table
    (one ``executemany`` per table per flush, not per resource)."""

    def __init__(self, conn: sqlite3.Connection, ids: ParamIds) -> None:
        self._conn = conn
        self._ids = ids
        self._tables: dict[str, list[tuple[Any, ...]]] = {table: [] for table in INDEX_TABLES}
        self._pending: set[int] = set()
        """The resources with rows in ``_tables`` (not yet inserted)."""
        self._by_kind = [self._tables[_TABLE_OF_ROW[cls]] for cls in ROW_CLASSES]

    def replace(
        self,
        type_: str,
        pk: int,
        rows: Sequence[IndexRow],
        sort_keys: Sequence[SortKey],
        fresh: bool = False,
    ) -> None:
        """The rows of resource ``pk`` become these (stored ones are cleared now,
        unless the resource is ``fresh``: new, so it has none)."""
        if not fresh:
            self.discard(pk)
        elif pk in self._pending:
            self._drop_pending(pk)
        pids = self._ids.of_type(type_)
        tables = self._tables
        try:
            if isinstance(rows, PackedRows):  # tuples from an import's workers
                by_kind = self._by_kind
                for packed in rows.packed:
                    kind = packed[0]
                    if kind == COMPOSITE:
                        parts = tuple(unpack_row(part) for part in packed[2])
                        values = (pk, pids[packed[1]], *composite_columns(parts))
                        tables["idx_composite"].append(values)
                    else:
                        by_kind[kind].append((pk, pids[packed[1]], *packed[2:]))
            else:
                columns = _ROW_COLUMNS
                for row in rows:
                    table, values = columns[type(row)](row, pk, pids[row.code])
                    tables[table].append(values)
            sort = tables["idx_sort"]
            if isinstance(sort_keys, PackedSortKeys):
                for code, low, high in sort_keys.packed:
                    sort.append((pk, pids[code], low, high))
            else:
                for key in sort_keys:
                    sort.append((pk, pids[key.code], key.low, key.high))
        except KeyError:  # a code not interned yet: intern, then start over
            self._drop_pending(pk)
            codes = [r.code for r in rows] + [k.code for k in sort_keys]  # (unpacks)
            self._ids.ensure_all(self._conn, type_, codes)
            self.replace(type_, pk, rows, sort_keys, fresh=True)
            return
        self._pending.add(pk)

    def discard(self, pk: int) -> None:
        """Forget pending rows of ``pk`` and delete its stored rows."""
        if pk in self._pending:
            self._drop_pending(pk)
        for table in INDEX_TABLES:
            self._conn.execute(f"DELETE FROM {table} WHERE res_pk=?", (pk,))

    def _drop_pending(self, pk: int) -> None:
        for rows in self._tables.values():
            if rows:
                rows[:] = [r for r in rows if r[0] != pk]
        self._pending.discard(pk)

    def flush(self) -> None:
        for table, batch in self._tables.items():
            if not batch:
                continue
            marks = ",".join("?" * len(batch[0]))
            verb = "INSERT OR REPLACE" if table == "idx_sort" else "INSERT"
            self._conn.executemany(f"{verb} INTO {table} VALUES ({marks})", batch)
            batch.clear()
        self._pending.clear()


_TABLE_OF_ROW: dict[type, str] = {
    TokenRow: "idx_token",
    StringRow: "idx_string",
    DateRow: "idx_date",
    ReferenceRow: "idx_reference",
    QuantityRow: "idx_quantity",
    NumberRow: "idx_number",
    UriRow: "idx_uri",
    CompositeRow: "idx_composite",
}

_ROW_COLUMNS: dict[type, Any] = {
    TokenRow: lambda r, pk, pid: (
        "idx_token",
        (pk, pid, r.system, r.value, r.text, r.type_system, r.type_code),
    ),
    StringRow: lambda r, pk, pid: ("idx_string", (pk, pid, r.normalized, r.exact)),
    DateRow: lambda r, pk, pid: ("idx_date", (pk, pid, r.low, r.high)),
    ReferenceRow: lambda r, pk, pid: (
        "idx_reference",
        (
            pk,
            pid,
            r.target_type,
            r.target_id,
            r.url,
            r.version,
            r.identifier_system,
            r.identifier_value,
        ),
    ),
    QuantityRow: lambda r, pk, pid: (
        "idx_quantity",
        (pk, pid, r.value, r.low, r.high, r.system, r.unit_code, r.unit),
    ),
    NumberRow: lambda r, pk, pid: ("idx_number", (pk, pid, r.value, r.low, r.high)),
    UriRow: lambda r, pk, pid: ("idx_uri", (pk, pid, r.value)),
    CompositeRow: lambda r, pk, pid: ("idx_composite", (pk, pid, *composite_columns(r.parts))),
}
"""Row class -> (table, its column values: res_pk, pid, then the row's)."""


def composite_columns(parts: Sequence[IndexRow]) -> tuple[Any, ...]:
    """Up to three components, each as (system, value, low, high, number)."""
    values: list[Any] = []
    for index in range(3):
        values.extend(component_columns(parts[index]) if index < len(parts) else (None,) * 5)
    return tuple(values)


def component_columns(part: IndexRow) -> tuple[Any, ...]:
    """One component as (system, value, low, high, number)."""
    if isinstance(part, TokenRow):
        return (part.system, part.value, None, None, None)
    if isinstance(part, ReferenceRow):
        return (part.target_type, part.target_id, None, None, None)
    if isinstance(part, QuantityRow):
        return (part.system, part.unit_code, part.low, part.high, part.value)
    if isinstance(part, NumberRow):
        return (None, None, part.low, part.high, part.value)
    if isinstance(part, DateRow):
        return (None, None, part.low, part.high, None)
    if isinstance(part, StringRow):
        return (None, part.normalized, None, None, None)
    if isinstance(part, UriRow):
        return (None, part.value, None, None, None)
    raise TypeError(f"unsupported composite component {part!r}")
