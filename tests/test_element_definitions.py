"""The ``elements`` section of the generated R4 data (scripts/element_definitions.py), the
element structure the validator is compiled from.

Element definitions: https://hl7.org/fhir/R4/elementdefinition.html
(``min``, ``max``, ``type.code``, ``contentReference``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from resources import definitions

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_STRING = "http://hl7.org/fhirpath/System.String"
FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def _load() -> ModuleType:
    path = ROOT / "scripts" / "element_definitions.py"
    spec = importlib.util.spec_from_file_location("element_definitions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load()


def _el(path: str, *types: str, base: str | None = None, **extra: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"path": path, "min": 0, "max": "1", **extra}
    if types:
        element["type"] = [{"code": t} for t in types]
    element["base"] = {"path": base or path}
    return element


def _system(path: str, fhir_type: str, base: str | None = None) -> dict[str, Any]:
    element = _el(path, base=base)
    extension = {"url": FHIR_TYPE, "valueUrl": fhir_type}
    element["type"] = [{"code": SYSTEM_STRING, "extension": [extension]}]
    return element


def _sd(type_: str, base: str | None, elements: list[dict], **extra: Any) -> dict[str, Any]:
    sd: dict[str, Any] = {
        "resourceType": "StructureDefinition",
        "type": type_,
        "kind": "resource",
        "derivation": "specialization",
        "snapshot": {"element": [_el(type_), *elements]},
        **extra,
    }
    if base:
        sd["baseDefinition"] = f"http://hl7.org/fhir/StructureDefinition/{base}"
    return sd


RESOURCE = _sd("Resource", None, [_system("Resource.id", "string")], abstract=True)
DOMAIN = _sd(
    "DomainResource",
    "Resource",
    [
        _system("DomainResource.id", "string", base="Resource.id"),
        _el("DomainResource.extension", "Extension", base="DomainResource.extension", max="*"),
    ],
    abstract=True,
)
ELEMENT = _sd("Element", None, [_system("Element.id", "string")], abstract=True)


def _patient(*more: dict[str, Any]) -> dict[str, Any]:
    return _sd(
        "Patient",
        "DomainResource",
        [
            _system("Patient.id", "string", base="Resource.id"),
            _el("Patient.extension", "Extension", base="DomainResource.extension", max="*"),
            _el("Patient.name", "HumanName", max="*"),
            _el("Patient.contact", "BackboneElement"),
            _system("Patient.contact.id", "string", base="Element.id"),
            _el("Patient.contact.gender", "code", min=1),
            _el("Patient.deceased[x]", "boolean", "dateTime"),
            _el("Patient.link", contentReference="#Patient.contact"),
            *more,
        ],
    )


def generate(*more: dict[str, Any]) -> dict[str, Any]:
    return gen.element_definitions([RESOURCE, DOMAIN, ELEMENT, _patient(*more)])


def test_entries_are_min_max_and_types() -> None:
    patient = generate()["Patient"]["elements"]
    assert patient["name"] == [0, "*", ["HumanName"]]
    assert patient["contact.gender"] == [1, "1", ["code"]]
    assert patient["deceased[x]"] == [0, "1", ["boolean", "dateTime"]]


def test_content_reference_has_no_types_of_its_own() -> None:
    entry = generate()["Patient"]["elements"]["link"]
    assert entry == [0, "1", [], {"contentReference": "#Patient.contact"}]


def test_inherited_elements_are_left_out_and_the_base_named() -> None:
    patient = generate()["Patient"]
    assert patient["base"] == "DomainResource"
    assert {"id", "extension", "contact.id"}.isdisjoint(patient["elements"])


def test_abstract_bases_are_written_in_full() -> None:
    out = generate()
    assert out["DomainResource"]["base"] is None
    assert set(out["DomainResource"]["elements"]) == {"id", "extension"}


def test_system_typed_elements_take_the_fhir_type_and_resource_id_is_an_id() -> None:
    out = generate()
    assert out["Element"]["elements"]["id"] == [0, "1", ["string"], {"systemType": SYSTEM_STRING}]
    assert out["Resource"]["elements"]["id"][2] == ["id"]
    assert out["DomainResource"]["elements"]["id"][2] == ["id"]


def test_a_type_that_constrains_an_inherited_element_stops_the_generator() -> None:
    constrained = _el("Patient.meta", "Meta", base="Resource.id", min=1)
    with pytest.raises(ValueError, match="constrains the inherited Resource.id"):
        generate(constrained)


def test_profiles_are_not_element_definitions() -> None:
    profile = _sd("Patient", "Patient", [], derivation="constraint", id="us-core")
    out = gen.element_definitions([RESOURCE, DOMAIN, ELEMENT, _patient(), profile])
    assert out["Patient"]["elements"]["name"] == [0, "*", ["HumanName"]]


# --------------------------------------------------------------------------- committed data


@pytest.mark.parametrize(
    ("type_", "base"),
    [
        ("Patient", "DomainResource"),
        ("Bundle", "Resource"),
        ("HumanName", "Element"),
        ("Age", "Element"),
        ("Timing", "BackboneElement"),
        ("Element", None),
    ],
)
def test_each_type_names_its_abstract_base(type_: str, base: str | None) -> None:
    assert definitions.element_definitions()[type_]["base"] == base


def test_committed_entries() -> None:
    elements = definitions.element_definitions()
    assert elements["Patient"]["elements"]["contact.telecom"] == [0, "*", ["ContactPoint"]]
    assert elements["Extension"]["elements"]["url"][:3] == [1, "1", ["uri"]]
    assert elements["Resource"]["elements"]["id"][2] == ["id"]
    item = elements["Questionnaire"]["elements"]["item.item"]
    assert item[3] == {"contentReference": "#Questionnaire.item"}
    assert len(elements["Extension"]["elements"]["value[x]"][2]) == 50  # Meta included


def test_element_definition_count() -> None:
    assert definitions.core_data()["stats"]["elementDefinitions"] == 4759
    assert definitions.core_data()["elementTypeFixes"] == {"Resource.id": "id"}
