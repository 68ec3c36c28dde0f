"""Which Slots a patient-side caller may put in an Appointment (issue 18), for the
scheduling rule (:mod:`fhir_server.workflows.scheduling`).

Slots and Schedules are directory data, except a Schedule whose actor is a Patient: that
one is the patient's (https://hl7.org/fhir/R4/schedule.html; the access rules,
``fhir_server.access``), and so are its Slots (the stores record them in the Schedule's
compartments: ``resources.compartments.slot_schedule``), which reads and searches then
hide from other patients; this check reads them without the caller's grants. A write
under patient-context grants (a patient, a caregiver for the patient it acts for) may
refer in ``Appointment.slot`` only to a Slot that

- exists and refers to no patient the caller does not act for,
- belongs to a Schedule that exists and refers to no such patient either,
- and, when that Schedule is a patient's own (a Patient actor), belongs to the
  appointment's patient.

A Slot that does not exist, and one the caller may not read or whose Schedule it may not
read, get the very same answer (:func:`unknown_slot`: 422, naming only the reference the
caller gave), so the answer tells nothing of resources the caller may not see. The access
layer leaves ``Appointment.slot`` references to this check (it answers other references
a patient may not read with 403).
"""

from __future__ import annotations

from typing import Any

from fhir_server.workflows._scheduling_values import participants, relative
from fhir_server.workflows.base import Change, Transaction
from resources.compartments import MEMBERSHIP_COMPARTMENT, patient_references
from resources.errors import FhirError
from resources.search.index.reference import parse_reference
from resources.search.query import AccessClause

_PATIENT = f"{MEMBERSHIP_COMPARTMENT}/"


def unknown_slot(given: str, index: int | None = None) -> FhirError:
    """The answer for a Slot that does not exist or that the caller may not book: the
    same status and text whichever it is (``given``: the reference as the caller wrote
    it)."""
    where = "Appointment.slot" if index is None else f"Appointment.slot[{index}]"
    return FhirError(
        422,
        "not-found",
        f"{given} does not exist, or is not a Slot this caller may book",
        (where,),
    )


def acting_for(change: Change) -> frozenset[str] | None:
    """The patients (``Patient/id``) a write's patient-context grants act for; None when
    a grant of the write is not limited to patients (staff, a backend service, the
    server itself)."""
    return patients_of(change.request.access)


def patients_of(access: AccessClause | None) -> frozenset[str] | None:
    """The patients the grants of ``access`` (a write's) are limited to (None: not
    limited)."""
    if access is None:
        return None
    patients: set[str] = set()
    for grant in access.grants:
        if grant.compartments is None:
            return None
        patients.update(grant.compartments)
    return frozenset(patients)


def given_slots(appointment: dict[str, Any] | None) -> dict[str, tuple[int, str]]:
    """Slot id -> (position, reference as written) of the appointment's Slot references
    (others are left to ``slot_ids``, which refuses them)."""
    found: dict[str, tuple[int, str]] = {}
    for index, reference in enumerate((appointment or {}).get("slot") or []):
        text = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(text, str):
            continue
        type_, id_, _, _ = parse_reference(text)
        if type_ == "Slot" and id_ and id_ not in found:
            found[id_] = (index, text)
    return found


async def check_bookable(
    tx: Transaction,
    appointment: dict[str, Any],
    previous: dict[str, Any] | None,
    patients: frozenset[str],
    claimed: list[str],
) -> None:
    """Refuse, as for a Slot that does not exist, a Slot of ``appointment`` that a caller
    acting for ``patients`` may not book: the Slots it claims (new holds) and those it
    refers to anew (not in ``previous``)."""
    given = given_slots(appointment)
    before = given_slots(previous)
    ids = [*claimed, *(id_ for id_ in given if id_ not in before and id_ not in claimed)]
    own = {relative(r) for r in participants(appointment) if relative(r).startswith(_PATIENT)}
    for id_ in ids:
        index, text = given.get(id_, (None, f"Slot/{id_}"))
        slot, _ = await tx.current("Slot", id_)
        schedule = await _schedule_of(tx, slot) if slot is not None else None
        if slot is None or schedule is None or not readable(slot, patients):
            raise unknown_slot(text, index)
        if not readable(schedule, patients):
            raise unknown_slot(text, index)
        actors = {
            relative(a["reference"])
            for a in schedule.get("actor") or []
            if isinstance(a, dict) and isinstance(a.get("reference"), str)
        }
        if {a for a in actors if a.startswith(_PATIENT)} - own:
            raise FhirError(
                422,
                "business-rule",
                f"{text} is a slot of a patient's own Schedule, not of this appointment's patient",
                ("Appointment.slot" if index is None else f"Appointment.slot[{index}]",),
            )


def readable(resource: dict[str, Any], patients: frozenset[str]) -> bool:
    """Directory data the caller may read: it refers to no patient but those it acts
    for (a Schedule of its own patient included)."""
    return set(patient_references(resource)) <= patients


async def _schedule_of(tx: Transaction, slot: dict[str, Any]) -> dict[str, Any] | None:
    reference = (slot.get("schedule") or {}).get("reference")
    if not isinstance(reference, str):
        return None
    type_, id_, _, _ = parse_reference(reference)
    if type_ != "Schedule" or not id_:
        return None
    schedule, _ = await tx.current("Schedule", id_)
    return schedule
