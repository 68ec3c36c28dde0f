"""Secure messaging between patients (or their caregivers) and their care team, as
Communications (https://hl7.org/fhir/R4/communication.html), and the limits on the
attachments they carry (Binary, https://hl7.org/fhir/R4/binary.html).

The thread model
----------------
A thread is a set of Communications about one patient (``subject``):

- the **first message** names the thread's subject line in ``topic.text`` and has no
  ``inResponseTo`` nor ``partOf``;
- every **reply** points at the message it answers (``inResponseTo``, one
  ``Communication``) and at the thread's first message (``partOf``); the server fills
  ``partOf`` in when a reply leaves it out and refuses one that names another thread
  (``422``). A reply may repeat the ``topic``.

So a thread is ``Communication?_id=<first>`` plus ``Communication?part-of=Communication/<first>``
sorted by ``sent``, and the threads of a patient are their messages without ``partOf``.

The rules (every write of a Communication through the API; bulk import is the EHR's
record and is stored as it is)
------------------------------

- **Who writes to whom.** A patient, or a caregiver acting for them, sends a message
  about the patient (``subject``), as themselves (``sender`` = the token's ``fhirUser``:
  the Patient, or the caregiver's RelatedPerson; left out, the server fills it in; any
  other sender: ``403``) to recipients that are the patient's care relations
  (:mod:`fhir_server.workflows.care_relations`): a care team of the patient, their
  general practitioner or managing organization, a practitioner of one of their
  encounters, an organization listed in ``FHIR_SERVER_ORGANIZATION_INBOXES``; a reply may
  also go to whoever wrote or received the message it answers. Anything else is
  ``403``. Staff signed in as a Practitioner (or PractitionerRole) send as themselves
  or one of their roles.
- **Server-set.** ``sent`` is the time the server stored the message (a client's value
  is overwritten); a new message is ``in-progress``, without ``received``.
- **Records.** What a caller without a user creates (a backend service with
  ``system/`` scopes syncing an EHR's messages, a server without authorization) is a
  record of messages sent elsewhere: stored as it is, like bulk import. The rules on
  changes below apply to everyone.
- **Read receipts.** The recipient (a patient or caregiver for a message addressed to
  the patient; staff for one addressed to them, their roles, care teams or
  organizations) marks it read by setting ``received`` or status ``completed`` (PUT or
  PATCH); the server completes the other one. Nobody else may (``403``); a receipt is
  not changed once given (``422``).
- **Immutability.** Once sent, nothing but ``received``, ``status`` and
  ``statusReason`` changes (``422``); staff may mark a message ``entered-in-error``;
  patients, caregivers and the staff user who sent it never delete it (``403``).
- **Attachments.** ``payload.contentAttachment.url`` = ``Binary/{id}``, a Binary whose
  ``securityContext`` is the patient (readable by the patient, their caregivers and
  staff, never by another patient: ``fhir_server.access``). Such a Binary is checked when
  it is written: its content type must be PDF, PNG, JPEG, HEIC or plain text (``415``)
  and its decoded size at most ``FHIR_SERVER_ATTACHMENT_MAX_BYTES`` (default 10 MB,
  ``413``), see :mod:`fhir_server.workflows.binary`. Patients and caregivers do not
  change or delete a Binary once uploaded (``403``): the message carrying it is
  immutable.

Every committed version is an event in the outbox (``fhir_server.events``): a new
message to a patient is a Communication at version 1 whose ``recipient`` is a Patient
(or RelatedPerson); one to staff, a recipient of the :data:`~fhir_server.workflows.
care_relations.CARE_TYPES`; a read receipt, a version with ``received``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.storage.base import now_instant
from fhir_server.workflows.base import Caller, Change, Transaction, rule
from fhir_server.workflows.binary import check_upload
from fhir_server.workflows.care_relations import (
    CareRelations,
    reference_of,
    references,
    staff_addresses,
)
from resources.errors import FhirError

MUTABLE = frozenset({"status", "statusReason", "received", "meta"})
"""What may change in a message once it is sent (``meta`` is the server's)."""

_SERVER_SET = ("sent", "status", "received")


def _forbidden(message: str) -> FhirError:
    return FhirError(403, "forbidden", message)


def _refused(message: str, expression: str | None = None) -> FhirError:
    return FhirError(422, "business-rule", message, (expression,) if expression else ())


@rule("Communication")
async def message_rules(tx: Transaction, change: Change) -> None:
    if tx.origin == "import":
        return
    previous = await tx.previous(change)
    if change.resource is None:
        if previous is not None:
            await _check_delete(tx, previous)
    elif previous is None:
        if _recorder(tx.caller):
            return  # a backend service's record of a message, stored as sent
        await _check_new(tx, change, change.resource)
    else:
        await _check_change(tx, change, change.resource, previous)


@rule("Binary")
async def attachment_rules(tx: Transaction, change: Change) -> None:
    """A Binary whose ``securityContext`` is a Patient (a message's attachment) is
    checked; patients and caregivers never change nor delete a Binary once uploaded."""
    resource = change.resource
    if tx.origin == "import":
        return
    if not tx.caller.staff and await tx.previous(change) is not None:
        raise _forbidden(
            "An uploaded file does not change (a message that carries it is immutable):"
            " upload a new Binary instead"
        )
    if resource is None:
        return
    context = reference_of(resource.get("securityContext")) or ""
    if context.startswith("Patient/"):
        check_upload(resource, _settings(tx), "FHIR_SERVER_ATTACHMENT_MAX_BYTES")


# -- a new message -------------------------------------------------------------------


async def _check_new(tx: Transaction, change: Change, resource: dict[str, Any]) -> None:
    caller = tx.caller
    message = {k: v for k, v in resource.items() if k not in _SERVER_SET}
    message["status"] = "in-progress"
    message["sent"] = now_instant()
    sender = reference_of(resource.get("sender"))
    if sender is None and caller.fhir_user is not None and "sender" not in resource:
        message["sender"] = {"reference": caller.fhir_user}
        sender = caller.fhir_user
    answered = await _thread(tx, message)
    if not caller.staff:
        await _check_patient_side(tx, caller, message, sender, answered)
    elif (
        caller.fhir_user is not None
        and sender is not None
        and sender not in await _own_identities(tx, caller.fhir_user)
    ):
        raise _forbidden(
            f"A message is sent as the signed-in user ({caller.fhir_user}) or one of"
            f" their roles, not as {sender}"
        )
    change.set(_ordered(message, resource))


def _ordered(message: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """``message`` with its elements in the order the client sent them."""
    out = {k: message[k] for k in original if k in message}
    out.update({k: v for k, v in message.items() if k not in out})
    return out


async def _thread(tx: Transaction, message: dict[str, Any]) -> dict[str, Any] | None:
    """The message a reply answers (None: the first of a thread); sets ``partOf``."""
    answers = references(message.get("inResponseTo"))
    if not answers:
        if message.get("partOf"):
            raise _refused(
                "A message that is part of a thread answers one of its messages (inResponseTo)",
                "Communication.inResponseTo",
            )
        return None
    if len(answers) != 1 or not answers[0].startswith("Communication/"):
        raise _refused(
            "A reply answers one Communication (inResponseTo)", "Communication.inResponseTo"
        )
    answered, _ = await tx.current("Communication", answers[0].split("/", 1)[1])
    if answered is None:
        raise _refused(
            f"The message answered ({answers[0]}) does not exist", "Communication.inResponseTo"
        )
    first = (references(answered.get("partOf")) or [answers[0]])[0]
    part_of = references(message.get("partOf"))
    if not part_of:
        message["partOf"] = [{"reference": first}]
    elif part_of != [first]:
        raise _refused(
            f"A reply is part of its thread: partOf must be {first}, the thread's first message",
            "Communication.partOf",
        )
    if references(answered.get("subject")) != references(message.get("subject")):
        raise _refused(
            "A reply is about the same patient as the message it answers",
            "Communication.subject",
        )
    return answered


async def _check_patient_side(
    tx: Transaction,
    caller: Caller,
    message: dict[str, Any],
    sender: str | None,
    answered: dict[str, Any] | None,
) -> None:
    subjects = references(message.get("subject"))
    if len(subjects) != 1 or subjects[0] not in caller.patients:
        raise _forbidden(
            "A message from a patient or caregiver is about the patient in context"
            " (subject = Patient/id)"
        )
    patient = subjects[0]
    user = caller.fhir_user
    if user is None or not user.startswith(("Patient/", "RelatedPerson/")):
        raise _forbidden(
            "Sending a message needs the signed-in user's identity (the openid fhirUser"
            " scopes) as a Patient, or as a caregiver's RelatedPerson"
        )
    if user.startswith("Patient/") and user != patient:
        raise _forbidden(f"{user} sends messages about themselves, not about {patient}")
    if sender != user:
        raise _forbidden(f"A message is sent as the signed-in user ({user}), not as {sender}")
    if answered is None and not (message.get("topic") or {}).get("text"):
        raise _refused(
            "The first message of a thread names its subject line (topic.text)",
            "Communication.topic",
        )
    recipients = references(message.get("recipient"))
    if not recipients or len(recipients) != len(message.get("recipient") or []):
        raise _refused(
            "A message names its recipients (Communication.recipient) by reference",
            "Communication.recipient",
        )
    participants: set[str] = set()
    if answered is not None:
        participants.update(references(answered.get("sender")))
        participants.update(references(answered.get("recipient")))
    relations = CareRelations(tx.store, patient, _settings(tx))
    strangers = [r for r in recipients if r not in participants and not await relations.allows(r)]
    if strangers:
        raise _forbidden(
            f"{', '.join(strangers)} is not in the care team of {patient}: a patient writes"
            " to their care teams, general practitioner, the practitioners of their"
            " encounters, their managing organization or an organization's inbox"
        )


async def _own_identities(tx: Transaction, user: str) -> set[str]:
    """A staff user and their roles (what they may send as)."""
    return {a for a in await staff_addresses(tx.store, user) if not a.startswith("CareTeam/")}


# -- a change of a sent message ------------------------------------------------------------


async def _check_change(
    tx: Transaction, change: Change, resource: dict[str, Any], previous: dict[str, Any]
) -> None:
    keys = set(resource) | set(previous)
    changed = {k for k in keys if k not in ("id",) and resource.get(k) != previous.get(k)}
    fixed = changed - MUTABLE
    if fixed:
        raise _refused(
            f"A message cannot be changed once sent ({', '.join(sorted(fixed))}): its"
            " recipient marks it read (received, status completed) and staff mark it"
            " entered-in-error",
            f"Communication.{sorted(fixed)[0]}",
        )
    changed.discard("meta")
    if not changed:
        return
    caller = tx.caller
    status = resource.get("status")
    if status == "entered-in-error":
        if not caller.staff:
            raise _forbidden("Only staff mark a message entered-in-error")
        return
    if "statusReason" in changed and not caller.staff:
        raise _refused("Only staff give a message's statusReason", "Communication.statusReason")
    if not await _is_recipient(tx, caller, previous):
        raise _forbidden("Only a message's recipient marks it read (received, status)")
    if previous.get("received") and resource.get("received") != previous["received"]:
        raise _refused(
            f"This message was read at {previous['received']}; the receipt does not change",
            "Communication.received",
        )
    if status not in ("completed", "in-progress") or (
        status == "in-progress" and previous.get("status") != "in-progress"
    ):
        raise _refused(
            f"A message read by its recipient is completed, not {status}",
            "Communication.status",
        )
    receipt = {**resource, "status": "completed"}
    receipt.setdefault("received", now_instant())
    if receipt != resource:
        change.set(receipt)


async def _is_recipient(tx: Transaction, caller: Caller, message: dict[str, Any]) -> bool:
    recipients = set(references(message.get("recipient")))
    if caller.staff:
        if caller.fhir_user is None:
            return True  # a backend service records receipts for anyone
        return bool(recipients & set(await staff_addresses(tx.store, caller.fhir_user)))
    mine = set(caller.patients)
    if caller.fhir_user is not None:
        mine.add(caller.fhir_user)
    return bool(recipients & mine)


async def _check_delete(tx: Transaction, previous: dict[str, Any]) -> None:
    caller = tx.caller
    if not caller.staff:
        raise _forbidden(
            "Messages are not deleted by patients or caregivers; staff can mark one"
            " entered-in-error"
        )
    sender = reference_of(previous.get("sender"))
    if (
        caller.fhir_user is not None
        and sender is not None
        and sender in await _own_identities(tx, caller.fhir_user)
    ):
        raise _forbidden("A sent message is not deleted by its sender")


def _recorder(caller: Caller) -> bool:
    """A caller without a user (a backend service, a server without authorization):
    what it creates is a record of messages sent elsewhere (an EHR's), kept as it is."""
    return caller.staff and caller.fhir_user is None


def _settings(tx: Transaction) -> Any:
    return getattr(tx, "settings", None)
