"""Reference index values (https://hl7.org/fhir/R4/search.html#reference,
https://hl7.org/fhir/R4/references.html)."""

from __future__ import annotations

from typing import Any

from resources.search.extract import Indexer
from resources.search.model import ReferenceRow, SearchParam


def rows(resource: dict[str, Any], expression: str) -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", "reference", expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


def subject(reference: dict[str, Any]) -> list:
    return rows({"resourceType": "Observation", "subject": reference}, "Observation.subject")


def test_a_relative_reference_gives_type_and_id() -> None:
    assert subject({"reference": "Patient/123"}) == [ReferenceRow("p", "Patient", "123", None)]


def test_a_versioned_reference_gives_the_version() -> None:
    assert subject({"reference": "Patient/123/_history/2"}) == [
        ReferenceRow("p", "Patient", "123", None, "2")
    ]


def test_an_absolute_fhir_url_gives_type_id_and_url() -> None:
    url = "http://example.org/fhir/Patient/123"
    assert subject({"reference": url}) == [ReferenceRow("p", "Patient", "123", url)]


def test_an_absolute_url_that_is_not_a_fhir_resource_gives_the_url() -> None:
    url = "http://example.org/people/123"
    assert subject({"reference": url}) == [ReferenceRow("p", None, None, url)]


def test_a_urn_gives_the_url() -> None:
    urn = "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d"
    assert subject({"reference": urn}) == [ReferenceRow("p", None, None, urn)]


def test_a_contained_reference_is_not_indexed() -> None:
    assert subject({"reference": "#p1"}) == []


def test_a_logical_reference_gives_the_identifier() -> None:
    reference = {"identifier": {"system": "urn:oid:1.2.3", "value": "A1"}, "display": "x"}
    assert subject(reference) == [ReferenceRow("p", None, None, None, None, "urn:oid:1.2.3", "A1")]


def test_a_display_only_reference_is_not_indexed() -> None:
    assert subject({"display": "Someone"}) == []


def test_a_canonical_splits_its_version() -> None:
    resource = {
        "resourceType": "Questionnaire",
        "derivedFrom": ["http://hl7.org/fhir/Questionnaire/base|2.0"],
    }
    assert rows(resource, "Questionnaire.derivedFrom") == [
        ReferenceRow("p", "Questionnaire", "base", "http://hl7.org/fhir/Questionnaire/base", "2.0")
    ]


def test_an_unversioned_canonical_has_no_version() -> None:
    resource = {"resourceType": "QuestionnaireResponse", "questionnaire": "http://x.org/q1"}
    assert rows(resource, "QuestionnaireResponse.questionnaire") == [
        ReferenceRow("p", None, None, "http://x.org/q1", None)
    ]


def test_a_uri_used_as_a_reference() -> None:
    resource = {"resourceType": "ConceptMap", "sourceUri": "http://x.org/fhir/ValueSet/v"}
    assert rows(resource, "(ConceptMap.source as uri)") == [
        ReferenceRow("p", "ValueSet", "v", "http://x.org/fhir/ValueSet/v")
    ]


def test_a_resource_is_indexed_by_its_own_type_and_id() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}],
    }
    assert rows(bundle, "Bundle.entry[0].resource") == [
        ReferenceRow("p", "Composition", "c1", None)
    ]


def test_where_resolve_is_keeps_only_that_target_type() -> None:
    performers = [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"}]
    resource = {"resourceType": "Observation", "performer": performers}
    assert rows(resource, "Observation.performer.where(resolve() is Patient)") == [
        ReferenceRow("p", "Patient", "p1", None)
    ]


def test_patient_of_an_observation_about_a_group_is_not_indexed() -> None:
    resource = {"resourceType": "Observation", "subject": {"reference": "Group/g1"}}
    assert rows(resource, "Observation.subject.where(resolve() is Patient)") == []
