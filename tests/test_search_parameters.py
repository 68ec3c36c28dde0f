"""Search parameter definitions: the generator's per-type table and ``resources.search.parameters``.

SearchParameter: https://hl7.org/fhir/R4/searchparameter.html
Parameters for all resources: https://hl7.org/fhir/R4/search.html#all
Composite parameters: https://hl7.org/fhir/R4/search.html#composite

The generator is tested on a small package built here; the committed data (all 1,400
SearchParameters of hl7.fhir.r4.core 4.0.1) through ``resources.search.parameters``.
"""

from __future__ import annotations

from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

from resources.definitions import core_data
from resources.search import parameters
from resources.search.model import Component
from tests.test_definitions import gen, generate

SP = "http://hl7.org/fhir/SearchParameter/"
SD = "http://hl7.org/fhir/StructureDefinition/"

# --------------------------------------------------------------------------- union splitting


@pytest.mark.parametrize(
    ("expression", "parts"),
    [
        ("Patient.name", ["Patient.name"]),
        ("Patient.name | Person.name", ["Patient.name", "Person.name"]),
        ("A.x|B.y", ["A.x", "B.y"]),
        (
            "(A.value as Quantity) | (A.value as Range)",
            ["(A.value as Quantity)", "(A.value as Range)"],
        ),
        ("A.x.where(a | b) | B.y", ["A.x.where(a | b)", "B.y"]),
        ("A.x.where(s = 'a|b') | B.y", ["A.x.where(s = 'a|b')", "B.y"]),
        ("A.x.where(s = 'it\\'s|') | B.y", ["A.x.where(s = 'it\\'s|')", "B.y"]),
        ("A.`odd|name` | B.y", ["A.`odd|name`", "B.y"]),
        ("A.x[0] | B.y", ["A.x[0]", "B.y"]),
        ("", []),
    ],
)
def test_split_union_at_top_level_bars_only(expression: str, parts: list[str]) -> None:
    assert gen.split_union(expression) == parts


# --------------------------------------------------------------------------- generator


def _element(path: str, *types: str, targets: tuple[str, ...] = (), **extra: Any) -> dict:
    element: dict[str, Any] = {"path": path, "min": 0, "max": "1", **extra}
    if types:
        element["type"] = [{"code": t} for t in types]
    if targets:
        element["type"][-1]["targetProfile"] = [SD + t for t in targets]
    return element


def _sd(type_: str, base: str | None, *elements: dict, abstract: bool = False) -> dict:
    sd: dict[str, Any] = {
        "resourceType": "StructureDefinition",
        "url": SD + type_,
        "type": type_,
        "kind": "resource",
        "abstract": abstract,
        "snapshot": {"element": [_element(type_), *elements]},
    }
    if base is not None:
        sd.update(derivation="specialization", baseDefinition=SD + base)
    return sd


def _sp(id_: str, code: str, type_: str, base: list[str], expression: str = "", **extra: Any):
    sp: dict[str, Any] = {"resourceType": "SearchParameter", "id": id_, "url": SP + id_}
    sp.update(code=code, type=type_, base=base, **extra)
    if expression:
        sp["expression"] = expression
    return sp


