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

from collections.abc import Iterable, Mapping
from functools import cache
from types import MappingProxyType

from resources.definitions import core_data
from resources.search.model import IndexRow, ReferenceRow

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


def patient_member_types() -> frozenset[str]:
    """The types whose resources can be in a Patient compartment (Patient included: a
    patient is treated as a member of its own compartment, see :func:`memberships`), and
    Binary (see :data:`SECURED_BY_CONTEXT`)."""
    return resources_in_compartment(MEMBERSHIP_COMPARTMENT) | {
        MEMBERSHIP_COMPARTMENT,
        SECURED_BY_CONTEXT,
    }


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
    names."""
    codes = set(compartment_params(MEMBERSHIP_COMPARTMENT, resource_type))
    if resource_type == SECURED_BY_CONTEXT:
        return _context_patient(resource)
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
    return tuple(found)


def _context_patient(resource: Mapping[str, object] | None) -> tuple[str, ...]:
    context = (resource or {}).get("securityContext")
    reference = context.get("reference") if isinstance(context, dict) else None
    if isinstance(reference, str):
        parts = reference.split("/")
        if len(parts) >= 2 and parts[-2] == MEMBERSHIP_COMPARTMENT:
            return (f"{MEMBERSHIP_COMPARTMENT}/{parts[-1]}",)
    return ()
