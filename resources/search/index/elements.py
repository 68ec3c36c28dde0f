"""The R4 element model FHIRPath navigation needs: child element types, choice types
(``value[x]``), and type inheritance (https://hl7.org/fhir/R4/fhirpath.html#types,
https://hl7.org/fhir/R4/formats.html#choice).

The data is fhirpathpy's own R4 model (``fhirpathpy.models.models["r4"]``, generated from
the same 4.0.1 StructureDefinitions), so the native navigator and the fhirpathpy fallback
agree on types. A node's *type* is a FHIR type name (``HumanName``, ``dateTime``,
``Observation``); backbone elements, which have no type name, are typed by their element
path (``Observation.component``), as fhirpathpy does.
"""

from __future__ import annotations

from functools import cache
from typing import Any

ChildSlot = tuple[str, str]
"""``(json key, type)`` of one way a child element can appear (several for choices)."""

RESOURCE = "Resource"
_ROOT_TYPES = frozenset({"Resource", "DomainResource"})


@cache
def model() -> dict[str, Any]:
    """fhirpathpy's R4 model (path2Type, choiceTypePaths, pathsDefinedElsewhere, ...)."""
    from fhirpathpy.models import models

    return models["r4"]


@cache
def _backbone_paths() -> frozenset[str]:
    """Element paths that have children but no type name (backbone elements)."""
    paths: set[str] = set()
    for path in model()["path2Type"]:
        parts = path.split(".")
        for end in range(2, len(parts)):
            paths.add(".".join(parts[:end]))
    return frozenset(paths)


@cache
def child_slots(parent_type: str, name: str) -> tuple[ChildSlot, ...]:
    """Where child ``name`` of a ``parent_type`` node lives in JSON, with its type.

    A choice element ``Observation.value`` gives one slot per allowed type
    (``valueQuantity``/``Quantity``, ``valueString``/``string``, ...). An unknown child
    gives no slot: navigation yields nothing, as FHIRPath does for absent elements.
    """
    m = model()
    path = f"{parent_type}.{name}"
    path = m["pathsDefinedElsewhere"].get(path, path)
    choices = m["choiceTypePaths"].get(path)
    path2type = m["path2Type"]
    if choices:
        return tuple(
            (name + suffix, path2type.get(path + suffix, suffix[0].lower() + suffix[1:]))
            for suffix in choices
        )
    child_type = path2type.get(path)
    if child_type is not None:
        return ((name, child_type),)
    if path in _backbone_paths():
        return ((name, path),)
    return ()


@cache
def is_known_type(name: str) -> bool:
    m = model()
    return name in m["type2Parent"] or name in _ROOT_TYPES or name.startswith("System.")


@cache
def is_subtype(type_name: str, of: str) -> bool:
    """Whether a node of ``type_name`` passes ``is of`` / ``as(of)`` / ``ofType(of)``.

    Inheritance follows the model (``Age`` is a ``Quantity``, ``code`` is a ``string``,
    ``Patient`` is a ``DomainResource`` and a ``Resource``). Type names are compared
    ignoring the case of their first letter, so ``as(DateTime)`` selects ``dateTime``
    values: R4 search parameters write both spellings (``Observation-value-date`` uses
    ``as(DateTime)``) and mean the FHIR type. ``System.String`` (ids, urls) is a string.
    """
    target = _fold(of.removeprefix("FHIR."))
    parents = model()["type2Parent"]
    current: str | None = "string" if type_name == "System.String" else type_name
    seen = 0
    while current is not None and seen < 16:
        if _fold(current) == target:
            return True
        current = parents.get(current)
        seen += 1
    return False


def runtime_type(value: Any, static_type: str) -> str:
    """The type of a node whose element is typed ``Resource`` (contained, entries)."""
    if static_type == RESOURCE and isinstance(value, dict):
        resource_type = value.get("resourceType")
        if isinstance(resource_type, str):
            return resource_type
    return static_type


def _fold(name: str) -> str:
    return name[:1].lower() + name[1:]
