"""String index values (https://hl7.org/fhir/R4/search.html#string)."""

from __future__ import annotations

from typing import Any

from resources.search.extract import Indexer
from resources.search.model import ParamType, SearchParam, StringRow


def rows(resource: dict[str, Any], expression: str, type_: ParamType = "string") -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", type_, expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


def test_a_plain_string_is_one_row_normalized_and_as_written() -> None:
    resource = {"resourceType": "Organization", "name": "Hôpital  Saint-Louis"}
    assert rows(resource, "Organization.name") == [
        StringRow("p", "hopital saint-louis", "Hôpital  Saint-Louis")
    ]


def test_human_name_indexes_every_part() -> None:
    name = {
        "text": "Dr Peter James Chalmers Jr",
        "family": "Chalmers",
        "given": ["Peter", "James"],
        "prefix": ["Dr"],
        "suffix": ["Jr"],
        "use": "official",
    }
    found = rows({"resourceType": "Patient", "name": [name]}, "Patient.name")
    assert sorted(r.exact for r in found) == sorted(
        ["Chalmers", "Peter", "James", "Dr", "Jr", "Dr Peter James Chalmers Jr"]
    )


def test_address_indexes_every_part() -> None:
    address = {
        "line": ["534 Erewhon St", "Flat 2"],
        "city": "PleasantVille",
        "district": "Rainbow",
        "state": "Vic",
        "postalCode": "3999",
        "country": "AU",
        "text": "534 Erewhon St PleasantVille",
        "use": "home",
    }
    found = rows({"resourceType": "Patient", "address": [address]}, "Patient.address")
    assert {r.exact for r in found} == {
        "534 Erewhon St",
        "Flat 2",
        "PleasantVille",
        "Rainbow",
        "Vic",
        "3999",
        "AU",
        "534 Erewhon St PleasantVille",
    }


def test_a_string_from_a_human_name_part_path() -> None:
    resource = {"resourceType": "Patient", "name": [{"family": "Ärzt"}]}
    assert rows(resource, "Patient.name.family") == [StringRow("p", "arzt", "Ärzt")]


def test_blank_strings_are_not_indexed() -> None:
    assert rows({"resourceType": "Organization", "name": "  "}, "Organization.name") == []


def test_an_extension_is_indexed_by_its_value() -> None:
    url = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
    patient = {"resourceType": "Patient", "extension": [{"url": url, "valueString": "Smith"}]}
    assert rows(patient, f"Patient.extension('{url}')") == [StringRow("p", "smith", "Smith")]


def test_codeable_concept_text_as_a_string() -> None:
    resource = {"resourceType": "Observation", "valueCodeableConcept": {"text": "Positive"}}
    expression = "(Observation.value as CodeableConcept).text"
    assert rows(resource, expression) == [StringRow("p", "positive", "Positive")]
