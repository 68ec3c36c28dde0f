"""Removing resources from the SQLite file for good: the current row, every version of
the history, the search index rows and the compartment memberships of each version.

Not a FHIR interaction: a delete (https://hl7.org/fhir/R4/http.html#delete) keeps the
history and writes a tombstone. Only the audit trail's retention uses it
(``fhir_server.audit.trail.AuditTrail.prune``: AuditEvents older than
``FHIR_SERVER_AUDIT_RETENTION``, R4 AuditEvent https://hl7.org/fhir/R4/auditevent.html),
so the API stays append-only for AuditEvents.

A resource whose current version holds the newest ``history.seq`` is left for a later
purge: the next write numbers its version ``max(seq) + 1``, and that number must stay
unused (the outbox's ``event`` rows and the cursors count on it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from fhir_server.storage.sqlite_index import INDEX_TABLES

_CHUNK = 500
"""Ids per statement (SQLite's default limit of bound parameters is 32,766)."""


def purge(conn: sqlite3.Connection, type_: str, ids: Sequence[str]) -> int:
    """Remove the resources ``type_/id`` of ``ids`` (inside the caller's transaction);
    the number removed."""
    newest = conn.execute("SELECT max(seq) FROM history").fetchone()[0] or 0
    removed = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        pks = [
            (pk,)
            for (pk,) in conn.execute(
                f"SELECT pk FROM resource WHERE type=? AND id IN ({marks}) AND seq < ?",
                [type_, *chunk, newest],
            )
        ]
        if not pks:
            continue
        conn.executemany(
            "DELETE FROM member WHERE seq IN (SELECT seq FROM history WHERE res_pk=?)", pks
        )
        for table in INDEX_TABLES:
            conn.executemany(f"DELETE FROM {table} WHERE res_pk=?", pks)
        conn.executemany("DELETE FROM history WHERE res_pk=?", pks)
        conn.executemany("DELETE FROM resource WHERE pk=?", pks)
        removed += len(pks)
    return removed
