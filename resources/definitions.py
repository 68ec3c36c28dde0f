"""R4 definitions: the project's compact data generated from hl7.fhir.r4.core 4.0.1.

Resource list: https://hl7.org/fhir/R4/resourcelist.html
Datatypes: https://hl7.org/fhir/R4/datatypes.html
Required bindings: https://hl7.org/fhir/R4/terminologies.html#required
Element cardinality: https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.max

The data file ``resources/data/r4_core.json`` (or ``.json.gz``) is produced by
``scripts/generate_definitions.py`` from the official package and committed; it is read
once, on first use. Reading it is the only I/O this module does.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

DATA_DIR = Path(__file__).resolve().parent / "data"
DATA_NAME = "r4_core.json"
FHIR_VERSION = "4.0.1"

# Lazy module constants, resolved by __getattr__ below on first access.
RESOURCE_TYPES: frozenset[str]
DATA_TYPES: frozenset[str]


@dataclass(frozen=True)
class ValueSetCodes:
    """The expansion of a value set: its codes, per code system."""

    url: str
    codings: frozenset[tuple[str, str]]
    codes: frozenset[str]

    def has_code(self, code: str) -> bool:
        """Whether a bare ``code`` value (no system) is in the value set."""
        return code in self.codes

    def has_coding(self, system: str | None, code: str | None) -> bool:
        """Whether the (system, code) pair is in the value set."""
        return (system, code) in self.codings

    @property
    def systems(self) -> frozenset[str]:
        return frozenset(system for system, _code in self.codings)


@cache
def core_data() -> Mapping[str, Any]:
    """The whole generated document (read once)."""
    gz_path = DATA_DIR / (DATA_NAME + ".gz")
    if gz_path.exists():
        raw = gzip.decompress(gz_path.read_bytes())
    else:
        raw = (DATA_DIR / DATA_NAME).read_bytes()
    document = orjson.loads(raw)
    if document.get("fhirVersion") != FHIR_VERSION:
        raise RuntimeError(f"{DATA_NAME} is not for FHIR {FHIR_VERSION}")
    return MappingProxyType(document)


@cache
def resource_types() -> frozenset[str]:
    """Every R4 resource type (concrete specializations of Resource)."""
    return frozenset(core_data()["resourceTypes"])


def is_resource_type(name: object) -> bool:
    return isinstance(name, str) and name in resource_types()


@cache
def data_types() -> frozenset[str]:
    """Every concrete R4 complex datatype (Address, Quantity, Age, Meta, ...)."""
    return frozenset(core_data()["dataTypes"])


@cache
def primitive_types() -> Mapping[str, str | None]:
    """Every R4 primitive type, with the regex its values must match (None for xhtml)."""
    return MappingProxyType(dict(core_data()["primitiveTypes"]))


@cache
def type_profiles() -> Mapping[str, str]:
    """Core constraints used as type names, mapped to their datatype (SimpleQuantity)."""
    return MappingProxyType(dict(core_data()["typeProfiles"]))


@cache
def content_references() -> Mapping[str, str]:
    """Element paths defined by another element (Questionnaire.item.item -> .item)."""
    return MappingProxyType(dict(core_data()["contentReferences"]))


@cache
def _value_sets() -> Mapping[str, ValueSetCodes]:
    out: dict[str, ValueSetCodes] = {}
    for url, systems in core_data()["valueSets"].items():
        codings = frozenset((system, code) for system, codes in systems.items() for code in codes)
        out[url] = ValueSetCodes(url, codings, frozenset(code for _s, code in codings))
    return MappingProxyType(out)


def value_set(url: str) -> ValueSetCodes | None:
    """The expansion of a value set that a required binding uses."""
    return _value_sets().get(url.split("|", 1)[0])


@cache
def required_bindings() -> Mapping[str, ValueSetCodes]:
    """Element path (``Patient.gender``, ``HumanName.use``) -> allowed codes."""
    value_sets = _value_sets()
    bindings = core_data()["requiredBindings"]
    return MappingProxyType({path: value_sets[url] for path, url in bindings.items()})


def required_binding(path: str) -> ValueSetCodes | None:
    """The allowed codes of a required binding on an element path, if expandable."""
    return required_bindings().get(path)


@cache
def skipped_bindings() -> Mapping[str, Mapping[str, str]]:
    """Required bindings the generator could not expand: path -> valueSet, reason."""
    return MappingProxyType(dict(core_data()["skippedBindings"]))


@cache
def _element_repeats() -> Mapping[str, bool]:
    out: dict[str, bool] = {}
    for type_, groups in core_data()["elementRepeats"].items():
        out.update((f"{type_}.{path}", False) for path in groups["single"])
        out.update((f"{type_}.{path}", True) for path in groups["repeating"])
    return MappingProxyType(out)


def element_repeats(path: str) -> bool | None:
    """Whether the element at an ElementDefinition path repeats (its ``max`` is not 1).

    ``path`` is as a snapshot writes it: ``Patient.name``, ``HumanName.given``,
    ``Patient.contact.telecom``, ``Observation.value[x]`` (``Observation.value`` works
    too). Paths below a content reference are resolved through it
    (``Questionnaire.item.item.text`` is ``Questionnaire.item.text``). None when the
    path is not an element of an R4 resource or datatype.
    """
    table = _element_repeats()
    path = _through_content_references(path)
    found = table.get(path)
    return table.get(path + "[x]") if found is None else found


def _through_content_references(path: str) -> str:
    references = content_references()
    for _ in range(path.count(".")):
        parts = path.split(".")
        prefixes = (".".join(parts[:end]) for end in range(2, len(parts)))
        prefix = next((p for p in prefixes if p in references), None)
        if prefix is None:
            break
        path = references[prefix] + path[len(prefix) :]
    return path


def __getattr__(name: str) -> Any:
    """Lazy module constants: ``RESOURCE_TYPES`` and ``DATA_TYPES``."""
    if name == "RESOURCE_TYPES":
        return resource_types()
    if name == "DATA_TYPES":
        return data_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def element_definitions() -> Mapping[str, Any]:
    """Type -> ``{"base": abstract base type, "elements": {path: [min, max, types, ...]}}``:
    the element structure of every resource and complex datatype, written by
    ``scripts/element_definitions.py`` (its docstring describes the entries)."""
    return MappingProxyType(dict(core_data()["elements"]))


@cache
def _top_level(type_: str) -> Mapping[str, frozenset[str]]:
    entry = core_data().get("topLevelElements", {}).get(type_, {})
    return {k: frozenset(entry.get(k, ())) for k in ("summary", "mandatory")}


def summary_elements(type_: str) -> frozenset[str]:
    """Top-level elements marked ``isSummary`` (choice elements as ``value[x]``)."""
    return _top_level(type_)["summary"]


def mandatory_elements(type_: str) -> frozenset[str]:
    """Top-level elements with ``min`` >= 1 (choice elements as ``value[x]``)."""
    return _top_level(type_)["mandatory"]
