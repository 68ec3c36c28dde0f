"""Compartments: the generator's table and ``resources.compartments``.

CompartmentDefinition: https://hl7.org/fhir/R4/compartmentdefinition.html
Patient compartment: https://hl7.org/fhir/R4/compartmentdefinition-patient.html
Compartment search: https://hl7.org/fhir/R4/search.html#compartments
"""

from __future__ import annotations

from typing import Any

import pytest

from resources import compartments
from resources.search.parameters import search_param
from tests.test_definitions import generate

CD = "http://hl7.org/fhir/CompartmentDefinition/"
SD = "http://hl7.org/fhir/StructureDefinition/"

# --------------------------------------------------------------------------- generator


def _sd(type_: str) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": SD + type_,
        "type": type_,
        "kind": "resource",
        "abstract": False,
        "derivation": "specialization",
        "snapshot": {"element": [{"path": type_, "min": 0, "max": "*"}]},
    }


def _sp(type_: str, code: str, kind: str = "reference") -> dict[str, Any]:
    id_ = f"{type_}-{code}"
    return {
        "resourceType": "SearchParameter",
        "id": id_,
        "url": f"http://hl7.org/fhir/SearchParameter/{id_}",
        "code": code,
        "type": kind,
        "base": [type_],
        "expression": f"{type_}.{code}",
    }


def _cd(id_: str, code: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "CompartmentDefinition",
        "id": id_,
        "url": CD + id_,
        "code": code,
        "search": True,
        "resource": resources,
    }


PACKAGE = [
    _sd("Patient"),
    _sd("Encounter"),
    _sd("Observation"),
    _sp("Observation", "subject"),
    _sp("Observation", "performer"),
    _sp("Observation", "status", "token"),
    _sp("Observation", "encounter"),
    _sp("Patient", "link"),
    _cd(
        "patient",
        "Patient",
        [
            {"code": "Observation", "param": ["subject", "performer"]},
            {"code": "Patient", "param": ["link"]},
            {"code": "Encounter"},
        ],
    ),
    _cd(
        "encounter",
        "Encounter",
        [
            {"code": "Encounter", "param": ["{def}"]},
            {"code": "Observation", "param": ["encounter", "status"]},
        ],
    ),
    _cd("example", "Patient", [{"code": "Encounter", "param": ["subject"]}]),
]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generate(tmp_path_factory.mktemp("compartment-package"), PACKAGE)


def test_members_are_listed_with_their_params(document: dict[str, Any]) -> None:
    assert document["compartments"]["Patient"] == {
        "Observation": ["subject", "performer"],
        "Patient": ["link"],
    }


def test_def_is_kept_verbatim(document: dict[str, Any]) -> None:
    assert document["compartments"]["Encounter"]["Encounter"] == ["{def}"]


def test_non_core_definition_is_skipped(document: dict[str, Any]) -> None:
    assert (
        "not the core Patient compartment"
        in document["skippedCompartmentDefinitions"][CD + "example"]
    )


def test_param_that_is_not_a_reference_is_an_issue(document: dict[str, Any]) -> None:
    issues = document["definitionIssues"][CD + "encounter"]
    assert issues == ["Observation.status is not a reference search parameter"]


# --------------------------------------------------------------------------- shipped data


def test_the_five_compartment_types() -> None:
    expected = {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}
    assert compartments.compartment_types() == expected


def test_observation_is_in_the_patient_compartment_via_subject_and_performer() -> None:
    assert compartments.compartment_params("Patient", "Observation") == ("subject", "performer")


def test_compartment_params_are_reference_params_targeting_the_owner() -> None:
    for code in compartments.compartment_params("Patient", "Observation"):
        param = search_param("Observation", code)
        assert param is not None and param.type == "reference" and "Patient" in param.targets


def test_type_outside_a_compartment_has_no_params() -> None:
    assert compartments.compartment_params("Patient", "Practitioner") == ()
    assert "Practitioner" not in compartments.resources_in_compartment("Patient")


def test_unknown_compartment_has_no_members() -> None:
    assert compartments.compartment_params("Organization", "Observation") == ()
    assert compartments.resources_in_compartment("Organization") == frozenset()


def test_patient_compartment_size() -> None:
    members = compartments.resources_in_compartment("Patient")
    assert len(members) == 66
    assert {"Observation", "Encounter", "Condition", "MedicationRequest"} <= members


def test_encounter_owner_is_in_its_compartment_by_definition() -> None:
    assert compartments.compartment_params("Encounter", "Encounter") == (compartments.OWNER,)
    assert compartments.owner_in_compartment("Encounter")
    assert "Encounter" in compartments.resources_in_compartment("Encounter")


@pytest.mark.parametrize("compartment", ["Practitioner", "RelatedPerson"])
def test_other_owners_listed_with_def(compartment: str) -> None:
    assert compartments.owner_in_compartment(compartment)


def test_r4_puts_patients_in_a_patient_compartment_only_through_link() -> None:
    assert compartments.compartment_params("Patient", "Patient") == ("link",)
    assert not compartments.owner_in_compartment("Patient")


def test_r4_device_compartment_does_not_hold_devices() -> None:
    assert "Device" not in compartments.resources_in_compartment("Device")
    assert not compartments.owner_in_compartment("Device")


def test_every_listed_param_is_a_search_param_of_the_type() -> None:
    for compartment in compartments.compartment_types():
        for type_ in compartments.resources_in_compartment(compartment):
            for code in compartments.compartment_params(compartment, type_):
                assert code == compartments.OWNER or search_param(type_, code), (type_, code)
