"""Token index values (https://hl7.org/fhir/R4/search.html#token)."""

from __future__ import annotations

from typing import Any

from resources.search.extract import Indexer
from resources.search.model import SearchParam, TokenRow


def rows(resource: dict[str, Any], expression: str) -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", "token", expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


def test_a_code_is_a_value_without_system() -> None:
    resource = {"resourceType": "Patient", "language": "en"}
    assert rows(resource, "Patient.language") == [TokenRow("p", None, "en")]


def test_a_code_with_a_required_binding_gets_the_system_of_its_value_set() -> None:
    resource = {"resourceType": "Observation", "status": "final"}
    assert rows(resource, "Observation.status") == [
        TokenRow("p", "http://hl7.org/fhir/observation-status", "final")
    ]


def test_a_code_outside_its_value_set_has_no_system() -> None:
    resource = {"resourceType": "Patient", "gender": "robot"}
    assert rows(resource, "Patient.gender") == [TokenRow("p", None, "robot")]


def test_a_coding_gives_system_code_and_display_text() -> None:
    coding = {"system": "http://snomed.info/sct", "code": "1234", "display": "Fëver"}
    resource = {"resourceType": "Encounter", "class": coding}
    assert rows(resource, "Encounter.class") == [
        TokenRow("p", "http://snomed.info/sct", "1234", "fever")
    ]


def test_a_codeable_concept_gives_each_coding_and_its_text() -> None:
    concept = {
        "coding": [
            {"system": "http://loinc.org", "code": "8310-5"},
            {"system": "http://snomed.info/sct", "code": "386725007", "display": "Body temp"},
        ],
        "text": "Body  Temperature",
    }
    resource = {"resourceType": "Observation", "code": concept}
    assert rows(resource, "Observation.code") == [
        TokenRow("p", "http://loinc.org", "8310-5"),
        TokenRow("p", "http://snomed.info/sct", "386725007", "body temp"),
        TokenRow("p", None, None, "body temperature"),
    ]


def test_an_identifier_gives_system_value_and_type_for_of_type() -> None:
    identifier = {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
            "text": "Medical record",
        },
        "system": "urn:oid:1.2.36.146.595.217.0.1",
        "value": "12345",
    }
    resource = {"resourceType": "Patient", "identifier": [identifier]}
    assert rows(resource, "Patient.identifier") == [
        TokenRow(
            "p",
            "urn:oid:1.2.36.146.595.217.0.1",
            "12345",
            "medical record",
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "MR",
        )
    ]


def test_an_identifier_without_type_is_one_row() -> None:
    resource = {"resourceType": "Patient", "identifier": [{"system": "s", "value": "v"}]}
    assert rows(resource, "Patient.identifier") == [TokenRow("p", "s", "v")]


def test_a_contact_point_gives_its_value() -> None:
    telecom = [{"system": "email", "value": "a@example.org", "use": "work"}]
    resource = {"resourceType": "Patient", "telecom": telecom}
    assert rows(resource, "Patient.telecom.where(system='email')") == [
        TokenRow("p", None, "a@example.org")
    ]


def test_a_contact_point_without_value_is_not_indexed() -> None:
    resource = {"resourceType": "Patient", "telecom": [{"use": "home"}]}
    assert rows(resource, "Patient.telecom") == []


def test_a_boolean_is_true_or_false() -> None:
    resource = {"resourceType": "Patient", "active": False}
    assert rows(resource, "Patient.active") == [TokenRow("p", None, "false")]


def test_a_computed_boolean_is_indexed() -> None:
    resource = {"resourceType": "Patient", "deceasedDateTime": "2020-02-02"}
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    assert rows(resource, expression) == [TokenRow("p", None, "true")]


def test_identical_values_are_indexed_once() -> None:
    concept = {"coding": [{"system": "s", "code": "c"}]}
    resource = {"resourceType": "Observation", "category": [concept, concept]}
    assert rows(resource, "Observation.category") == [TokenRow("p", "s", "c")]
