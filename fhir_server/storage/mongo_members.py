"""The Patient compartment memberships (``m``) of the MongoDB store's versions that depend
on another resource: a Slot is also in its Schedule's compartments (a Slot of a patient's
own Schedule is that patient's data, ``resources.compartments.slot_schedule``), kept
inside the write's transaction, like ``sqlite_members`` does for the SQLite store.

A Slot write takes its Schedule's ``m`` from the Schedule's document (current version or
tombstone). The booking path (``$book`` makes a Slot busy: an update that keeps its
Schedule) reads nothing more when the version it replaces names the same Schedule and is
in no compartment: the Schedule is in none either, or the Slot would have followed it.
A Schedule write that changes its compartments updates the Slots that name it: their
current versions (resource and history documents) get their own compartments and the
Schedule's, their earlier versions gain the added ones.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fhir_server.storage.base import WriteRequest
from fhir_server.storage.mongo_access import MEMBERS
from fhir_server.storage.mongo_index import REFS
from resources import fhir_json
from resources.compartments import SCHEDULE, SLOT, SLOT_SCHEDULE, memberships, slot_schedule

SLOT_PROJECTION = {REFS: 1}
"""What a Slot write also reads of the version it replaces (its Schedule reference)."""


def projection_for(type_: str) -> dict[str, int]:
    return SLOT_PROJECTION if type_ == SLOT else {}


async def members_of(
    resources: Any, req: WriteRequest, previous: dict[str, Any] | None, session: Any
) -> list[str]:
    """The compartments of the version ``req`` writes (``previous``: the resource
    document it replaces, with ``m`` and, for a Slot, its references); a tombstone keeps
    the last version's."""
    if req.method == "delete":
        return list((previous or {}).get(MEMBERS) or [])
    if req.index is None:
        return []
    own = list(req.index.compartments)
    if req.type != SLOT:
        return own
    schedule = slot_schedule(req.index.rows)
    if schedule is None:
        return own
    if (
        previous is not None
        and not previous.get(MEMBERS)
        and previous.get("method") != "delete"
        and _schedule_of(previous) == schedule
    ):
        return own  # same Schedule, in no compartment (or this Slot would be in it)
    found = await resources.find_one(
        {"_id": f"{SCHEDULE}/{schedule}"}, {MEMBERS: 1}, session=session
    )
    return list(dict.fromkeys([*own, *((found or {}).get(MEMBERS) or [])]))


def _schedule_of(doc: dict[str, Any]) -> str | None:
    refs = (doc.get("i") or {}).get("ref") or []
    for ref in refs:
        if ref.get("p") == SLOT_SCHEDULE and ref.get("t") == SCHEDULE and ref.get("id"):
            return str(ref["id"])
    return None


async def after_write(
    resources: Any,
    history: Any,
    req: WriteRequest,
    previous: dict[str, Any] | None,
    members: list[str],
    session: Any,
) -> None:
    """A Schedule whose compartments changed takes its Slots along (in ``session``)."""
    if req.type != SCHEDULE or req.method == "delete":
        return
    before = set((previous or {}).get(MEMBERS) or [])
    after = set(members)
    if before != after:
        await follow_schedule(
            resources, history, req.id, after, after - before, before - after, session
        )


async def follow_schedule(
    resources: Any,
    history: Any,
    schedule: str,
    members: Collection[str],
    added: Collection[str],
    removed: Collection[str],
    session: Any = None,
) -> int:
    """The live Slots that name Schedule ``schedule`` take its compartments ``members``
    (see the module); returns how many there were. One document at a time: the in-memory
    stand-in has no ``update_many`` in a transaction, and a Schedule's patients change
    rarely."""
    where = {
        "type": SLOT,
        "method": {"$ne": "delete"},
        REFS: {"$elemMatch": {"p": SLOT_SCHEDULE, "t": SCHEDULE, "id": schedule}},
    }
    fields = {"id": 1, "seq": 1, "content": 1, MEMBERS: 1}
    slots = await resources.find(where, fields, session=session).to_list(None)
    for slot in slots:
        had = list(slot.get(MEMBERS) or [])
        current = list(dict.fromkeys([*had, *added]))
        if removed:
            content = slot.get("content")
            resource = fhir_json.loads(bytes(content)) if content else None
            own = memberships(SLOT, slot["id"], (), resource) if resource else ()
            current = list(dict.fromkeys([*own, *members]))
        if current != had:
            await resources.update_one(
                {"_id": slot["_id"]}, {"$set": {MEMBERS: current}}, session=session
            )
        versions = await history.find(
            {"type": SLOT, "id": slot["id"]}, {"seq": 1, MEMBERS: 1}, session=session
        ).to_list(None)
        for version in versions:
            was = list(version.get(MEMBERS) or [])
            now = current if version.get("seq") == slot.get("seq") else [*was]
            now = list(dict.fromkeys([*now, *added]))
            if now != was:
                await history.update_one(
                    {"_id": version["_id"]}, {"$set": {MEMBERS: now}}, session=session
                )
    return len(slots)


async def backfill_slot_members(resources: Any, history: Any) -> None:
    """Schema 5: the Slots of Schedules in a patient's compartment join it, every version
    of theirs; idempotent (it adds what is missing)."""
    schedules = resources.find({"type": SCHEDULE, MEMBERS: {"$ne": []}}, {"id": 1, MEMBERS: 1})
    for schedule in await schedules.to_list(None):
        members = list(schedule.get(MEMBERS) or [])
        if members:
            await follow_schedule(resources, history, schedule["id"], members, members, ())
