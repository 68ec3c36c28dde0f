"""Appointment scheduling: booking holds Slots, no Slot is ever booked twice, a
cancellation frees them (issue 18).

Specs: R4 Appointment and its status workflow
(https://hl7.org/fhir/R4/appointment.html#statuses), Slot
(https://hl7.org/fhir/R4/slot.html), Schedule (https://hl7.org/fhir/R4/schedule.html),
the Argonaut Scheduling IG (http://fhir.org/guides/argonaut/scheduling/); the join link
of a virtual appointment is R5's ``Appointment.virtualService``
(https://hl7.org/fhir/R5/appointment-definitions.html#Appointment.virtualService) as the
cross-version extension :data:`VIRTUAL_SERVICE`.

State lives in the resources: an Appointment whose status is one of :data:`HOLDING`
holds the Slots it lists in ``Appointment.slot``; those Slots are ``busy`` (``pending``:
``busy-tentative``). The rule of Appointment, on every write of the API, of operations
(``$book``) and of transaction bundles:

- a new hold (a booking: status ``pending``/``booked``, or a Slot added to a booked
  appointment) takes only ``free`` Slots that exist, start in the future, lie inside
  their Schedule's ``planningHorizon`` (an active Schedule), do not overlap each other,
  and belong to a Schedule of one of the appointment's practitioners (or other
  non-patient participants); the appointment's ``start``/``end`` must be those of its
  Slots (set from them when absent); the Slots become ``busy`` in the same store
  transaction, each written only if it is still at the version read (compare-and-set):
  of concurrent bookings of one Slot exactly one commits, the others are evaluated again,
  see it busy and get ``409`` naming it; a patient-side caller books only Slots it may
  (:mod:`._scheduling_access`: one it may not read, or of another patient's Schedule, is
  answered as one that does not exist, ``422``);
- a released hold (``cancelled``, ``entered-in-error``, back to ``proposed``, deleted,
  or a Slot removed) frees the Slots that start in the future; ``fulfilled`` and
  ``noshow`` keep theirs; a Slot one appointment of a request frees may be taken by
  another of the same request, once (a reschedule into the same Slot);
- patient-side callers (a patient, a caregiver) book only for the patient they act for
  (the access rules: the appointment must be in that patient's compartment and refer to
  no other patient), may set only :data:`PATIENT_STATUSES`, cancel only future
  appointments, with a ``cancelationReason``, and not later than
  ``FHIR_SERVER_CANCEL_CUTOFF`` before the start; staff are not bound;
- when an appointment becomes ``booked`` and its ``appointmentType`` or a Slot's
  ``serviceType`` is virtual (:data:`VIRTUAL`), it gets a join link from
  ``FHIR_SERVER_TELEHEALTH_URL_TEMPLATE`` (``{appointment_id}`` replaced).

The rule of Slot refuses to make a Slot ``free`` (or delete it) while an appointment
holds it. On bulk import (an EHR's record) nothing is refused: the Slots of holding
appointments are marked busy when they are free.
"""

from __future__ import annotations

from typing import Any

from fhir_server.workflows._scheduling_access import (
    acting_for,
    check_bookable,
    given_slots,
    unknown_slot,
)
from fhir_server.workflows._scheduling_values import (
    HOLDING,
    SlotView,
    bookable_in,
    cutoff_of,
    has_code,
    holds,
    instant,
    now,
    participants,
    relative,
    settings_of,
    slot_ids,
)
from fhir_server.workflows.base import Change, Transaction, rule
from resources.errors import FhirError
from resources.fhir_datetime import format_instant
from resources.search.index.reference import parse_reference

BOOKING = frozenset({"pending", "booked"})
"""Statuses in which a new hold is a booking: checked (free, future, in the horizon)."""
PATIENT_STATUSES = frozenset({"proposed", "pending", "booked", "cancelled"})
"""What a patient or caregiver may set an appointment's status to."""
UNAVAILABLE = frozenset({"busy-unavailable", "entered-in-error"})

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
VIRTUAL = (ACT_CODE, "VR")
"""The code of a virtual encounter (``appointmentType`` or ``Slot.serviceType``)."""
VIRTUAL_SERVICE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService"
"""R5 ``Appointment.virtualService`` as a cross-version extension (``addressUrl``)."""


# -- the Appointment rule ------------------------------------------------------------------


