"""R4 compartments: which resources are in the compartment of a Patient, Encounter,
RelatedPerson, Practitioner or Device, and through which search parameters.

CompartmentDefinition: https://hl7.org/fhir/R4/compartmentdefinition.html
Compartment search: https://hl7.org/fhir/R4/search.html#compartments
Patient compartment: https://hl7.org/fhir/R4/compartmentdefinition-patient.html

The table comes from the five core CompartmentDefinitions of hl7.fhir.r4.core 4.0.1
(``compartments`` in ``resources/data``; the package's sixth, ``example``, also for
Device, is left out). A resource of type T is in the compartment of ``C/id`` when one of
the parameters listed for T refers to ``C/id``.

``{def}`` (:data:`OWNER`) is kept as the definitions write it: it is listed, instead of
a parameter, for the compartment's own type in the Encounter, Practitioner and
RelatedPerson compartments and means "the owner itself is in its compartment"
(``Encounter/1`` is in the compartment of ``Encounter/1``); match it on the id, not on a
reference. R4 lists no ``{def}`` for Patient (Patient is in a Patient compartment only
through ``link``) nor for Device (Device is not in the Device compartment at all); this
module reports the package as it is, so whether ``Patient/1`` may read itself is the
access policy's call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from types import MappingProxyType

from resources.definitions import RESOURCE_TYPES, core_data
from resources.search.index.reference import parse_reference
from resources.search.model import IndexRow, ReferenceRow, TokenRow

OWNER = "{def}"
"""Listed in place of a parameter: the compartment's owner is in it by definition."""


def compartment_types() -> frozenset[str]:
    """The resource types that own compartments (Device, Encounter, Patient, ...)."""
    return frozenset(_table())


def compartment_params(compartment_type: str, resource_type: str) -> tuple[str, ...]:
    """The parameter codes of ``resource_type`` whose reference to the compartment's
    owner puts a resource in the compartment, plus :data:`OWNER` where the definition
    lists it; empty if the type is not in the compartment (or the compartment is
    unknown)."""
    return _table().get(compartment_type, {}).get(resource_type, ())


def resources_in_compartment(compartment_type: str) -> frozenset[str]:
    """The resource types that can be in a compartment of this type."""
    return frozenset(_table().get(compartment_type, {}))


def owner_in_compartment(compartment_type: str) -> bool:
    """Whether the owner itself is in its compartment (the definition lists ``{def}``)."""
    return OWNER in compartment_params(compartment_type, compartment_type)


@cache
def _table() -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    return MappingProxyType(
        {
            compartment: MappingProxyType(
                {type_: tuple(params) for type_, params in members.items() if params}
            )
            for compartment, members in core_data()["compartments"].items()
        }
    )


MEMBERSHIP_COMPARTMENT = "Patient"
"""The compartment type whose memberships are recorded with every stored version: the
one SMART patient-context access is defined by."""


SECURED_BY_CONTEXT = "Binary"
"""Binary is in no compartment; its access follows its ``securityContext``
(https://hl7.org/fhir/R4/binary.html#security): it is a member of the compartment of the
Patient it names there, and otherwise visible only to those who may see the resource it
names (the access policy's call)."""


DIRECTORY_TYPES = frozenset(
    {
        # who and where: the care team, the places, the services, the payers' plans
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "OrganizationAffiliation",
        "Location",
        "HealthcareService",
        "Endpoint",
        "InsurancePlan",
        "Schedule",
        "Slot",
        # what: products and devices as catalogue entries
        "Medication",
        "MedicationKnowledge",
        "Substance",
        "Device",
        "DeviceDefinition",
        # definitions: forms, protocols, terminology and the conformance resources
        "Questionnaire",
        "ActivityDefinition",
        "PlanDefinition",
        "Library",
        "Measure",
        "ObservationDefinition",
        "SpecimenDefinition",
        "ChargeItemDefinition",
        "EventDefinition",
        "ValueSet",
        "CodeSystem",
        "ConceptMap",
        "NamingSystem",
        "StructureDefinition",
        "StructureMap",
        "SearchParameter",
        "OperationDefinition",
        "CapabilityStatement",
        "CompartmentDefinition",
        "ImplementationGuide",
        "GraphDefinition",
        "MessageDefinition",
        "TerminologyCapabilities",
    }
)
"""Directory and definitional types: what a patient-context token may read although it
is nobody's record, as long as the resource refers to no other patient (a Schedule whose
actor is a patient is that patient's, and so are its Slots: :func:`slot_schedule`; a
Device implanted in a patient is that patient's). Patient-context tokens never write
them: a workflow that changes one for a patient (a Slot booked) does it under its own
rules. Every other type outside the Patient compartment is default-deny for a
patient-context token (see :func:`memberships`)."""

SLOT = "Slot"
SCHEDULE = "Schedule"
SLOT_SCHEDULE = "schedule"
"""The search parameter of a Slot that names its Schedule."""


