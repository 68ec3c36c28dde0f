"""The R4 invariants, for ``resources/data/r4_constraints.json``
(``resources.validation.invariants``, https://hl7.org/fhir/R4/conformance-rules.html#constraints).

Read from the snapshots of the defining StructureDefinitions (resources and complex
datatypes, the abstract bases included; https://hl7.org/fhir/R4/elementdefinition.html
``ElementDefinition.constraint``). A constraint is written once, under the type that
defines it: a snapshot repeats its base types' constraints with a ``source`` naming the
base (``dom-2`` in every resource, ``qty-3`` in ``Age``, ``ext-1`` on every
``extension``), and those copies are left out, so the validator applies the constraints of
a type and of the types it specializes (``parent``).

Output: ``{"fhirVersion", "types": {type: {"parent": type | null, "constraints": [[path,
key, severity, expression, human], ...]}}, "profiles", "profiledElements", "stats"}``,
``path`` relative to the type ("" for the type itself, ``prediction``, ``value[x]``).

The core's datatype profiles (complex types derived by constraint) are not types of their
own: ``profiledElements`` lists the elements of resources and datatypes whose type names
one (``{type: [[path, type code, profile], ...]}``: ``Immunization.doseQuantity`` is a
``SimpleQuantity``, the only one R4's elements name) and ``profiles`` the constraints of
those profiles (``{name: {"type": "Quantity", "constraints": [...]}}``: ``sqty-1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_KINDS = ("resource", "complex-type")


def constraint_definitions(structure_definitions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    defining = [
        sd
        for sd in structure_definitions
        if sd.get("kind") in _KINDS and sd.get("derivation", "specialization") == "specialization"
    ]
    types: dict[str, Any] = {}
    severities: dict[str, int] = {}
    for sd in sorted(defining, key=lambda sd: sd["type"]):
        type_ = sd["type"]
        rules: list[list[Any]] = []
        for element in sd.get("snapshot", {}).get("element", []):
            path = element.get("path", "")
            relative = "" if path == type_ else path.removeprefix(type_ + ".")
            for constraint in element.get("constraint", []):
                if constraint.get("source") not in (None, sd.get("url")):
                    continue  # a base type's constraint, written under that type
                severity = constraint.get("severity", "error")
                severities[severity] = severities.get(severity, 0) + 1
                rules.append(
                    [
                        relative,
                        constraint["key"],
                        severity,
                        constraint.get("expression"),
                        constraint.get("human", ""),
                    ]
                )
        parent = (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None
        types[type_] = {"parent": parent, "constraints": rules}
    profiles = _profiles(structure_definitions)
    profiled = _profiled_elements(defining, set(profiles))
    used = {profile for rows in profiled.values() for _path, _code, profile in rows}
    return {
        "fhirVersion": "4.0.1",
        "types": types,
        "profiles": {name: rules for name, rules in profiles.items() if name in used},
        "profiledElements": profiled,
        "stats": {"constraints": sum(severities.values()), **dict(sorted(severities.items()))},
    }


def _profiles(structure_definitions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The constraints of the core's datatype profiles (complex types derived by constraint)."""
    out: dict[str, Any] = {}
    for sd in structure_definitions:
        if sd.get("kind") != "complex-type" or sd.get("derivation") != "constraint":
            continue
        rules = [
            [
                element["path"].partition(".")[2],
                constraint["key"],
                constraint.get("severity", "error"),
                constraint.get("expression"),
                constraint.get("human", ""),
            ]
            for element in sd.get("snapshot", {}).get("element", [])
            for constraint in element.get("constraint", [])
            if constraint.get("source") in (None, sd.get("url"))
        ]
        out[sd["id"]] = {"type": sd["type"], "constraints": rules}
    return dict(sorted(out.items()))


def _profiled_elements(defining: list[dict[str, Any]], profiles: set[str]) -> dict[str, Any]:
    """Type -> [[path, type code, profile]] of the elements typed with a profile."""
    out: dict[str, Any] = {}
    for sd in sorted(defining, key=lambda sd: sd["type"]):
        type_ = sd["type"]
        for element in sd.get("snapshot", {}).get("element", []):
            path = element.get("path", "")
            for element_type in element.get("type", []):
                for url in element_type.get("profile", []):
                    name = url.rsplit("/", 1)[-1]
                    if name in profiles and path.startswith(type_ + "."):
                        relative = path.removeprefix(type_ + ".")
                        out.setdefault(type_, []).append([relative, element_type["code"], name])
    return out