@rule("Appointment")
async def appointment_rule(tx: Transaction, change: Change) -> None:
    new = change.resource
    old = await tx.previous(change)
    if new is None and old is None:
        return
    old_slots = slot_ids(old) if holds(old) else []
    new_slots = slot_ids(new) if holds(new) else []
    released = [s for s in old_slots if s not in new_slots]
    claimed = [s for s in new_slots if s not in old_slots]
    if tx.origin == "import":
        await _import(tx, new_slots, new)
        return
    patients = acting_for(change)
    if patients is not None and new is not None:
        await check_bookable(tx, new, old, patients, claimed)
    if not tx.caller.staff:
        cancels = holds(old) and not holds(new)
        _check_patient_write(tx, old, new, bool(released) or cancels)
    if released:
        await _release(tx, released)
    if new is None or not holds(new):
        return
    becomes_holding = not holds(old)
    moved = old is not None and any(new.get(k) != old.get(k) for k in ("start", "end"))
    slots: list[SlotView] = []
    if claimed or becomes_holding or (moved and new_slots):
        slots = await _claim(tx, change, new, new_slots, claimed)
    if old is not None and old.get("status") == "pending" and new.get("status") != "pending":
        await _confirm(tx, [s for s in new_slots if s not in claimed])
    if new.get("status") == "booked" and (old is None or old.get("status") != "booked"):
        await _join_link(tx, change, slots or await _load(tx, new_slots))


def _check_patient_write(
    tx: Transaction, old: dict[str, Any] | None, new: dict[str, Any] | None, releases: bool
) -> None:
    """What a patient or caregiver may do to an appointment (their own: the access rules
    already hold the appointment to the patient's compartment)."""
    status = (new or {}).get("status")
    if new is not None and status != (old or {}).get("status") and status not in PATIENT_STATUSES:
        raise FhirError(
            403,
            "forbidden",
            f"A patient or caregiver may not set an appointment's status to {status!r}: it may"
            f" only be {', '.join(sorted(PATIENT_STATUSES))}; staff record the rest",
            ("Appointment.status",),
        )
    if (
        new is not None
        and status == "cancelled"
        and holds(old)
        and not new.get("cancelationReason")
    ):
        raise FhirError(
            422,
            "required",
            "Cancelling an appointment needs a cancelationReason",
            ("Appointment.cancelationReason",),
        )
    if not releases or old is None:
        return
    start = instant(old.get("start"), "Appointment.start") if old.get("start") else None
    moment = now()
    if start is None or start <= moment:
        raise FhirError(
            422,
            "business-rule",
            "A patient or caregiver may cancel or move only a future appointment; this one"
            " has started or is past",
            ("Appointment.start",),
        )
    cutoff = cutoff_of(settings_of(tx))
    if moment > start - cutoff:
        raise FhirError(
            422,
            "business-rule",
            f"Too late to cancel or move this appointment online: the cancellation cutoff"
            f" (FHIR_SERVER_CANCEL_CUTOFF) is {settings_of(tx).cancel_cutoff} before the start"
            f" ({old.get('start')}); please call the clinic",
            ("Appointment.start",),
        )


async def _release(tx: Transaction, ids: list[str]) -> None:
    """Free the held Slots that start in the future (not one that another appointment of
    the request took over: :func:`_take_over`)."""
    moment = now()
    handed: set[str] = tx.state.setdefault("scheduling.handed", set())
    freed: dict[str, Any] = tx.state.setdefault("scheduling.freed", {})
    for id_ in ids:
        if id_ in handed:
            continue
        slot, version = await tx.current("Slot", id_)
        if slot is None or slot.get("status") not in ("busy", "busy-tentative"):
            continue
        if instant(slot.get("start"), "Slot.start") <= moment:
            continue  # a past slot stays as it was
        _touch(tx, id_)
        tx.update({**slot, "status": "free"}, if_match=version)
        freed[id_] = tx.added[-1]


async def _take_over(tx: Transaction, change: Change, slot: SlotView) -> bool:
    """Whether ``slot``, held until now, is freed by another appointment of this request
    (a reschedule into the Slot the cancelled appointment held): the claim takes it over,
    once, and its write replaces the release's."""
    handed: set[str] = tx.state.setdefault("scheduling.handed", set())
    freed: dict[str, Any] = tx.state.setdefault("scheduling.freed", {})
    if slot.id in handed:
        return False
    if slot.id in freed:  # released earlier in the request
        tx.added.remove(freed.pop(slot.id))
        handed.add(slot.id)
        return True
    if slot.content.get("status") not in ("busy", "busy-tentative"):
        return False
    for other in tx.changes:  # released later in the request (a transaction's PUT)
        if other is change or other.type != "Appointment":
            continue
        before = await tx.previous(other)
        if holds(before) and slot.id in given_slots(before):
            after = other.resource
            if not (holds(after) and slot.id in given_slots(after)):
                _touch(tx, slot.id)
                handed.add(slot.id)
                return True
    return False


