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

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from resources.definitions import core_data

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
