"""The Patient compartment memberships of every stored version (the ``member`` table of
``sqlite_access``): written with each version, and recorded for the versions of earlier
schemas by the migrations (``sqlite_schema.migrate``). Memberships decide what a
patient-context token sees (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html;
``resources.compartments.memberships``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection

from fhir_server.storage.base import StoredVersion, WriteRequest
from resources import fhir_json
from resources.compartments import (
    SCHEDULE,
    SLOT,
    SLOT_SCHEDULE,
    memberships,
    referring_types,
    slot_schedule,
)
from resources.search.extract import indexer_for


def record_members(
    conn: sqlite3.Connection,
    req: WriteRequest,
    seq: int,
    previous: StoredVersion | None,
    flush: Callable[[], None] | None = None,
) -> None:
    """The version's Patient compartments; a tombstone stays in its last version's. A
    Slot is also in its Schedule's (``resources.compartments.slot_schedule``), and a
    Schedule whose compartments change takes its Slots along (``flush``: writes the index
    rows of the transaction's earlier writes, so that its Slots are found)."""
    if req.method == "delete" and previous is not None:
        conn.execute(
            "INSERT INTO member (compartment, seq) SELECT compartment, ? FROM member WHERE seq = ?",
            (seq, previous.seq),
        )
        return
    if req.index is None:
        return
    if req.index.compartments:
        compartments = req.index.compartments
        if len(compartments) == 1:
            conn.execute(_INSERT_MEMBER, (compartments[0], seq))
        else:
            conn.executemany(_INSERT_MEMBER, [(c, seq) for c in compartments])
    if req.type == SLOT:
        schedule = slot_schedule(req.index.rows)
        if schedule is not None:
            # one indexed statement in the write transaction: the Schedule's current
            # version (or tombstone) and its member rows
            conn.execute(_INSERT_SCHEDULE_MEMBERS, (seq, SCHEDULE, schedule))
    elif req.type == SCHEDULE:
        before = (
            set()
            if previous is None
            else {c for (c,) in conn.execute(_MEMBERS_OF, (previous.seq,))}
        )
        after = set(req.index.compartments)
        if before != after:
            if flush is not None:
                flush()
            follow_schedule(conn, req.id, after, after - before, before - after)


_INSERT_MEMBER = "INSERT OR IGNORE INTO member (compartment, seq) VALUES (?, ?)"
_MEMBERS_OF = "SELECT compartment FROM member WHERE seq = ?"
_INSERT_SCHEDULE_MEMBERS = (
    "INSERT OR IGNORE INTO member (compartment, seq) SELECT m.compartment, ?"
    " FROM resource r JOIN member m ON m.seq = r.seq WHERE r.type = ? AND r.id = ?"
)


def follow_schedule(
    conn: sqlite3.Connection,
    schedule: str,
    members: Collection[str],
    added: Collection[str],
    removed: Collection[str],
) -> int:
    """The Slots that name Schedule ``schedule`` (their current index rows) take its
    compartments ``members``: their current versions are in those and in their own
    (``memberships`` of their content), their earlier versions gain ``added``. Returns
    how many Slots there were. A Slot deleted already is not found (it has no index
    rows): its versions keep what they had."""
    slots = conn.execute(
        "SELECT r.pk, r.id, r.seq, r.content FROM idx_reference x"
        " JOIN search_param p ON p.pid = x.pid AND p.type = ? AND p.code = ?"
        " JOIN resource r ON r.pk = x.res_pk"
        " WHERE x.target_type = ? AND x.target_id = ? AND r.method != 'delete'",
        (SLOT, SLOT_SCHEDULE, SCHEDULE, schedule),
    ).fetchall()
    for pk, id_, seq, content in dict.fromkeys(slots):
        if removed:
            own = memberships(SLOT, id_, (), fhir_json.loads(content)) if content else ()
            conn.execute("DELETE FROM member WHERE seq = ?", (seq,))
            conn.executemany(_INSERT_MEMBER, [(c, seq) for c in {*own, *members}])
        for compartment in added:
            conn.execute(
                "INSERT OR IGNORE INTO member (compartment, seq)"
                " SELECT ?, seq FROM history WHERE res_pk = ?",
                (compartment, pk),
            )
    return len(slots)


def backfill_slot_members(conn: sqlite3.Connection) -> None:
    """Schema 7 to 8: the Slots of Schedules that are in a patient's compartment (a
    Patient actor) join it, every version of theirs (``follow_schedule``); earlier
    schemas recorded a Slot's own references only."""
    schedules: dict[str, set[str]] = {}
    for id_, compartment in conn.execute(
        "SELECT r.id, m.compartment FROM resource r JOIN member m ON m.seq = r.seq"
        " WHERE r.type = ?",
        (SCHEDULE,),
    ):
        schedules.setdefault(id_, set()).add(compartment)
    for id_, members in schedules.items():
        follow_schedule(conn, id_, members, members, ())


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
