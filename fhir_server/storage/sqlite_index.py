"""Search index tables of the SQLite store, written in the same transaction as the
resource (https://hl7.org/fhir/R4/search.html).

One table per parameter type, each row keyed by the resource's ``pk`` and an interned
parameter id (``search_param.pid`` for a (resource type, code) pair), so the indexes that
serve searches stay narrow. Only current versions are indexed: an update replaces the
rows, a delete removes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

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
CREATE INDEX IF NOT EXISTS idx_string_res ON idx_string (res_pk);
CREATE TABLE IF NOT EXISTS idx_token (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, system TEXT, value TEXT, text TEXT,
    type_system TEXT, type_code TEXT
);
CREATE INDEX IF NOT EXISTS idx_token_match ON idx_token (pid, value, system);
CREATE INDEX IF NOT EXISTS idx_token_res ON idx_token (res_pk);
CREATE TABLE IF NOT EXISTS idx_date (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, low TEXT NOT NULL, high TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (pid, low);
CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (pid, high);
CREATE INDEX IF NOT EXISTS idx_date_res ON idx_date (res_pk);
CREATE TABLE IF NOT EXISTS idx_number (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL,
    high REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_number_match ON idx_number (pid, value);
CREATE INDEX IF NOT EXISTS idx_number_res ON idx_number (res_pk);
CREATE TABLE IF NOT EXISTS idx_quantity (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL,
    high REAL NOT NULL, system TEXT, code TEXT, unit TEXT
);
CREATE INDEX IF NOT EXISTS idx_quantity_match ON idx_quantity (pid, code, value);
CREATE INDEX IF NOT EXISTS idx_quantity_res ON idx_quantity (res_pk);
CREATE TABLE IF NOT EXISTS idx_reference (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, target_type TEXT, target_id TEXT,
    url TEXT, version TEXT, ident_system TEXT, ident_value TEXT
);
CREATE INDEX IF NOT EXISTS idx_reference_match ON idx_reference (pid, target_id, target_type);
CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (target_id, target_type);
CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (pid, url);
CREATE INDEX IF NOT EXISTS idx_reference_res ON idx_reference (res_pk);
CREATE TABLE IF NOT EXISTS idx_uri (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_uri_match ON idx_uri (pid, value);
CREATE INDEX IF NOT EXISTS idx_uri_res ON idx_uri (res_pk);
CREATE TABLE IF NOT EXISTS idx_composite (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL,
    s1 TEXT, v1 TEXT, lo1, hi1, n1,
    s2 TEXT, v2 TEXT, lo2, hi2, n2,
    s3 TEXT, v3 TEXT, lo3, hi3, n3
);
CREATE INDEX IF NOT EXISTS idx_composite_match ON idx_composite (pid, v1, s1);
CREATE INDEX IF NOT EXISTS idx_composite_res ON idx_composite (res_pk);
CREATE TABLE IF NOT EXISTS idx_sort (
    res_pk INTEGER NOT NULL, pid INTEGER NOT NULL, low NOT NULL, high NOT NULL,
    PRIMARY KEY (res_pk, pid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_sort_low ON idx_sort (pid, low);
CREATE INDEX IF NOT EXISTS idx_sort_high ON idx_sort (pid, high);
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

    def forget(self) -> None:
        self._ids = {}

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


def clear(conn: sqlite3.Connection, pk: int) -> None:
    for table in INDEX_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE res_pk=?", (pk,))


def write(
    conn: sqlite3.Connection,
    ids: ParamIds,
    type_: str,
    pk: int,
    rows: Iterable[IndexRow],
    sort_keys: Iterable[SortKey],
) -> None:
    """Insert the index rows and sort keys of one resource."""
    batches: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        table, values = _columns(row)
        pid = ids.ensure(conn, type_, row.code)
        batches.setdefault(table, []).append((pk, pid, *values))
    for key in sort_keys:
        pid = ids.ensure(conn, type_, key.code)
        batches.setdefault("idx_sort", []).append((pk, pid, key.low, key.high))
    for table, batch in batches.items():
        marks = ",".join("?" * len(batch[0]))
        verb = "INSERT OR REPLACE" if table == "idx_sort" else "INSERT"
        conn.executemany(f"{verb} INTO {table} VALUES ({marks})", batch)


def _columns(row: IndexRow) -> tuple[str, tuple[Any, ...]]:
    if isinstance(row, TokenRow):
        return "idx_token", (
            row.system,
            row.value,
            row.text,
            row.type_system,
            row.type_code,
        )
    if isinstance(row, StringRow):
        return "idx_string", (row.normalized, row.exact)
    if isinstance(row, DateRow):
        return "idx_date", (row.low, row.high)
    if isinstance(row, ReferenceRow):
        return "idx_reference", (
            row.target_type,
            row.target_id,
            row.url,
            row.version,
            row.identifier_system,
            row.identifier_value,
        )
    if isinstance(row, QuantityRow):
        return "idx_quantity", (
            row.value,
            row.low,
            row.high,
            row.system,
            row.unit_code,
            row.unit,
        )
    if isinstance(row, NumberRow):
        return "idx_number", (row.value, row.low, row.high)
    if isinstance(row, UriRow):
        return "idx_uri", (row.value,)
    if isinstance(row, CompositeRow):
        return "idx_composite", composite_columns(row.parts)
    raise TypeError(f"unknown index row {row!r}")


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