def _touch(tx: Transaction, id_: str) -> None:
    """One write of a Slot per request: a Slot taken or freed twice is refused."""
    touched: set[str] = tx.state.setdefault("scheduling.slots", set())
    if id_ in touched:
        raise FhirError(
            409,
            "conflict",
            f"Slot/{id_} is booked or freed twice in one request",
            ("Appointment.slot",),
        )
    touched.add(id_)


async def _load(
    tx: Transaction, ids: list[str], appointment: dict[str, Any] | None = None
) -> list[SlotView]:
    slots: list[SlotView] = []
    given = given_slots(appointment)
    for index, id_ in enumerate(ids):
        content, version = await tx.current("Slot", id_)
        if content is None:
            at, text = given.get(id_, (index, f"Slot/{id_}"))
            raise unknown_slot(text, at)
        slots.append(
            SlotView(
                id_,
                content,
                version,
                instant(content.get("start"), "Slot.start"),
                instant(content.get("end"), "Slot.end"),
            )
        )
    return slots


async def _claim(
    tx: Transaction,
    change: Change,
    appointment: dict[str, Any],
    ids: list[str],
    claimed: list[str],
) -> list[SlotView]:
    """Check and take the Slots ``claimed`` (new holds); check the appointment against
    all its Slots ``ids``."""
    if not ids:
        return []
    slots = await _load(tx, ids, appointment)
    booking = appointment.get("status") in BOOKING
    moment = now()
    schedules: dict[str, dict[str, Any]] = {}
    for slot in slots:
        if slot.id not in claimed:
            continue
        taken_over = await _take_over(tx, change, slot)
        if not taken_over:
            _touch(tx, slot.id)
        status = "free" if taken_over else slot.content.get("status")
        if status != "free":
            code, why = (422, "business-rule") if status in UNAVAILABLE else (409, "conflict")
            raise FhirError(
                code,
                why,
                f"{slot.reference} is not free (its status is {status!r})",
                ("Appointment.slot",),
            )
        if booking and slot.start <= moment:
            raise FhirError(
                422,
                "business-rule",
                f"{slot.reference} starts in the past ({slot.content.get('start')})",
                ("Appointment.slot",),
            )
        schedule = await _schedule(tx, slot, booking)
        schedules[slot.id] = schedule
        busy = "busy-tentative" if appointment.get("status") == "pending" else "busy"
        tx.update({**slot.content, "status": busy}, if_match=slot.version)
    _check_overlaps(slots)
    updated = _with_times(appointment, slots)
    updated = _with_actors(updated, slots, schedules)
    if updated is not appointment:
        change.set(updated)
    return slots


async def _schedule(tx: Transaction, slot: SlotView, booking: bool) -> dict[str, Any]:
    reference = (slot.content.get("schedule") or {}).get("reference", "")
    type_, id_, _, _ = parse_reference(reference)
    schedule = None
    if type_ == "Schedule" and id_:
        schedule, _ = await tx.current("Schedule", id_)
    if schedule is None:
        raise FhirError(
            422,
            "business-rule",
            f"{slot.reference} belongs to no known Schedule ({reference!r})",
            ("Appointment.slot",),
        )
    if not booking:
        return schedule
    if schedule.get("active") is False:
        raise FhirError(
            422,
            "business-rule",
            f"{slot.reference} belongs to Schedule/{id_}, which is not active",
            ("Appointment.slot",),
        )
    if not bookable_in(schedule, slot.start, slot.end):
        horizon = schedule.get("planningHorizon") or {}
        raise FhirError(
            422,
            "business-rule",
            f"{slot.reference} is outside the planning horizon of Schedule/{id_}"
            f" ({horizon.get('start', '…')} to {horizon.get('end', '…')})",
            ("Appointment.slot",),
        )
    return schedule


def _check_overlaps(slots: list[SlotView]) -> None:
    ordered = sorted(slots, key=lambda s: s.start)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.start < before.end:
            raise FhirError(
                422,
                "business-rule",
                f"{before.reference} and {after.reference} overlap: an appointment's slots"
                " follow each other",
                ("Appointment.slot",),
            )


def _with_times(appointment: dict[str, Any], slots: list[SlotView]) -> dict[str, Any]:
    """The appointment with the start and end of its slots (422 when it says otherwise)."""
    first = min(slots, key=lambda s: s.start)
    last = max(slots, key=lambda s: s.end)
    updated = appointment
    for name, slot, expected in (("start", first, first.start), ("end", last, last.end)):
        given = appointment.get(name)
        if given is None:
            updated = {**updated, name: slot.content[name]}
        elif instant(given, f"Appointment.{name}") != expected:
            raise FhirError(
                422,
                "business-rule",
                f"Appointment.{name} ({given}) disagrees with its slots: {slot.reference}"
                f" {'starts' if name == 'start' else 'ends'} at {format_instant(expected)}",
                (f"Appointment.{name}",),
            )
    return updated