PACKAGE = [
    _sd("Resource", None, _element("Resource.id", "id"), abstract=True),
    _sd("DomainResource", "Resource", abstract=True),
    _sd("Bundle", "Resource", _element("Bundle.type", "code")),
    _sd(
        "Patient",
        "DomainResource",
        _element("Patient.link.other", "Reference", targets=("Patient", "RelatedPerson")),
    ),
    _sd(
        "Observation",
        "DomainResource",
        _element("Observation.subject", "Reference", targets=("Patient", "Group", "Device")),
        _element("Observation.value[x]", "Quantity", "Reference", targets=("Device",)),
    ),
    _sp("Resource-id", "_id", "token", ["Resource"], "Resource.id"),
    _sp("DomainResource-text", "_text", "string", ["DomainResource"]),
    _sp(
        "clinical-patient",
        "patient",
        "reference",
        ["Observation", "Patient"],
        "Observation.subject.where(resolve() is Patient) | Patient.link.other",
        target=["Patient", "Group"],
    ),
    _sp("Observation-focus", "focus", "reference", ["Observation"], "Observation.subject"),
    _sp(
        "Observation-value-ref",
        "value-ref",
        "reference",
        ["Observation"],
        "(Observation.value as Reference)",
        target=["Device", "Patient"],
    ),
    _sp("Patient-name", "name", "string", ["Patient"], "name | alias"),
    _sp("Observation-code", "code", "token", ["Observation"], "Observation.code"),
    _sp(
        "Observation-code-value",
        "code-value",
        "composite",
        ["Observation"],
        "Observation | Observation.component",
        component=[
            {"definition": SP + "Observation-code", "expression": "code"},
            {"definition": SP + "Observation-value-ref", "expression": "value.as(Reference)"},
            {"definition": SP + "nowhere", "expression": "x"},
        ],
    ),
    _sp("Patient-gender", "gender", "token", ["Patient"], "Patient.gender | Bundle.type"),
    _sp("shared-birth", "birth", "date", ["Patient", "Observation"], "Patient.birthDate"),
    _sp("example", "_id", "token", ["Resource"], "id"),
    {"resourceType": "SearchParameter", "id": "x-ext", "url": SP + "x-ext", "code": "ext"},
]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generate(tmp_path_factory.mktemp("search-package"), PACKAGE)