def slot_schedule(rows: Iterable[IndexRow]) -> str | None:
    """The id of the Schedule a Slot's index rows name (``Slot.schedule``; a relative or
    absolute reference to a Schedule), None when there is none.

    A Slot names only its Schedule, but a Slot of a patient's own Schedule (a Patient
    ``Schedule.actor``: the Schedule is in that patient's compartment) is that patient's
    data (issue 18). So a Slot version is also a member of the compartments its Schedule
    is a member of. :func:`memberships` cannot see the Schedule: the stores add them
    inside the write transaction (``fhir_server.storage.sqlite_members``,
    ``fhir_server.storage.mongo_members``) from the Schedule's current version (a deleted
    one's last); when a Schedule's memberships change, the current versions of the Slots
    that name it take the new ones, and their earlier versions gain the added ones (a
    Slot once of a patient's Schedule stays hidden from other patients in its history).
    The access rules then hide such a Slot, directory data that is a member of another
    patient, from all but that patient's tokens (a caregiver acting for the patient
    included) and staff."""
    for row in rows:
        if (
            isinstance(row, ReferenceRow)
            and row.code == SLOT_SCHEDULE
            and row.target_type == SCHEDULE
            and row.target_id
        ):
            return row.target_id
    return None


ACCESS_GRANTING_TYPES = frozenset({"Person", "RelatedPerson"})
"""Types whose content decides who may act for a patient (``Person.link``,
``RelatedPerson.patient``, ``active`` and ``period``): written by staff and backend
services only, never through a patient-context token (``Patient.link`` to another
patient is refused by the write rule on patient references)."""


CAREGIVER = "RelatedPerson"
"""The type of a caregiver's ``fhirUser``: a caregiver acts for a patient and has records
of its own (:data:`CAREGIVER_RECORD`)."""

CAREGIVER_RECORD = ("Basic", "urn:fhir-server:notification", "preferences")
"""Type and code of the one kind of resource a caregiver owns: a person's notification
preferences (``fhir_server.notifications.recipients``). One whose ``subject`` is
``RelatedPerson/x`` is also a member of ``RelatedPerson/x`` (:func:`memberships`), so the
token of that caregiver reads and writes it (``fhir_server.access``), though it is in no
patient's compartment; no other resource has such a membership."""


SUBSCRIPTION = "Subscription"
SUBSCRIPTION_CREATOR = "urn:fhir-server:subscription-creator"
"""The extension in which the server records the token that wrote a Subscription
(``fhir_server.events.subscriptions``)."""

SUBSCRIPTION_OWNER = "SubscriptionOwner"
"""A patient-context token's Subscription is also a member of
``SubscriptionOwner/<digest of its app, user and patients>`` (:func:`subscription_owner`),
so that only tokens of that same app and user read and change it
(``fhir_server.access.with_own_subscriptions``), not every token acting for the patient."""


def subscription_owner(client: str | None, user: str | None, patients: Iterable[str]) -> str:
    """The owner membership of the Subscriptions that an app (``client``), used by
    ``user`` (its ``fhirUser``) for ``patients``, wrote."""
    text = "\n".join([client or "", user or "", *sorted(patients)])
    return f"{SUBSCRIPTION_OWNER}/{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def _subscription_owner(resource: Mapping[str, object] | None) -> str | None:
    """The owner membership of a Subscription whose creator was a patient-context token
    (the creator extension names its patients), None otherwise."""
    creator = next(
        (
            e
            for e in (resource or {}).get("extension") or []  # type: ignore[attr-defined]
            if isinstance(e, dict) and e.get("url") == SUBSCRIPTION_CREATOR
        ),
        None,
    )
    if creator is None:
        return None
    client = user = None
    patients: list[str] = []
    for part in creator.get("extension") or []:
        if not isinstance(part, dict):
            continue
        if part.get("url") == "client" and isinstance(part.get("valueString"), str):
            client = client or part["valueString"]
        elif part.get("url") == "user" and isinstance(part.get("valueString"), str):
            user = user or part["valueString"]
        elif part.get("url") == "patient" and isinstance(part.get("valueReference"), dict):
            reference = part["valueReference"].get("reference")
            if isinstance(reference, str):
                patients.append(reference)
    return subscription_owner(client, user, patients) if patients else None


def patient_member_types() -> frozenset[str]:
    """The types whose resources are in a Patient compartment by the R4
    CompartmentDefinition (Patient included: a patient is treated as a member of its own
    compartment, see :func:`memberships`), and Binary (see :data:`SECURED_BY_CONTEXT`),
    less the :data:`DIRECTORY_TYPES` (Schedule). A patient-context token reads one of
    these when it is in the patient's compartment; any other type only when it refers to
    that patient (or is a directory type) and to no other patient."""
    return (
        resources_in_compartment(MEMBERSHIP_COMPARTMENT)
        | {MEMBERSHIP_COMPARTMENT, SECURED_BY_CONTEXT}
    ) - DIRECTORY_TYPES


def referring_types() -> frozenset[str]:
    """The types whose memberships :func:`memberships` takes from every patient
    reference: those outside the R4 Patient compartment (Binary and Patient aside)."""
    return (
        frozenset(RESOURCE_TYPES)
        - resources_in_compartment(MEMBERSHIP_COMPARTMENT)
        - {
            MEMBERSHIP_COMPARTMENT,
            SECURED_BY_CONTEXT,
        }
    )


