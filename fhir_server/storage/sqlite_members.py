"""The Patient compartment memberships of every stored version (the ``member`` table of
``sqlite_access``): written with each version, and recorded for the versions of earlier
schemas by the migrations (``SQLiteStore._migrate``). Memberships decide what a
patient-context token sees (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html;
``resources.compartments.memberships``)."""

from __future__ import annotations

import sqlite3

from fhir_server.storage.base import StoredVersion, WriteRequest
from resources import fhir_json
from resources.compartments import memberships, referring_types
from resources.search.extract import indexer_for


def record_members(
    conn: sqlite3.Connection, req: WriteRequest, seq: int, previous: StoredVersion | None
) -> None:
    """The version's Patient compartments; a tombstone stays in its last version's."""
    if req.method == "delete" and previous is not None:
        conn.execute(
            "INSERT INTO member (compartment, seq) SELECT compartment, ? FROM member WHERE seq = ?",
            (seq, previous.seq),
        )
    elif req.index is not None and req.index.compartments:
        compartments = req.index.compartments
        if len(compartments) == 1:
            conn.execute(_INSERT_MEMBER, (compartments[0], seq))
        else:
            conn.executemany(_INSERT_MEMBER, [(c, seq) for c in compartments])


_INSERT_MEMBER = "INSERT OR IGNORE INTO member (compartment, seq) VALUES (?, ?)"


def backfill_referring_members(conn: sqlite3.Connection) -> None:
    """Schema 5 to 6: record the memberships of every version of the types outside the
    R4 Patient compartment (Task, PaymentReconciliation, ...), which earlier schemas
    left without any: the patients each refers to (``memberships``); a tombstone takes
    its previous version's."""
    types = sorted(referring_types())
    rows = conn.execute(
        "SELECT h.seq, h.res_pk, h.type, h.id, h.method, coalesce(h.content, r.content)"
        " FROM history h LEFT JOIN resource r ON r.seq = h.seq"
        f" WHERE h.type IN ({','.join('?' * len(types))}) ORDER BY h.seq",
        types,
    )
    last: dict[int, tuple[str, ...]] = {}
    for seq, res_pk, type_, id_, method, content in rows:
        if method == "delete" or content is None:
            found = last.get(res_pk, ())
        else:
            found = memberships(type_, id_, (), fhir_json.loads(content))
        last[res_pk] = found
        conn.executemany(_INSERT_MEMBER, [(c, seq) for c in found])


def backfill_members(conn: sqlite3.Connection) -> None:
    """Schema 1 to 2: record the compartments of every stored version (from its content;
    a tombstone takes its previous version's)."""
    last: dict[int, tuple[str, ...]] = {}
    rows = conn.execute(
        "SELECT seq, res_pk, type, id, content FROM history ORDER BY seq"
    ).fetchall()
    for seq, res_pk, type_, id_, content in rows:
        if content is None:
            found = last.get(res_pk, ())
        else:
            resource = fhir_json.loads(content)
            index_rows, _ = indexer_for(type_).index(resource)
            found = memberships(type_, id_, index_rows, resource)
        last[res_pk] = found
        conn.executemany(
            "INSERT OR IGNORE INTO member (compartment, seq) VALUES (?, ?)",
            [(c, seq) for c in found],
        )
