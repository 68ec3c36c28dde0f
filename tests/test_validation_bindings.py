"""The write validator, continued: required elements and choices, R4 versus R4B, required
bindings, robustness and the official examples.

JSON representation: https://hl7.org/fhir/R4/json.html
Required bindings: https://hl7.org/fhir/R4/terminologies.html#required
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from resources import definitions
from resources.fhir_json import loads
from resources.validation import r4_models as validation
from resources.validation import validate, validator_covers
from tests.known_invalid_examples import KNOWN_INVALID
from tests.test_r4_examples import R4_ONLY_TYPES
from tests.validation_support import (
    CLINICAL,
    EXAMPLES,
    ISSUE_CODES,
    PORTAL_TYPES,
    ROOT,
    ext,
    observation,
    only,
    patient,
    problem,
)

# --------------------------------------------------------------------------- required, choice


def test_missing_required_element() -> None:
    assert problem({"resourceType": "Observation", "status": "final"}) == (
        "required",
        "Observation.code",
    )


def test_missing_required_primitive() -> None:
    assert problem({"resourceType": "Observation", "code": {"text": "x"}}) == (
        "required",
        "Observation.status",
    )


def test_missing_required_element_in_a_backbone_element() -> None:
    resource = observation(component=[{"valueString": "x"}])
    assert problem(resource) == ("required", "Observation.component[0].code")


def test_extension_needs_a_url() -> None:
    assert problem(patient(extension=[{"valueString": "a"}])) == (
        "required",
        "Patient.extension[0].url",
    )


def test_only_one_type_of_a_choice() -> None:
    resource = observation(valueString="a", valueBoolean=True)
    assert problem(resource) == ("invalid", "Observation.value[x]")


def test_expression_names_the_choice_type() -> None:
    resource = observation(valueQuantity={"value": "1"})
    assert only(resource).expression == ("Observation.valueQuantity.value",)


def test_expression_indexes_repeating_elements() -> None:
    resource = patient(name=[{"given": ["a"]}, {"given": ["a", ""]}])
    assert only(resource).expression == ("Patient.name[1].given[1]",)


def test_diagnostics_are_human_readable() -> None:
    assert "Unknown element 'foo'" in only(patient(foo=1)).diagnostics


# --------------------------------------------------------------------------- R4 versus R4B


def test_extension_value_meta_is_valid_r4() -> None:
    resource = patient(extension=[ext(valueMeta={"versionId": "1", "tag": [{"code": "a"}]})])
    assert validate(resource) == []


def test_extension_value_meta_is_still_validated() -> None:
    resource = patient(extension=[ext(valueMeta={"lastUpdated": "yesterday"})])
    assert problem(resource) == ("value", "Patient.extension[0].valueMeta.lastUpdated")


def test_extension_value_meta_calendar_check() -> None:
    resource = patient(extension=[ext(valueMeta={"lastUpdated": "2021-02-30T00:00:00Z"})])
    assert problem(resource) == ("value", "Patient.extension[0].valueMeta.lastUpdated")


def test_extension_value_meta_counts_as_the_value_choice() -> None:
    resource = patient(extension=[ext(valueMeta={"versionId": "1"}, valueString="a")])
    assert problem(resource) == ("invalid", "Patient.extension[0].value[x]")


def test_element_definition_fixed_meta_is_valid_r4() -> None:
    resource = {
        "resourceType": "StructureDefinition",
        "url": "http://x.org/sd",
        "name": "X",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "differential": {  # sdf-14 / sdf-17: element ids
            "element": [
                {"id": "Patient.meta", "path": "Patient.meta", "fixedMeta": {"versionId": "1"}}
            ]
        },
    }
    assert validate(resource) == []


def test_r4b_only_extension_value_type_is_unknown() -> None:
    resource = patient(extension=[ext(valueCodeableReference={"concept": {"text": "a"}})])
    assert problem(resource) == ("structure", "Patient.extension[0].valueCodeableReference")


def test_r4b_only_element_is_unknown() -> None:
    resource = {
        "resourceType": "ActivityDefinition",
        "status": "draft",
        "subjectCanonical": "http://x.org/g",
    }
    assert problem(resource) == ("structure", "ActivityDefinition.subjectCanonical")


def test_extension_on_an_extension_value_is_valid_r4() -> None:
    value = {"extension": [ext(valueCode="nl")]}
    assert validate(patient(extension=[ext(valueString="a", _valueString=value)])) == []


def test_extension_on_an_extension_value_is_still_validated() -> None:
    value = {"extension": [ext(valueDate="2021-02-30")]}
    resource = patient(extension=[ext(valueString="a", _valueString=value)])
    assert problem(resource) == ("value", "Patient.extension[0].valueString.extension[0].valueDate")


def _reachable_models() -> set[type]:
    """Every model the covered resource types use, through any depth."""
    covered = [t for t in definitions.RESOURCE_TYPES if validator_covers(t)]
    todo = [validation._resource_class(t) for t in covered]
    seen: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls is None or cls in seen:
            continue
        seen.add(cls)
        todo.extend(f.model for f in validation._model(cls).fields.values() if f.model)
    return seen


def test_every_primitive_of_the_library_maps_to_an_r4_primitive() -> None:
    primitives = set(definitions.primitive_types())
    for cls in _reachable_models():
        for f in validation._model(cls).fields.values():
            if f.model is None:
                assert f.type in primitives, (cls.__name__, f.name, f.type)


@pytest.mark.parametrize("model_name", sorted(validation._R4B_ONLY))
def test_r4b_only_table_names_elements_the_library_has(model_name: str) -> None:
    cls = validation.get_fhir_model_class(model_name)
    aliases = {info.alias for info in cls.model_fields.values()}
    assert validation._R4B_ONLY[model_name] <= aliases
    assert not validation._R4B_ONLY[model_name] & set(validation._model(cls).fields)


@pytest.mark.parametrize("model_name", sorted(validation._R4_ONLY_META))
def test_r4_only_meta_table_names_elements_the_library_lacks(model_name: str) -> None:
    cls = validation.get_fhir_model_class(model_name)
    aliases = {info.alias for info in cls.model_fields.values()}
    assert not set(validation._R4_ONLY_META[model_name]) & aliases


# --------------------------------------------------------------------------- required bindings


def test_gender_outside_the_value_set_is_rejected() -> None:
    assert problem(patient(gender="bogus")) == ("code-invalid", "Patient.gender")


def test_binding_diagnostics_name_the_value_set_and_codes() -> None:
    diagnostics = only(patient(gender="bogus")).diagnostics
    assert "administrative-gender" in diagnostics and "female" in diagnostics


@pytest.mark.parametrize(
    ("elements", "where"),
    [
        ({"name": [{"use": "nick"}]}, "Patient.name[0].use"),
        ({"address": [{"use": "house"}]}, "Patient.address[0].use"),
        ({"telecom": [{"system": "pager2", "value": "1"}]}, "Patient.telecom[0].system"),
        ({"identifier": [{"use": "main", "value": "1"}]}, "Patient.identifier[0].use"),
        (
            {
                "text": {
                    "status": "done",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
                }
            },
            "Patient.text.status",
        ),
        ({"contact": [{"gender": "bogus"}]}, "Patient.contact[0].gender"),
    ],
)
def test_required_bindings_apply_inside_datatypes(elements: dict[str, Any], where: str) -> None:
    assert problem(patient(**elements)) == ("code-invalid", where)


def test_quantity_comparator_binding() -> None:
    resource = observation(valueQuantity={"value": 1, "comparator": "~"})
    assert problem(resource) == ("code-invalid", "Observation.valueQuantity.comparator")


def test_binding_applies_to_quantity_profiles() -> None:
    resource = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "onsetAge": {"value": 3, "comparator": "about"},
    }
    assert problem(resource) == ("code-invalid", "Condition.onsetAge.comparator")


def test_binding_applies_inside_extensions() -> None:
    resource = patient(extension=[ext(valueQuantity={"value": 1, "comparator": "~"})])
    assert problem(resource) == ("code-invalid", "Patient.extension[0].valueQuantity.comparator")


def test_binding_applies_through_content_references() -> None:
    resource = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "essay"}]}],
    }
    assert problem(resource) == ("code-invalid", "Questionnaire.item[0].item[0].type")


def test_binding_applies_in_contained_resources() -> None:
    resource = observation(contained=[patient(id="p", gender="bogus")])
    assert problem(resource) == ("code-invalid", "Observation.contained[0].gender")


def test_binding_applies_in_bundle_entries() -> None:
    resource = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient(gender="bogus")}],
    }
    assert problem(resource) == ("code-invalid", "Bundle.entry[0].resource.gender")


def condition(clinical_status: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "clinicalStatus": clinical_status,
    }


def test_codeable_concept_with_a_coding_from_the_value_set_is_valid() -> None:
    codings = [{"system": "http://x.org", "code": "a"}, {"system": CLINICAL, "code": "active"}]
    assert validate(condition({"coding": codings})) == []


def test_codeable_concept_coding_from_another_system_is_rejected() -> None:
    status = {"coding": [{"system": "http://x.org", "code": "active"}]}
    assert problem(condition(status)) == ("code-invalid", "Condition.clinicalStatus")


def test_codeable_concept_with_only_text_is_rejected() -> None:
    assert problem(condition({"text": "active"})) == ("code-invalid", "Condition.clinicalStatus")


def test_bound_primitive_with_only_an_extension_is_valid() -> None:
    assert validate(patient(_gender={"extension": [ext(valueString="x")]})) == []


# --------------------------------------------------------------------------- robustness


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = ext(valueString="leaf")
    for _ in range(depth):
        node = ext(extension=[node])
    return patient(extension=[node])


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Patient", 1: 2},
        {"resourceType": "Patient", "name": [{"given": [{"a": 1}]}]},
        {"resourceType": "Patient", "name": [["x"]]},
        {"resourceType": "Patient", "name": [{"_given": "x"}]},
        {"resourceType": "Patient", "_name": [1]},
        {"resourceType": "Patient", "contained": ["x", None, {"resourceType": 1}]},
        {"resourceType": "Patient", "extension": [{"url": {"a": 1}}]},
        {"resourceType": "Patient", "birthDate": {1, 2}},
        {"resourceType": "Patient", "photo": [{"data": b"abc"}]},
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Citation"}}]},
        {"resourceType": "Observation", "valueQuantity": {"value": float("inf")}},
    ],
)
def test_odd_shapes_give_issues_not_exceptions(resource: Any) -> None:
    issues = validate(resource)
    assert issues and {i.code for i in issues} <= ISSUE_CODES


def test_deep_nesting_within_limits_is_valid() -> None:
    assert validate(_deep(40)) == []


def test_absurd_nesting_gives_an_issue() -> None:
    issues = validate(_deep(5000))
    assert [i.code for i in issues] == ["structure"]


# --------------------------------------------------------------------------- official examples


@pytest.fixture(scope="module")
def examples() -> Path:
    if not (EXAMPLES / "package.json").exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is needed to fetch the R4 examples")
        script = ROOT / "scripts" / "fetch_r4_examples.sh"
        subprocess.run(["bash", str(script)], check=True, capture_output=True, timeout=600)
    return EXAMPLES


def _examples_of(folder: Path, type_: str) -> list[Path]:
    paths = sorted(folder.glob(f"{type_}-*.json"))
    return [p for p in paths if json.loads(p.read_bytes()).get("resourceType") == type_]


@pytest.mark.parametrize("type_", PORTAL_TYPES + [t for t, n in R4_ONLY_TYPES.items() if n])
def test_official_examples_are_valid(examples: Path, type_: str) -> None:
    paths = _examples_of(examples, type_)
    assert paths, f"no {type_} examples"
    failures = {}
    for path in paths:
        issues = validate(loads(path.read_bytes()))
        if path.name in KNOWN_INVALID:
            assert issues, f"{path.name} should be rejected: {KNOWN_INVALID[path.name]}"
        elif issues:
            failures[path.name] = [(i.code, i.expression, i.diagnostics) for i in issues[:3]]
    assert failures == {}


def test_every_official_example_but_the_known_invalid_is_valid(examples: Path) -> None:
    paths = [p for p in sorted(examples.glob("*.json")) if p.name != "package.json"]
    invalid = {p.name for p in paths if validate(loads(p.read_bytes()))}
    assert len(paths) == 5306  # of all 146 types
    assert invalid == set(KNOWN_INVALID)


@pytest.mark.parametrize("name", sorted(KNOWN_INVALID))
def test_known_invalid_official_examples_are_rejected(examples: Path, name: str) -> None:
    assert validate(loads((examples / name).read_bytes())) != []
