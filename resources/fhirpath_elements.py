"""The R4 element definitions a FHIRPath Patch navigates and type-checks against.

https://hl7.org/fhir/R4/fhirpatch.html, over the element model of
https://hl7.org/fhir/R4/elementdefinition.html (choice types: ``[x]``,
https://hl7.org/fhir/R4/formats.html#choice), read from fhirpathpy's R4 tables
(element path -> type, choice paths, content references, type -> parent type).

Whether an element repeats is not in those tables: it comes from a ``RepeatsLookup``
the caller passes (see ``resources.fhirpath_patch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fhirpathpy.models import models

__all__ = [
    "R4",
    "Definition",
    "RepeatsLookup",
    "element_type",
    "is_a",
    "is_primitive_type",
    "lookup",
    "resource_type",
    "suffix_type",
]

RepeatsLookup = Callable[[str], bool | None]
"""ElementDefinition path (``Patient.name``, ``HumanName.given``) -> repeats, or None."""

R4: dict[str, Any] = models["r4"]
_PATH2TYPE: dict[str, str] = R4["path2Type"]
_CHOICES: dict[str, list[str]] = R4["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = R4["pathsDefinedElsewhere"]
_PARENT: dict[str, str | None] = R4["type2Parent"]
_BACKBONES = frozenset(
    ".".join(parts[:n])
    for parts in (p.split(".") for p in (*_PATH2TYPE, *_CHOICES))
    for n in range(2, len(parts))
)
_TYPED_CHOICES = {  # "Observation.valueQuantity" -> ("Observation.value", "Quantity")
    path + suffix: (path, suffix) for path, suffixes in _CHOICES.items() for suffix in suffixes
}
_PRIMITIVES = frozenset(name for name in _PARENT if name[:1].islower())  # date, string, ...


@dataclass(frozen=True)
class Definition:
    path: str  # ElementDefinition.path, e.g. "Patient.contact.name"
    type: str | None  # declared type, None for a backbone element or a choice
    backbone: str | None = None  # path holding a backbone element's children
    choices: tuple[str, ...] = ()  # type suffixes of a choice element ("Quantity", ...)


def _lineage(type_name: str) -> Iterator[str]:
    current: str | None = type_name
    while current:
        yield current
        current = _PARENT.get(current) or ("Element" if current == "System.String" else None)


def lookup(type_name: str | None, name: str) -> tuple[Definition | None, str, str | None]:
    """Definition, element name and fixed type suffix of child ``name`` of a type.

    A typed choice name (``valueQuantity``) gives the choice's definition, its name
    (``value``) and the suffix (``Quantity``).
    """
    for owner in _lineage(type_name) if type_name else ():
        path = f"{owner}.{name}"
        if path in _TYPED_CHOICES:
            base, suffix = _TYPED_CHOICES[path]
            return _definition_at(base), base.rsplit(".", 1)[1], suffix
        definition = _definition_at(path)
        if definition is not None:
            return definition, name, None
    return None, name, None


def _definition_at(path: str) -> Definition | None:
    if path in _CHOICES:
        return Definition(path, None, choices=tuple(_CHOICES[path]))
    if path in _PATH2TYPE:
        return Definition(path, _PATH2TYPE[path])
    target = _ELSEWHERE.get(path, path)
    return Definition(path, None, backbone=target) if target in _BACKBONES else None


def suffix_type(suffix: str) -> str:
    """The type a choice suffix names: ``Quantity`` -> Quantity, ``DateTime`` -> dateTime."""
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in _PRIMITIVES else suffix


def element_type(definition: Definition | None, key: str, name: str, data: Any) -> str | None:
    """The FHIR type (or backbone path) of one element, for navigating its children."""
    if definition is None:
        return resource_type(data)
    if definition.choices:
        return suffix_type(key[len(name) :])
    if definition.backbone:
        return definition.backbone
    if definition.type == "Resource":
        return resource_type(data)
    return "string" if definition.type == "System.String" else definition.type


def resource_type(data: Any) -> str | None:
    """A resource's type, when the R4 model knows it."""
    name = data.get("resourceType") if isinstance(data, dict) else None
    return name if name in _PARENT else None


def is_a(type_name: str | None, wanted: str) -> bool:
    return type_name is not None and wanted in _lineage(type_name)


def is_primitive_type(type_name: str | None) -> bool:
    return type_name in _PRIMITIVES or type_name == "System.String"
