"""Search parameter expressions compiled natively, with fhirpathpy as the fallback
(https://hl7.org/fhir/R4/fhirpath.html, https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from typing import Any

import pytest

from resources.search.fhirpath import compile_path

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2024-01-01"},
    "valueQuantity": {"value": 37.5, "unit": "C"},
    "component": [
        {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
        {"code": {"text": "b"}, "valueString": "x"},
    ],
    "performer": [{"reference": "Practitioner/d1"}, {"reference": "Organization/o1"}],
    "extension": [{"url": "http://e/x", "valueString": "ext"}],
}


def values(expression: str, resource: dict[str, Any] = OBSERVATION, native: bool = True) -> list:
    path = compile_path(expression, resource["resourceType"], native=native)
    return [(value, type_name) for value, type_name in path(resource)]


def test_a_member_path_yields_the_element_with_its_type() -> None:
    assert values("Observation.status") == [("final", "code")]


def test_repeating_elements_are_flattened() -> None:
    assert [t for _v, t in values("Observation.component.code")] == ["CodeableConcept"] * 2


def test_a_choice_element_is_found_under_its_typed_name() -> None:
    assert values("Observation.effective") == [({"start": "2024-01-01"}, "Period")]


def test_as_selects_one_type_of_a_choice() -> None:
    assert values("(Observation.value as Quantity)") == [({"value": 37.5, "unit": "C"}, "Quantity")]
    assert values("Observation.value.as(string)") == []


def test_as_filters_a_collection_of_several_items() -> None:
    assert [v for v, _t in values("Observation.component.value.as(Quantity)")] == [{"value": 1}]


def test_as_with_a_capitalised_primitive_name_means_the_fhir_type() -> None:
    resource = {"resourceType": "Observation", "valueDateTime": "2024"}
    assert values("Observation.value.as(DateTime)", resource) == [("2024", "dateTime")]


def test_of_type_follows_type_inheritance() -> None:
    resource = {"resourceType": "Condition", "onsetAge": {"value": 3}}
    assert values("Condition.onset.ofType(Quantity)", resource) == [({"value": 3}, "Age")]


def test_union_concatenates_both_sides() -> None:
    found = values("Observation.code | Observation.component.code")
    assert len(found) == 3


def test_a_type_name_other_than_the_resource_selects_nothing() -> None:
    assert values("Patient.name | Observation.status") == [("final", "code")]


def test_resource_level_expressions_apply_to_every_type() -> None:
    assert values("Resource.id") == [("o1", "System.String")]


@pytest.mark.parametrize(
    ("subject", "found"),
    [("Patient/p1", True), ("Group/g1", False), ("http://other.org/fhir/Patient/p9", True)],
)
def test_where_resolve_is_checks_the_reference_target_type(subject: str, found: bool) -> None:
    resource = {"resourceType": "Observation", "subject": {"reference": subject}}
    result = values("Observation.subject.where(resolve() is Patient)", resource)
    assert result == ([({"reference": subject}, "Reference")] if found else [])


def test_resolve_uses_reference_type_when_there_is_no_reference() -> None:
    subject = {"type": "Patient", "identifier": {"value": "123"}}
    resource = {"resourceType": "Observation", "subject": subject}
    assert values("Observation.subject.where(resolve() is Patient)", resource) == [
        (subject, "Reference")
    ]


def test_contained_references_do_not_resolve() -> None:
    resource = {"resourceType": "Observation", "subject": {"reference": "#p"}}
    assert values("Observation.subject.where(resolve() is Patient)", resource) == []


def test_where_with_equality_filters_by_a_child_value() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
    }
    assert values("Patient.telecom.where(system='email')", patient) == [
        ({"system": "email", "value": "a@b"}, "ContactPoint")
    ]


def test_extension_selects_by_url() -> None:
    assert values("Observation.extension('http://e/x')") == [
        ({"url": "http://e/x", "valueString": "ext"}, "Extension")
    ]


def test_indexer_takes_one_item() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]}
    assert values("Bundle.entry[0].resource", bundle) == [({"resourceType": "Patient"}, "Patient")]


@pytest.mark.parametrize(
    ("deceased", "expected"),
    [({}, False), ({"deceasedBoolean": False}, False), ({"deceasedBoolean": True}, True)]
    + [({"deceasedDateTime": "2020-01-01"}, True)],
)
def test_boolean_expressions_use_three_valued_logic(deceased: dict, expected: bool) -> None:
    patient = {"resourceType": "Patient", **deceased}
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    assert values(expression, patient) == [(expected, "boolean")]


def test_percent_resource_is_the_root_in_a_relative_expression() -> None:
    path = compile_path("%resource.status", None)
    component = OBSERVATION["component"][0]
    assert path.run([(component, "Observation.component")], OBSERVATION) == [("final", "code")]


def test_a_relative_path_is_typed_by_its_context() -> None:
    path = compile_path("value.as(Quantity)", None)
    component = OBSERVATION["component"][0]
    found = path.run([(component, "Observation.component")], OBSERVATION)
    assert found == [({"value": 1}, "Quantity")]


def test_all_core_shapes_compile_natively() -> None:
    for expression in (
        "Observation.subject.where(resolve() is Patient)",
        "(Observation.value as Quantity) | (Observation.value as SampledData)",
        "Patient.deceased.exists() and Patient.deceased != false",
        "QuestionnaireResponse.item.where(hasExtension('http://x')).answer.value.ofType(Reference)",
    ):
        assert compile_path(expression, "Observation").native, expression


def test_unsupported_functions_fall_back_to_fhirpathpy() -> None:
    path = compile_path("Observation.status.substring(0, 3)", "Observation")
    assert not path.native
    assert [v for v, _t in path(OBSERVATION)] == ["fin"]


def test_the_fallback_resolves_references_too() -> None:
    found = values("Observation.performer.where(resolve() is Practitioner)", native=False)
    assert found == [({"reference": "Practitioner/d1"}, "Reference")]


def test_the_fallback_keeps_types_across_unions() -> None:
    found = values("Observation.code | Observation.component.code", native=False)
    assert [t for _v, t in found] == ["CodeableConcept"] * 3


def test_a_failing_fallback_yields_nothing_instead_of_raising() -> None:
    path = compile_path("Observation.component.value as Quantity", "Observation", native=False)
    assert path(OBSERVATION) == []


def test_entry_keys_name_the_top_level_keys_an_expression_starts_from() -> None:
    path = compile_path("Observation.effective", "Observation")
    assert path.entry_keys == {
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveTiming",
        "effectiveInstant",
    }


def test_entry_keys_follow_functions_and_unions() -> None:
    expression = "Observation.subject.where(resolve() is Patient) | Observation.extension('u')"
    assert compile_path(expression, "Observation").entry_keys == {"subject", "extension"}


def test_expressions_that_yield_without_an_element_have_no_entry_keys() -> None:
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    assert compile_path(expression, "Patient").entry_keys is None


def test_where_has_extension_keeps_items_with_that_extension() -> None:
    url = "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject"
    items = [
        {"linkId": "1", "answer": [{"valueReference": {"reference": "Patient/a"}}]},
        {
            "linkId": "2",
            "extension": [{"url": url, "valueBoolean": True}],
            "answer": [{"valueReference": {"reference": "Patient/b"}}],
        },
    ]
    response = {"resourceType": "QuestionnaireResponse", "item": items}
    expression = (
        f"QuestionnaireResponse.item.where(hasExtension('{url}')).answer.value.ofType(Reference)"
    )
    assert values(expression, response) == [({"reference": "Patient/b"}, "Reference")]