_ACTOR_TYPES = ("Practitioner", "PractitionerRole", "Location", "HealthcareService", "Device")


def _with_actors(
    appointment: dict[str, Any], slots: list[SlotView], schedules: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Each booked Slot's Schedule must be of one of the appointment's non-patient
    participants; with none, the Schedules' actors become its participants."""
    own = {relative(r) for r in participants(appointment) if relative(r).startswith(_ACTOR_TYPES)}
    added: list[dict[str, Any]] = []
    for slot in slots:
        schedule = schedules.get(slot.id)
        if schedule is None:
            continue
        actors = [
            relative(a["reference"])
            for a in schedule.get("actor") or []
            if isinstance(a, dict) and isinstance(a.get("reference"), str)
        ]
        if own and not own & set(actors):
            raise FhirError(
                422,
                "business-rule",
                f"{slot.reference} is a slot of Schedule/{schedule.get('id')} of"
                f" {', '.join(actors) or 'nobody'}, not of the appointment's"
                f" {', '.join(sorted(own))}",
                ("Appointment.slot",),
            )
        if not own:
            for actor in actors:
                if actor.startswith(_ACTOR_TYPES) and all(
                    a["actor"]["reference"] != actor for a in added
                ):
                    added.append(
                        {
                            "actor": {"reference": actor},
                            "required": "required",
                            "status": "accepted",
                        }
                    )
    if not added:
        return appointment
    return {**appointment, "participant": [*(appointment.get("participant") or []), *added]}


async def _confirm(tx: Transaction, ids: list[str]) -> None:
    """A pending appointment confirmed: its tentative Slots become busy."""
    for id_ in ids:
        slot, version = await tx.current("Slot", id_)
        if slot is not None and slot.get("status") == "busy-tentative":
            _touch(tx, id_)
            tx.update({**slot, "status": "busy"}, if_match=version)


async def _join_link(tx: Transaction, change: Change, slots: list[SlotView]) -> None:
    """A booked virtual appointment's join link (see the module)."""
    template = getattr(settings_of(tx), "telehealth_url_template", None)
    appointment = change.resource
    if not template or appointment is None:
        return
    virtual = has_code(appointment.get("appointmentType"), VIRTUAL) or any(
        has_code(s.content.get("serviceType"), VIRTUAL) for s in slots
    )
    extensions = appointment.get("extension") or []
    if not virtual or any(e.get("url") == VIRTUAL_SERVICE for e in extensions):
        return
    link = {
        "url": VIRTUAL_SERVICE,
        "extension": [
            {"url": "addressUrl", "valueUrl": template.replace("{appointment_id}", change.id)}
        ],
    }
    change.set({**appointment, "extension": [*extensions, link]})


async def _import(tx: Transaction, ids: list[str], appointment: dict[str, Any] | None) -> None:
    """An EHR's record: the free Slots of a holding appointment become busy."""
    if appointment is None:
        return
    busy = "busy-tentative" if appointment.get("status") == "pending" else "busy"
    touched: set[str] = tx.state.setdefault("scheduling.slots", set())
    for id_ in ids:
        if id_ in touched:
            continue
        slot, version = await tx.current("Slot", id_)
        if slot is not None and slot.get("status") == "free":
            touched.add(id_)
            tx.update({**slot, "status": busy}, if_match=version)


# -- the Slot rule -------------------------------------------------------------------------


@rule("Slot")
async def slot_rule(tx: Transaction, change: Change) -> None:
    """A Slot an appointment holds stays taken: it is freed by cancelling the
    appointment, not by writing the Slot."""
    if tx.origin == "import":
        return
    new = change.resource
    if (new is not None and new.get("status") != "free") or change.request.must_not_exist:
        return  # a new Slot is nobody's yet
    old = await tx.previous(change)
    if old is None or old.get("status") == "free":
        return
    query = tx.query(
        "Appointment",
        [("slot", f"Slot/{change.id}"), ("status", ",".join(sorted(HOLDING)))],
    )
    holders = await tx.search(query, 1)
    if holders:
        raise FhirError(
            409,
            "conflict",
            f"Slot/{change.id} is held by Appointment/{holders[0].id}: cancel the appointment"
            " to free it",
            ("Slot.status",),
        )
