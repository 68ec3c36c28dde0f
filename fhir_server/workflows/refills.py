"""Prescription refill requests: a Task asking to fulfil a MedicationRequest
(https://hl7.org/fhir/R4/task.html, https://hl7.org/fhir/R4/workflow-management.html,
https://hl7.org/fhir/R4/medicationrequest.html).

A **refill request** is a Task with ``code`` = ``http://hl7.org/fhir/CodeSystem/task-code|fulfill``
and ``focus`` = the ``MedicationRequest`` to refill; ``intent`` is ``order``, ``for`` the
patient, ``authoredOn`` and ``requester`` as the client gives them; a note for the
prescriber in ``note``, and the preferred pharmacy in ``Task.location`` (a Location) or,
for a pharmacy known only as an Organization, ``Task.owner`` is left to staff and the
pharmacy goes in ``Task.input`` with ``type.text`` = ``pharmacy``. Other Tasks are not
refill requests and these rules leave them alone.

- **Requested** (by the patient, a caregiver for them, or staff): ``status`` =
  ``requested``. The MedicationRequest must be the patient's (another patient's: ``403``
  from the access checks, or ``422`` for staff), ``active`` (``422`` otherwise) and have
  refills left (``dispenseRequest.numberOfRepeatsAllowed`` more than the completed
  MedicationDispenses after the first) or be renewable (anything but a one-off acute
  course: ``courseOfTherapyType`` ``acute``), else ``422`` with the reason. One open
  request per prescription: a second is ``409`` naming the open Task, also when two are
  sent at the same moment (the create is exclusive at commit time).
- **Records.** A Task a caller without a user creates (a backend service syncing an
  EHR, a server without authorization) is stored as it is, whatever its state; the
  rules on changes apply to everyone.
- **Patients and caregivers** never change a refill request except to cancel their own
  open one (status ``cancelled``, nothing else changed); they never delete one (``403``).
- **Staff decide**: ``requested`` -> ``received`` -> ``accepted`` -> ``in-progress`` ->
  ``completed`` (each step may be skipped), or ``rejected`` (with a ``statusReason``:
  ``422`` without), or ``cancelled`` / ``failed``; ``entered-in-error`` from any state.
  A decided Task (completed, rejected, cancelled, failed, entered-in-error) does not
  change any more (``409``); ``focus`` and ``for`` never change (``422``).
- **Completed** names the new prescription in ``output`` (``valueReference`` =
  ``MedicationRequest/new``, created by staff before or in the same transaction, for the
  same patient, with ``priorPrescription`` = the old one; ``422`` otherwise); the server
  marks the old prescription ``completed`` in the same transaction. Accepting or
  completing a request whose prescription is no longer active (superseded meanwhile) is
  ``422``.

Task is outside R4's Patient compartment: the access checks record it as a member of
the patients it refers to, so a refill request is readable by its patient, their
caregivers and staff only. Every decision is a new version of the Task, hence an event
for notifications (``fhir_server.events``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.workflows.base import Change, Transaction, decode, rule
from fhir_server.workflows.care_relations import reference_of, references
from resources.errors import FhirError

TASK_CODES = "http://hl7.org/fhir/CodeSystem/task-code"
FULFILL = "fulfill"
OPEN = ("draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold")
"""Statuses of a request not decided yet."""
CLOSED = frozenset({"completed", "rejected", "cancelled", "failed", "entered-in-error"})
STAFF_STEPS: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "received", "accepted", "rejected", "cancelled"}),
    "requested": frozenset({"received", "accepted", "rejected", "cancelled"}),
    "received": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"ready", "in-progress", "completed", "rejected", "cancelled"}),
    "ready": frozenset({"in-progress", "completed", "cancelled", "failed"}),
    "in-progress": frozenset({"on-hold", "completed", "failed", "cancelled"}),
    "on-hold": frozenset({"in-progress", "completed", "failed", "cancelled"}),
}
"""Where staff may take a refill request from each open status (besides staying, and
``entered-in-error`` from anywhere)."""
PATIENT_CHANGES = frozenset({"status", "statusReason", "lastModified", "meta"})
"""What a patient's cancellation may touch."""