@pytest.fixture(scope="module")
def table(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return document["searchParameters"]


def test_every_concrete_resource_type_has_a_table(table: dict) -> None:
    assert sorted(table) == ["Bundle", "Observation", "Patient"]


def test_resource_level_parameter_applies_to_every_type(table: dict) -> None:
    assert {t for t, params in table.items() if "_id" in params} == set(table)


def test_base_type_name_becomes_the_concrete_type(table: dict) -> None:
    assert table["Bundle"]["_id"]["expression"] == "Bundle.id"


def test_domain_resource_parameter_skips_types_derived_from_resource(table: dict) -> None:
    assert "_text" in table["Patient"]
    assert "_text" not in table["Bundle"]


def test_definition_without_expression_has_null_expression(table: dict) -> None:
    assert table["Patient"]["_text"] == {
        "expression": None,
        "type": "string",
        "url": SP + "DomainResource-text",
    }


def test_union_is_restricted_to_each_type(table: dict) -> None:
    assert (
        table["Observation"]["patient"]["expression"]
        == "Observation.subject.where(resolve() is Patient)"
    )
    assert table["Patient"]["patient"]["expression"] == "Patient.link.other"


def test_unqualified_parts_are_led_by_the_type(table: dict) -> None:
    assert table["Patient"]["name"]["expression"] == "Patient.name | Patient.alias"


def test_resolve_is_narrows_the_targets(table: dict) -> None:
    assert table["Observation"]["patient"]["targets"] == ["Patient"]


def test_element_target_profiles_narrow_the_targets(table: dict) -> None:
    assert table["Patient"]["patient"]["targets"] == ["Patient"]


def test_cast_part_takes_the_targets_of_that_choice_type(table: dict) -> None:
    assert table["Observation"]["value-ref"]["targets"] == ["Device"]


def test_targets_come_from_the_element_when_the_definition_has_none(table: dict) -> None:
    assert table["Observation"]["focus"]["targets"] == ["Device", "Group", "Patient"]


def test_composite_components_are_resolved_to_code_and_type(table: dict) -> None:
    components = table["Observation"]["code-value"]["components"]
    assert components == [
        {"code": "code", "type": "token", "expression": "code"},
        {"code": "value-ref", "type": "reference", "expression": "value.as(Reference)"},
    ]


def test_bare_type_part_of_a_composite_is_kept(table: dict) -> None:
    assert table["Observation"]["code-value"]["expression"] == "Observation | Observation.component"


def test_common_parameters_keep_the_resource_expression(document: dict[str, Any]) -> None:
    assert document["commonSearchParameters"]["_id"]["expression"] == "Resource.id"
    assert "_text" not in document["commonSearchParameters"]


def test_examples_and_definitions_without_base_are_skipped(document: dict[str, Any]) -> None:
    skipped = document["skippedSearchParameters"]
    assert "example" in skipped[SP + "example"]
    assert "no base" in skipped[SP + "x-ext"]


def test_part_for_a_type_outside_the_base_is_an_issue(document: dict[str, Any]) -> None:
    assert document["definitionIssues"][SP + "Patient-gender"] == [
        "expression part 'Bundle.type' applies to no base type"
    ]


def test_base_type_that_no_part_applies_to_is_an_issue(document: dict[str, Any]) -> None:
    issues = document["definitionIssues"][SP + "shared-birth"]
    assert issues == ["no part of the expression applies to Observation"]


def test_unknown_component_definition_is_an_issue(document: dict[str, Any]) -> None:
    issues = document["definitionIssues"][SP + "Observation-code-value"]
    assert issues == [f"component definition {SP}nowhere is not in the package"]


def test_search_parameter_stats(document: dict[str, Any]) -> None:
    stats = document["stats"]
    assert stats["searchParameterDefinitions"] == 12
    assert stats["searchParameterDefinitionsUsed"] == 10
    assert stats["searchParameterDefinitionsSkipped"] == 2


# --------------------------------------------------------------------------- shipped data


def test_all_1400_definitions_are_accounted_for() -> None:
    stats = core_data()["stats"]
    assert stats["searchParameterDefinitions"] == 1400
    assert (
        stats["searchParameterDefinitionsUsed"] + stats["searchParameterDefinitionsSkipped"] == 1400
    )
    assert stats["searchParameterDefinitionsSkipped"] == 13


def test_every_expression_part_of_the_package_is_assigned() -> None:
    assert core_data()["definitionIssues"] == {}


def test_per_type_entry_count() -> None:
    assert core_data()["stats"]["searchParameterEntries"] == 3165
    total = sum(len(parameters.search_params(t)) for t in core_data()["resourceTypes"])
    assert total == 2582


def test_every_resource_type_has_parameters() -> None:
    for type_ in core_data()["resourceTypes"]:
        assert "_id" in parameters.search_params(type_), type_


def test_observation_code() -> None:
    param = parameters.search_param("Observation", "code")
    assert param is not None
    assert (param.resource_type, param.code, param.type) == ("Observation", "code", "token")
    assert param.expression == "Observation.code"
    assert param.url == SP + "clinical-code"
    assert (param.targets, param.components) == ((), ())


def test_observation_patient() -> None:
    param = parameters.search_param("Observation", "patient")
    assert param is not None
    assert param.type == "reference"
    assert param.expression == "Observation.subject.where(resolve() is Patient)"
    assert param.url == SP + "clinical-patient"
    assert param.targets == ("Patient",)


def test_observation_subject_targets() -> None:
    param = parameters.search_param("Observation", "subject")
    assert param is not None
    assert param.targets == ("Device", "Group", "Location", "Patient")


def test_observation_code_value_quantity() -> None:
    param = parameters.search_param("Observation", "code-value-quantity")
    assert param is not None
    assert (param.type, param.expression) == ("composite", "Observation")
    assert param.components == (
        Component("code", "token", "code"),
        Component("value-quantity", "quantity", "value.as(Quantity)"),
    )


def test_component_code_value_quantity_selects_components() -> None:
    param = parameters.search_param("Observation", "component-code-value-quantity")
    assert param is not None
    assert param.expression == "Observation.component"
    assert [c.code for c in param.components] == ["component-code", "component-value-quantity"]


def test_patient_name() -> None:
    param = parameters.search_param("Patient", "name")
    assert param is not None
    assert (param.type, param.expression) == ("string", "Patient.name")
    assert param.url == SP + "Patient-name"


def test_patient_birthdate() -> None:
    param = parameters.search_param("Patient", "birthdate")
    assert param is not None
    assert (param.type, param.expression) == ("date", "Patient.birthDate")
    assert param.url == SP + "individual-birthdate"


@pytest.mark.parametrize("type_", ["Patient", "Bundle", "Binary", "Parameters", "Observation"])
def test_last_updated_on_any_type(type_: str) -> None:
    param = parameters.search_param(type_, "_lastUpdated")
    assert param is not None
    assert (param.type, param.expression) == ("date", f"{type_}.meta.lastUpdated")
    assert param.url == SP + "Resource-lastUpdated"


def test_multi_type_union_keeps_only_this_types_parts() -> None:
    param = parameters.search_param("MedicationRequest", "medication")
    assert param is not None
    assert param.expression == "(MedicationRequest.medication as Reference)"
    assert param.targets == ("Medication",)


def test_union_of_several_parts_for_one_type() -> None:
    param = parameters.search_param("Observation", "value-quantity")
    assert param is not None
    assert (
        param.expression == "(Observation.value as Quantity) | (Observation.value as SampledData)"
    )


def test_insurance_plan_name_is_qualified() -> None:
    param = parameters.search_param("InsurancePlan", "name")
    assert param is not None
    assert param.expression == "InsurancePlan.name | InsurancePlan.alias"


def test_document_reference_relationship_components_are_corrected() -> None:
    param = parameters.search_param("DocumentReference", "relationship")
    assert param is not None
    assert param.components == (
        Component("relatesto", "reference", "target"),
        Component("relation", "token", "code"),
    )
    assert SP + "DocumentReference-relationship" in core_data()["searchParameterFixes"]


def test_common_params_are_the_resource_level_ones() -> None:
    common = parameters.common_params()
    assert sorted(common) == ["_id", "_lastUpdated", "_profile", "_security", "_source", "_tag"]
    assert common["_tag"].expression == "Resource.meta.tag"
    assert common["_tag"].resource_type == "Resource"


def test_parameters_without_expression_are_kept_apart() -> None:
    assert "_text" not in parameters.search_params("Patient")
    unindexed = parameters.params_without_expression("Patient")
    assert sorted(unindexed) == [
        "_content",
        "_filter",
        "_query",
        "_text",
        "age",
        "birthOrderBoolean",
    ]


def test_text_is_only_defined_for_domain_resources() -> None:
    assert "_text" not in parameters.params_without_expression("Bundle")


@pytest.mark.parametrize(
    "code", ["_has", "_type", "_list", "_query", "_filter", "_text", "_content", "near"]
)
def test_special_parameters_are_marked(code: str) -> None:
    assert parameters.is_special(code)


@pytest.mark.parametrize("code", ["_id", "_lastUpdated", "_tag", "code", "patient"])
def test_plain_parameters_are_not_special(code: str) -> None:
    assert not parameters.is_special(code)


def test_near_has_an_expression_and_is_special() -> None:
    param = parameters.search_param("Location", "near")
    assert param is not None
    assert (param.type, param.expression) == ("special", "Location.position")


def test_unknown_type_or_code_finds_nothing() -> None:
    assert parameters.search_params("NotAType") == {}
    assert parameters.search_param("Patient", "no-such-param") is None


def test_mapping_is_read_only_and_cached() -> None:
    params = parameters.search_params("Patient")
    assert params is parameters.search_params("Patient")
    with pytest.raises(TypeError):
        params["x"] = params["name"]  # type: ignore[index]


def test_every_expression_compiles_with_fhirpathpy() -> None:
    failures = []
    for type_ in core_data()["resourceTypes"]:
        for param in parameters.search_params(type_).values():
            for expression in (param.expression, *(c.expression for c in param.components)):
                try:
                    fhirpathpy.compile(expression, models["r4"])
                except Exception as exc:
                    failures.append((type_, param.code, str(exc)))
    assert failures == []


def test_resource_level_expression_evaluates_on_the_concrete_type() -> None:
    param = parameters.search_param("Observation", "_lastUpdated")
    assert param is not None and param.expression is not None
    observation = {"resourceType": "Observation", "meta": {"lastUpdated": "2020-01-02T03:04:05Z"}}
    found = fhirpathpy.evaluate(observation, param.expression, {}, models["r4"])
    assert found == ["2020-01-02T03:04:05Z"]
