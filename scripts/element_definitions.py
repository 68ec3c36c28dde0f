"""The ``elements`` section of the generated R4 data: the element structure of every
resource and complex datatype, for the structural validator
(``resources.validation.structure``, https://hl7.org/fhir/R4/validation.html).

Read from the snapshots of the defining StructureDefinitions
(https://hl7.org/fhir/R4/elementdefinition.html):

- ``elements``: type -> ``{"base": abstract type or null, "elements": {path: entry}}``.
  ``path`` is relative to the type (``contact.telecom``, ``value[x]``); ``entry`` is
  ``[min, max, [type code, ...]]`` (``ElementDefinition.min``, ``.max``, ``.type.code``),
  with a fourth item for the exceptions: ``{"contentReference": "#Questionnaire.item"}``
  (the element is defined by another one, and has no types of its own), or
  ``{"systemType": "http://hl7.org/fhirpath/System.String"}`` for the elements typed with
  a FHIRPath system type (``Element.id``, ``Extension.url``, ``Resource.id``), whose
  type code is then the ``structuredefinition-fhir-type`` extension's (they are plain
  JSON values with no ``_name`` companion: https://hl7.org/fhir/R4/json.html#primitive).
  Elements a type inherits unchanged from the abstract bases ``Resource``,
  ``DomainResource``, ``Element`` and ``BackboneElement`` are left out (the same in every
  type; ``base`` names the one that applies to the type, and a backbone element's own type
  code names its base); the bases themselves are written in full. A type that constrains
  an inherited element stops the generator.
- ``elementTypeFixes``: type codes corrected here (``ELEMENT_TYPE_FIXES``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ABSTRACT_BASES = ("Resource", "DomainResource", "Element", "BackboneElement")
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
FHIR_TYPE_URL = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
# The snapshot types Resource.id as System.String / "string"; the R4 narrative and JSON
# schema make it an ``id`` (https://hl7.org/fhir/R4/resource.html#id).
ELEMENT_TYPE_FIXES = {"Resource.id": "id"}
_KINDS = ("resource", "complex-type")


def _type_codes(element: dict[str, Any]) -> tuple[list[str], str | None]:
    """(type codes, the FHIRPath system type when the element has one)."""
    codes: list[str] = []
    system = None
    for type_ in element.get("type", []):
        code = type_.get("code", "")
        if code.startswith(SYSTEM_PREFIX):
            system = code
            urls = {e.get("url"): e.get("valueUrl") for e in type_.get("extension", [])}
            code = urls.get(FHIR_TYPE_URL) or code.removeprefix(SYSTEM_PREFIX).lower()
        codes.append(code)
    defined_at = element.get("base", {}).get("path") or element.get("path", "")
    fixed = ELEMENT_TYPE_FIXES.get(defined_at)
    return ([fixed] if fixed else codes), system


def _entry(element: dict[str, Any]) -> list[Any]:
    codes, system = _type_codes(element)
    entry: list[Any] = [element.get("min", 0), element.get("max", "*"), codes]
    reference = element.get("contentReference")
    if reference:
        entry.append({"contentReference": reference})
    elif system:
        entry.append({"systemType": system})
    return entry


def _signature(element: dict[str, Any]) -> tuple[Any, ...]:
    return element.get("min"), element.get("max"), repr(_type_codes(element))


def _abstract_base(parents: dict[str, str | None], type_: str) -> str | None:
    current = parents.get(type_)
    seen = {type_}
    while current is not None and current not in seen:
        if current in ABSTRACT_BASES:
            return current
        seen.add(current)
        current = parents.get(current)
    return None


def element_definitions(structure_definitions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``elements`` section (see the module docstring) of the defining structures."""
    defining = [
        sd
        for sd in structure_definitions
        if sd.get("kind") in _KINDS and sd.get("derivation", "specialization") == "specialization"
    ]
    parents = {
        sd["type"]: (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None for sd in defining
    }
    inherited = {
        element["path"]: _signature(element)
        for sd in defining
        if sd["type"] in ABSTRACT_BASES
        for element in sd.get("snapshot", {}).get("element", [])
    }
    out: dict[str, Any] = {}
    for sd in sorted(defining, key=lambda sd: sd["type"]):
        type_ = sd["type"]
        own_type = type_ in ABSTRACT_BASES
        elements: dict[str, list[Any]] = {}
        for element in sd.get("snapshot", {}).get("element", []):
            path = element.get("path", "")
            if not path.startswith(type_ + "."):
                continue
            base_path = element.get("base", {}).get("path", "")
            if not own_type and base_path.split(".", 1)[0] in ABSTRACT_BASES:
                if _signature(element) != inherited.get(base_path):
                    raise ValueError(f"{path} constrains the inherited {base_path}")
                continue
            elements[path.removeprefix(type_ + ".")] = _entry(element)
        base = None if own_type else _abstract_base(parents, type_)
        out[type_] = {"base": base, "elements": elements}
    return out