def patient_references(resource: Mapping[str, object]) -> tuple[str, ...]:
    """Every patient the resource refers to (``"Patient/1"``), wherever the reference
    stands: ``Reference.reference`` values anywhere in the resource, contained resources
    and Bundle entries included; relative or absolute (a RESTful URL ending in
    ``Patient/id``)."""
    found: dict[str, None] = {}
    for text in _reference_texts(resource):
        target = _patient_target(text)
        if target is not None:
            found[target] = None
    return tuple(found)


def literal_references(resource: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """``(type, id)`` of every resource the resource refers to by a literal reference
    (relative, or an absolute RESTful URL), wherever it stands; contained (``#x``) and
    non-FHIR references (``urn:uuid:``) left out."""
    found: dict[tuple[str, str], None] = {}
    for text in _reference_texts(resource):
        target_type, target_id, _, _ = parse_reference(text)
        if target_type is not None and target_id is not None:
            found[(target_type, target_id)] = None
    return tuple(found)


def _reference_texts(resource: Mapping[str, object]) -> Iterator[str]:
    """The ``reference`` strings of every Reference in the resource."""
    stack: list[object] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    yield value
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, dict | list))


def _patient_target(reference: str) -> str | None:
    if MEMBERSHIP_COMPARTMENT not in reference:
        return None
    target_type, target_id, _, _ = parse_reference(reference)
    if target_type != MEMBERSHIP_COMPARTMENT or not target_id:
        return None
    return f"{MEMBERSHIP_COMPARTMENT}/{target_id}"


def memberships(
    resource_type: str,
    id_: str,
    rows: Iterable[IndexRow],
    resource: Mapping[str, object] | None = None,
) -> tuple[str, ...]:
    """The Patient compartments (``"Patient/123"``) a resource version is in, from its
    reference index rows: a reference to ``Patient/x`` through one of the parameters the
    Patient CompartmentDefinition lists for the type. A Patient is also in its own
    compartment (R4 lists no ``{def}`` for Patient; an access policy needs it). A Binary
    (``resource`` given) is in the compartment of the Patient its ``securityContext``
    names.

    A type the R4 definition leaves out of the Patient compartment (Task,
    PaymentReconciliation, ...: still patient data) is recorded as a member of every
    patient it refers to anywhere (:func:`patient_references`; ``resource`` given), so
    that access to it can require "that patient and no other".

    A caregiver's notification preferences (:data:`CAREGIVER_RECORD` whose ``subject`` is
    ``RelatedPerson/x``) are also a member of ``RelatedPerson/x``.

    A Slot is also a member of its Schedule's compartments, which the stores add (see
    :func:`slot_schedule`)."""
    codes = set(compartment_params(MEMBERSHIP_COMPARTMENT, resource_type))
    if resource_type == SECURED_BY_CONTEXT:
        return _context_patient(resource)
    if not codes and resource_type != MEMBERSHIP_COMPARTMENT:
        referred = patient_references(resource) if resource is not None else ()
        owner = _subscription_owner(resource) if resource_type == SUBSCRIPTION else None
        return (*referred, owner) if owner and referred else referred
    found: dict[str, None] = {}
    if resource_type == MEMBERSHIP_COMPARTMENT:
        found[f"{MEMBERSHIP_COMPARTMENT}/{id_}"] = None
    if codes:
        for row in rows:
            if (
                isinstance(row, ReferenceRow)
                and row.code in codes
                and row.target_type == MEMBERSHIP_COMPARTMENT
                and row.target_id
            ):
                found[f"{MEMBERSHIP_COMPARTMENT}/{row.target_id}"] = None
    if resource_type == CAREGIVER_RECORD[0]:
        owner = _caregiver_owner(rows)
        if owner is not None:
            found[owner] = None
    return tuple(found)


def _caregiver_owner(rows: Iterable[IndexRow]) -> str | None:
    """``RelatedPerson/x`` when the index rows are those of a :data:`CAREGIVER_RECORD`
    whose ``subject`` is that caregiver, by a relative reference (the rows
    ``Basic?subject=RelatedPerson/x&code=urn:fhir-server:notification|preferences``
    matches)."""
    owner, coded = None, False
    _, system, code = CAREGIVER_RECORD
    for row in rows:
        if isinstance(row, ReferenceRow) and row.code == "subject":
            if row.target_type == CAREGIVER and row.target_id and row.url is None:
                owner = f"{CAREGIVER}/{row.target_id}"
        elif isinstance(row, TokenRow) and row.code == "code":
            coded = coded or (row.system == system and row.value == code)
    return owner if coded else None


def _context_patient(resource: Mapping[str, object] | None) -> tuple[str, ...]:
    context = (resource or {}).get("securityContext")
    reference = context.get("reference") if isinstance(context, dict) else None
    if isinstance(reference, str):
        parts = reference.split("/")
        if len(parts) >= 2 and parts[-2] == MEMBERSHIP_COMPARTMENT:
            return (f"{MEMBERSHIP_COMPARTMENT}/{parts[-1]}",)
    return ()
