"""``Appointment/$book``: book a proposed appointment (Argonaut Scheduling IG,
http://fhir.org/guides/argonaut/scheduling/OperationDefinition-appointment-book.html;
issue 18).

``POST [base]/Appointment/$book`` with a ``Parameters`` body whose ``appt-resource``
(Argonaut's name; ``appointment`` is accepted too) is the Appointment to book: status
``proposed``, ``pending`` or ``booked``, its ``slot`` references and participants (as
``$find`` proposes them). The Appointment is created ``booked`` (participants that
``needs-action`` become ``accepted``; ``start``/``end`` taken from the Slots when absent)
and answered ``201`` with ``Location``; its Slots become ``busy`` in the same store
transaction. Everything else is the scheduling rule's
(:mod:`fhir_server.workflows.scheduling`): no double booking (``409`` naming the Slot),
past, closed, unknown or foreign Slots refused, patients book only for themselves. It is a
create of an Appointment through the caller's store: the token needs ``create`` on
Appointment (``patient/Appointment.c``).
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.access import compile_access, write_access
from fhir_server.interactions.write import (
    check_valid,
    create_request,
    describe,
    write_response,
)
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
    policy_of,
)
from fhir_server.storage.base import AlreadyExists
from fhir_server.workflows._scheduling_access import (
    given_slots,
    patients_of,
    readable,
    unknown_slot,
)
from fhir_server.workflows.scheduling import slot_ids
from resources import fhir_json
from resources.errors import FhirError, invalid

_NAMES = ("appt-resource", "appointment")
_BOOKABLE = ("proposed", "pending", "booked")


def _appointment(call: Invocation) -> dict[str, Any]:
    for index, parameter in enumerate((call.body or {}).get("parameter", [])):
        if isinstance(parameter, dict) and parameter.get("name") in _NAMES:
            resource = parameter.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") != "Appointment":
                raise invalid(
                    f"{parameter['name']} must be an Appointment resource",
                    f"Parameters.parameter[{index}].resource",
                )
            return copy.deepcopy(resource)
    raise invalid(
        "$book needs a Parameters body with the Appointment as 'appt-resource'",
        "Parameters.parameter",
    )


def _unguarded(store: Any) -> Any:
    """The store under the access checks and the rules: the Slots' times are read
    there (directory data; the caller needs no Slot scope to book)."""
    while hasattr(store, "inner"):
        store = store.inner
    return store


def _acting_for(ctx: Context) -> frozenset[str] | None:
    """The patients a patient-side caller books for (None: staff, or no authorization)."""
    policy = policy_of(ctx)
    if policy is None:
        return None
    return patients_of(write_access(compile_access(policy, "c"), "Appointment", "create"))


async def _times(ctx: Context, appointment: dict[str, Any]) -> None:
    """``start``/``end`` from the Slots when the Appointment leaves them out (the rule
    checks them against the Slots in any case)."""
    if appointment.get("start") and appointment.get("end"):
        return
    store = _unguarded(ctx.store)
    starts, ends = [], []
    given = given_slots(appointment)
    patients = _acting_for(ctx)
    for id_ in slot_ids(appointment):
        stored = await store.read("Slot", id_)
        slot = None
        if stored is not None and not stored.deleted and stored.content is not None:
            slot = fhir_json.loads(stored.content)
        if slot is None or (patients is not None and not readable(slot, patients)):
            raise unknown_slot(given[id_][1], given[id_][0])  # as the rule answers it
        starts.append(slot.get("start"))
        ends.append(slot.get("end"))
    if starts and all(isinstance(s, str) for s in starts + ends):
        appointment.setdefault("start", min(starts))
        appointment.setdefault("end", max(ends))


async def handle(ctx: Context, call: Invocation) -> FhirResponse:
    appointment = _appointment(call)
    status = appointment.get("status")
    if status not in _BOOKABLE:
        raise FhirError(
            422,
            "business-rule",
            f"$book books a proposed or pending appointment, not one that is {status!r}",
            ("Appointment.status",),
        )
    if not appointment.get("slot"):
        raise invalid("$book needs the Appointment's slot", "Appointment.slot")
    appointment.pop("id", None)
    appointment.pop("meta", None)
    appointment["status"] = "booked"
    for participant in appointment.get("participant") or []:
        if isinstance(participant, dict) and participant.get("status") in (None, "needs-action"):
            participant["status"] = "accepted"
    await _times(ctx, appointment)
    check_valid(appointment)
    for _ in range(3):
        try:
            result = await ctx.store.write(create_request(appointment))
        except AlreadyExists:  # pragma: no cover - a uuid4 collision
            continue
        assert result.stored is not None
        return write_response(ctx, result, 201, f"Booked {describe(result.stored)}")
    raise RuntimeError("could not allocate a new id")  # pragma: no cover


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "book",
            "http://fhir.org/guides/argonaut/scheduling/OperationDefinition/appointment-book",
            "type",
            resource_types=("Appointment",),
            methods=("POST",),
            parameters=(
                OperationParameter("appt-resource", "Appointment", min=1),
                OperationParameter("return", "Appointment", min=1, use="out"),
            ),
            scopes=("patient/Appointment.c", "user/Appointment.c", "system/Appointment.c"),
            affects_state=True,
            documentation="Book the Appointment (appt-resource; 'appointment' accepted): 201"
            " with Location, its Slots busy in the same transaction",
        ),
    ),
    handler=handle,
)