def _refused(message: str, expression: str | None = None) -> FhirError:
    return FhirError(422, "business-rule", message, (expression,) if expression else ())


def _conflict(message: str) -> FhirError:
    return FhirError(409, "conflict", message)


def _forbidden(message: str) -> FhirError:
    return FhirError(403, "forbidden", message)


def is_refill(task: dict[str, Any] | None) -> bool:
    """Whether a Task is a refill request (code fulfill, focus a MedicationRequest)."""
    if not task:
        return False
    codings = (task.get("code") or {}).get("coding") or []
    fulfil = any(
        isinstance(c, dict) and c.get("system") == TASK_CODES and c.get("code") == FULFILL
        for c in codings
    )
    focus = reference_of(task.get("focus")) or ""
    return fulfil and focus.startswith("MedicationRequest/")


@rule("Task")
async def refill_rules(tx: Transaction, change: Change) -> None:
    if tx.origin == "import":
        return
    task = change.resource
    if not is_refill(task):
        if task is not None:
            previous = await tx.current(change.type, change.id)
            if is_refill(previous[0]):
                raise _refused("A refill request stays a refill request (code, focus)", "Task")
        elif not tx.caller.staff and is_refill((await tx.current(change.type, change.id))[0]):
            raise _forbidden("Patients and caregivers cancel a refill request, not delete it")
        return
    assert task is not None
    previous = await tx.previous(change)
    if previous is None:
        if not (tx.caller.staff and tx.caller.fhir_user is None):
            await _requested(tx, change, task)  # else a backend service's record
    elif not is_refill(previous):
        raise _refused("A Task becomes a refill request when it is created", "Task.code")
    else:
        await _changed(tx, change, task, previous)


# -- a new request -------------------------------------------------------------------------


async def _requested(tx: Transaction, change: Change, task: dict[str, Any]) -> None:
    if task.get("intent") != "order":
        raise _refused("A refill request is an order (intent = order)", "Task.intent")
    if task.get("status") != "requested":
        raise _refused("A new refill request is requested (status)", "Task.status")
    focus = reference_of(task.get("focus")) or ""
    patient = reference_of(task.get("for"))
    if patient is None or not patient.startswith("Patient/"):
        raise _refused("A refill request is for the patient (Task.for = Patient/id)", "Task.for")
    if not tx.caller.staff and patient not in tx.caller.patients:
        raise _forbidden(f"A refill request is for the patient in context, not {patient}")
    prescription, _ = await tx.current("MedicationRequest", focus.split("/", 1)[1])
    if prescription is None or patient not in references(prescription.get("subject")):
        if not tx.caller.staff:
            raise FhirError(404, "not-found", f"{focus} is not known")
        raise _refused(f"{focus} is not a prescription of {patient}", "Task.focus")
    await _check_refillable(tx, focus, prescription)
    open_query = tx.query(
        "Task",
        [("focus", focus), ("code", f"{TASK_CODES}|{FULFILL}"), ("status", ",".join(OPEN))],
    )
    found = await tx.search(open_query, 1)
    if found:
        raise _open_request(focus, found)
    tx.exclusive(change, open_query, lambda found: _open_request(focus, found))


def _open_request(focus: str, found: list[Any]) -> FhirError:
    return _conflict(
        f"{focus} already has an open refill request: Task/{found[0].id} (cancel it, or"
        " wait for the care team's decision)"
    )


async def _check_refillable(tx: Transaction, focus: str, prescription: dict[str, Any]) -> None:
    status = prescription.get("status")
    if status != "active":
        raise _refused(
            f"{focus} is {status}, not active: only a current prescription is refilled",
            "Task.focus",
        )
    allowed = (prescription.get("dispenseRequest") or {}).get("numberOfRepeatsAllowed") or 0
    if allowed > 0:
        query = tx.query("MedicationDispense", [("prescription", focus), ("status", "completed")])
        dispensed = len(await tx.search(query, allowed + 2))
        if dispensed - 1 < allowed:
            return
    course = prescription.get("courseOfTherapyType") or {}
    acute = any(
        isinstance(c, dict) and c.get("code") == "acute" for c in course.get("coding") or []
    )
    if acute:
        raise _refused(
            f"{focus} has no refills left and is a one-off (acute) course: ask the"
            " prescriber for a new prescription",
            "Task.focus",
        )


# -- a change of a request -----------------------------------------------------------------


async def _changed(
    tx: Transaction, change: Change, task: dict[str, Any], previous: dict[str, Any]
) -> None:
    before, after = previous.get("status"), task.get("status")
    for element in ("focus", "for"):
        if reference_of(task.get(element)) != reference_of(previous.get(element)):
            raise _refused(f"A refill request's {element} does not change", f"Task.{element}")
    if not tx.caller.staff:
        _patient_change(task, previous)
        return
    if before == after:
        return
    if after == "entered-in-error":
        return
    if before in CLOSED:
        raise _conflict(f"This refill request is already {before}; it does not become {after}")
    if after not in STAFF_STEPS.get(str(before), frozenset()):
        raise _refused(f"A refill request does not go from {before} to {after}", "Task.status")
    focus = reference_of(task.get("focus")) or ""
    if after == "rejected" and not task.get("statusReason"):
        raise _refused("A rejected refill request says why (statusReason)", "Task.statusReason")
    if after in ("accepted", "in-progress", "completed"):
        prescription, version = await _prescription(tx, focus)
        if prescription is None or prescription.get("status") != "active":
            state = "deleted" if prescription is None else prescription.get("status")
            raise _refused(
                f"{focus} was superseded meanwhile (it is {state}): the request cannot be {after}",
                "Task.focus",
            )
        if after == "completed":
            await _complete(tx, task, focus, prescription, version)


def _patient_change(task: dict[str, Any], previous: dict[str, Any]) -> None:
    before, after = previous.get("status"), task.get("status")
    keys = (set(task) | set(previous)) - {"id"}
    changed = {k for k in keys if task.get(k) != previous.get(k)}
    if not changed - {"meta"}:
        return
    if after != "cancelled" or before not in OPEN or changed - PATIENT_CHANGES:
        raise _forbidden(
            "Patients and caregivers only cancel their own open refill request"
            " (status = cancelled); the care team decides the rest"
        )


async def _prescription(tx: Transaction, focus: str) -> tuple[dict[str, Any] | None, int | None]:
    """The prescription as committed, and its version (None when this request changes it
    itself: then the server leaves it to the request)."""
    resource, version = await tx.current("MedicationRequest", focus.split("/", 1)[1])
    if any(other.reference == focus for other in tx.changing(["MedicationRequest"])):
        version = None
    return resource, version


async def _complete(
    tx: Transaction,
    task: dict[str, Any],
    focus: str,
    prescription: dict[str, Any],
    version: int | None,
) -> None:
    outputs = [
        reference_of(o.get("valueReference"))
        for o in task.get("output") or []
        if isinstance(o, dict)
    ]
    new = [o for o in outputs if o and o.startswith("MedicationRequest/")]
    if len(new) != 1:
        raise _refused(
            "A completed refill request names the new prescription in output"
            " (valueReference = MedicationRequest/id)",
            "Task.output",
        )
    renewal = await _new_prescription(tx, new[0])
    if renewal is None:
        raise _refused(f"The new prescription {new[0]} does not exist", "Task.output")
    if focus not in references(renewal.get("priorPrescription")):
        raise _refused(
            f"The new prescription {new[0]} names {focus} as its priorPrescription",
            "Task.output",
        )
    if references(renewal.get("subject")) != references(prescription.get("subject")):
        raise _refused(f"{new[0]} is not for the same patient as {focus}", "Task.output")
    if version is not None:  # else the request changes it itself
        tx.update({**prescription, "status": "completed"}, if_match=version)


async def _new_prescription(tx: Transaction, reference: str) -> dict[str, Any] | None:
    for other in tx.changing(["MedicationRequest"]):
        if other.reference == reference:  # created by the same transaction
            return other.resource if other.resource is not None else decode(other.request)
    resource, _ = await tx.current("MedicationRequest", reference.split("/", 1)[1])
    return resource
