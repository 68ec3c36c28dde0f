"""The write validator: JSON rules, structure, primitive values, required bindings, R4.

JSON representation: https://hl7.org/fhir/R4/json.html
Primitive types: https://hl7.org/fhir/R4/datatypes.html#primitive
Required bindings: https://hl7.org/fhir/R4/terminologies.html#required
Element rule ele-1: https://hl7.org/fhir/R4/element.html#invs
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from resources import definitions
from resources.errors import Issue
from resources.fhir_json import loads
from resources.validation import r4_models as validation
from resources.validation import validate, validator_covers
from tests.known_invalid_examples import KNOWN_INVALID
from tests.test_r4_examples import R4_ONLY_TYPES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / ".cache" / "r4-examples" / "package"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ISSUE_CODES = {"structure", "value", "required", "code-invalid", "invalid"}

PORTAL_TYPES = [
    "Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Appointment",
    "Slot", "Schedule", "Encounter", "Observation", "DiagnosticReport", "Condition",
    "AllergyIntolerance", "Immunization", "Procedure", "CarePlan", "MedicationRequest",
    "Medication", "Communication", "Invoice", "Account", "Coverage", "DocumentReference",
    "RelatedPerson", "Consent", "Task",
]  # fmt: skip

# Official R4 examples that are genuinely invalid, with the reason: KNOWN_INVALID. None of
# them is of a PORTAL_TYPES or R4_ONLY_TYPES type: every example of those types is valid.


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def observation(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **elements}


def parsed(text: str) -> dict[str, Any]:
    return loads(text)


def only(resource: Any) -> Issue:
    issues = validate(resource)
    assert len(issues) == 1, issues
    return issues[0]


def problem(resource: Any) -> tuple[str, str]:
    """(code, expression) of the only issue of a resource."""
    issue = only(resource)
    return issue.code, issue.expression[0] if issue.expression else ""


def ext(**value: Any) -> dict[str, Any]:
    return {"url": "http://example.org/ext", **value}


# --------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("type_", PORTAL_TYPES)
def test_covers_the_portal_types(type_: str) -> None:
    assert validator_covers(type_)


@pytest.mark.parametrize("type_", sorted(R4_ONLY_TYPES))
def test_covers_the_r4_types_the_r4b_models_lack_or_redesigned(type_: str) -> None:
    assert validator_covers(type_)


@pytest.mark.parametrize("type_", ["Citation", "SubscriptionTopic", "NutritionProduct"])
def test_does_not_cover_r4b_only_types(type_: str) -> None:
    assert not validator_covers(type_)


@pytest.mark.parametrize("type_", ["Resource", "DomainResource", "HumanName", "", "patient"])
def test_does_not_cover_names_that_are_not_resource_types(type_: str) -> None:
    assert not validator_covers(type_)


def test_covers_all_146_r4_types() -> None:
    assert len(definitions.RESOURCE_TYPES) == 146
    assert all(validator_covers(t) for t in definitions.RESOURCE_TYPES)


# --------------------------------------------------------------------------- valid input


def test_minimal_patient_is_valid() -> None:
    assert validate(patient()) == []


def test_rich_observation_is_valid() -> None:
    resource = parsed(
        """{"resourceType": "Observation", "id": "bp-1", "status": "final",
        "meta": {"lastUpdated": "2024-01-02T03:04:05.678Z", "tag": [{"code": "x"}]},
        "text": {"status": "generated",
                 "div": "<div xmlns=\\"http://www.w3.org/1999/xhtml\\">BP</div>"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/1"},
        "effectiveDateTime": "2024-01-02T03:04:05+01:00",
        "component": [{"code": {"text": "systolic"},
                       "valueQuantity": {"value": 107.50, "unit": "mmHg", "comparator": "<"}},
                      {"code": {"text": "diastolic"}, "valueQuantity": {"value": 1.0e2}}]}"""
    )
    assert validate(resource) == []


# --------------------------------------------------------------------------- resourceType


@pytest.mark.parametrize("body", [None, 1, "Patient", [], True])
def test_a_resource_must_be_an_object(body: Any) -> None:
    assert problem(body) == ("structure", "")


def test_resource_type_is_required() -> None:
    assert problem({"id": "1"}) == ("required", "resourceType")


def test_resource_type_must_be_a_string() -> None:
    assert problem({"resourceType": ["Patient"]}) == ("structure", "resourceType")


def test_resource_type_must_name_an_r4_type() -> None:
    assert problem({"resourceType": "Citation"}) == ("structure", "resourceType")


def test_r4_types_the_r4b_models_lack_are_validated() -> None:
    product = {"resourceType": "MedicinalProduct", "name": [{"productName": "Acme 10 mg"}]}
    assert validate(product) == []
    assert problem({**product, "name": [{}]}) == ("structure", "MedicinalProduct.name[0]")
    assert problem({"resourceType": "MedicinalProduct"}) == ("required", "MedicinalProduct.name")


def test_contained_resource_needs_a_resource_type() -> None:
    resource = patient(contained=[{"id": "a"}])
    assert problem(resource) == ("required", "Patient.contained[0].resourceType")


def test_contained_resource_type_must_be_an_r4_type() -> None:
    resource = patient(contained=[{"resourceType": "Bogus", "id": "a"}])
    assert problem(resource) == ("structure", "Patient.contained[0].resourceType")


# --------------------------------------------------------------------------- id


def test_id_with_a_space_is_a_bad_value() -> None:
    assert problem(patient(id="a b")) == ("value", "Patient.id")


def test_id_longer_than_64_characters_is_a_bad_value() -> None:
    assert problem(patient(id="a" * 65)) == ("value", "Patient.id")


def test_id_of_64_characters_is_valid() -> None:
    assert validate(patient(id="A-1." + "a" * 60)) == []


# --------------------------------------------------------------------------- unknown elements


def test_unknown_element_is_a_structure_issue() -> None:
    assert problem(patient(foo=1)) == ("structure", "Patient.foo")


def test_unknown_element_is_reported_once() -> None:
    assert len(validate(patient(name=[{"family": "x", "nickname": "y"}]))) == 1


def test_fhir_comments_are_not_r4_json() -> None:
    assert problem(patient(fhir_comments=["x"])) == ("structure", "Patient.fhir_comments")


def test_python_field_names_of_the_library_are_unknown() -> None:
    resource = {
        "resourceType": "Encounter",
        "status": "planned",
        "class": {"code": "AMB"},
        "class_fhir": {"code": "AMB"},
    }
    assert problem(resource) == ("structure", "Encounter.class_fhir")


def test_library_extension_alias_is_unknown() -> None:
    assert problem(patient(gender__ext={"id": "a"})) == ("structure", "Patient.gender__ext")


def test_underscore_companion_of_a_complex_element_is_unknown() -> None:
    assert problem(observation(_code={"id": "a"})) == ("structure", "Observation._code")


def test_id_takes_no_extensions() -> None:
    assert problem(patient(_id={"extension": [ext(valueString="a")]})) == (
        "structure",
        "Patient._id",
    )


def test_extension_url_takes_no_extensions() -> None:
    resource = patient(extension=[ext(valueString="a", _url={"id": "x"})])
    assert problem(resource) == ("structure", "Patient.extension[0]._url")


def test_resource_type_inside_a_datatype_is_unknown() -> None:
    resource = patient(name=[{"family": "x", "resourceType": "HumanName"}])
    assert problem(resource) == ("structure", "Patient.name[0].resourceType")


# --------------------------------------------------------------------------- JSON types


@pytest.mark.parametrize(
    ("elements", "where"),
    [
        ({"active": "true"}, "Patient.active"),
        ({"active": 1}, "Patient.active"),
        ({"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
        ({"birthDate": 2020}, "Patient.birthDate"),
        ({"gender": True}, "Patient.gender"),
    ],
)
def test_primitive_needs_its_json_type(elements: dict[str, Any], where: str) -> None:
    assert problem(patient(**elements)) == ("structure", where)


def test_integer_must_not_be_written_as_a_decimal() -> None:
    resource = parsed('{"resourceType": "Patient", "multipleBirthInteger": 2.0}')
    assert problem(resource) == ("structure", "Patient.multipleBirthInteger")


def test_decimal_must_be_a_json_number() -> None:
    resource = observation(valueQuantity={"value": "72.5"})
    assert problem(resource) == ("structure", "Observation.valueQuantity.value")


def test_decimal_must_not_be_a_boolean() -> None:
    resource = observation(valueQuantity={"value": True})
    assert problem(resource) == ("structure", "Observation.valueQuantity.value")


def test_integer_number_is_a_valid_decimal() -> None:
    assert validate(observation(valueQuantity={"value": 72})) == []


def test_single_element_must_not_be_an_array() -> None:
    assert problem(patient(gender=["male"])) == ("structure", "Patient.gender")


def test_repeating_element_must_be_an_array() -> None:
    assert problem(patient(name={"family": "x"})) == ("structure", "Patient.name")


def test_complex_element_must_be_an_object() -> None:
    assert problem(observation(code="x")) == ("structure", "Observation.code")


# --------------------------------------------------------------------------- primitive values


def test_empty_string_is_a_bad_value() -> None:
    assert problem(patient(name=[{"family": ""}])) == ("value", "Patient.name[0].family")


def test_control_characters_are_bad_values() -> None:
    assert problem(patient(name=[{"family": "a\x01b"}])) == ("value", "Patient.name[0].family")


def test_integer_beyond_32_bits_is_a_bad_value() -> None:
    assert problem(patient(multipleBirthInteger=2**31)) == ("value", "Patient.multipleBirthInteger")


def test_positive_int_zero_is_a_bad_value() -> None:
    resource = {
        "resourceType": "Appointment",
        "status": "booked",
        "minutesDuration": 0,
        "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}],
    }
    assert problem(resource) == ("value", "Appointment.minutesDuration")


def test_date_with_month_13_is_a_bad_value() -> None:
    assert problem(patient(birthDate="2020-13-01")) == ("value", "Patient.birthDate")


def test_date_that_is_not_in_the_calendar_is_a_bad_value() -> None:
    assert problem(patient(birthDate="2021-02-30")) == ("value", "Patient.birthDate")


def test_partial_date_is_valid() -> None:
    assert validate(patient(birthDate="1974-12")) == []


def test_instant_needs_a_time_zone() -> None:
    assert problem(observation(issued="2024-01-02T03:04:05")) == ("value", "Observation.issued")


def test_uri_with_whitespace_is_a_bad_value() -> None:
    assert problem(patient(implicitRules="http://a b")) == ("value", "Patient.implicitRules")


def test_code_with_double_space_is_a_bad_value() -> None:
    assert problem(patient(language="en  US")) == ("value", "Patient.language")


def test_uuid_needs_the_urn_prefix() -> None:
    resource = patient(extension=[ext(valueUuid="c757873d-ec9a-4326-a141-556f43239520")])
    assert problem(resource) == ("value", "Patient.extension[0].valueUuid")


def test_base64_with_line_breaks_is_valid() -> None:
    photo = {"contentType": "text/plain", "data": "aGVs\nbG8="}  # att-1: data needs a type
    assert validate(patient(photo=[photo])) == []


def test_base64_of_the_wrong_length_is_a_bad_value() -> None:
    assert problem(patient(photo=[{"data": "aGVsb"}])) == ("value", "Patient.photo[0].data")


def test_not_a_number_is_a_bad_decimal() -> None:
    resource = observation(valueQuantity={"value": float("nan")})
    assert problem(resource) == ("value", "Observation.valueQuantity.value")


def test_decimal_keeps_precision_and_passes() -> None:
    resource = parsed(
        '{"resourceType": "Observation", "status": "final", "code": {"text": "x"},'
        ' "valueQuantity": {"value": 72.50}}'
    )
    assert validate(resource) == []


# --------------------------------------------------------------------------- empty values


def test_empty_object_is_not_allowed() -> None:
    assert problem(observation(valueQuantity={})) == ("structure", "Observation.valueQuantity")


def test_empty_array_is_not_allowed() -> None:
    assert problem(patient(name=[])) == ("structure", "Patient.name")


def test_element_with_only_an_id_breaks_ele_1() -> None:
    assert problem(patient(maritalStatus={"id": "m"})) == ("invalid", "Patient.maritalStatus")


# --------------------------------------------------------------------------- null and _name


def test_null_is_not_a_value() -> None:
    assert problem(patient(gender=None)) == ("structure", "Patient.gender")


def test_null_in_an_array_of_complex_values_is_not_allowed() -> None:
    assert problem(patient(name=[None])) == ("structure", "Patient.name[0]")


def test_null_in_a_primitive_array_needs_an_extension() -> None:
    resource = patient(name=[{"given": ["a", None]}])
    assert problem(resource) == ("structure", "Patient.name[0].given[1]")


def test_null_aligned_with_an_extension_is_valid() -> None:
    name = {"given": ["a", None], "_given": [None, {"extension": [ext(valueString="b")]}]}
    assert validate(patient(name=[name])) == []


def test_null_in_the_extension_array_needs_a_value() -> None:
    name = {"_given": [None, {"extension": [ext(valueString="b")]}]}
    assert problem(patient(name=[name])) == ("structure", "Patient.name[0].given[0]")


def test_extension_array_must_align_with_the_values() -> None:
    name = {"given": ["a", "b"], "_given": [{"id": "x"}]}
    assert problem(patient(name=[name])) == ("structure", "Patient.name[0].given")


def test_primitive_extension_must_be_an_object() -> None:
    assert problem(patient(gender="male", _gender="x")) == ("structure", "Patient.gender")


def test_extension_of_a_single_primitive_must_not_be_an_array() -> None:
    assert problem(patient(gender="male", _gender=[{"id": "x"}])) == ("structure", "Patient.gender")


def test_primitive_extension_without_value_or_extensions_breaks_ele_1() -> None:
    assert problem(patient(_gender={"id": "x"})) == ("invalid", "Patient.gender")


def test_primitive_with_an_id_and_a_value_is_valid() -> None:
    assert validate(patient(gender="male", _gender={"id": "x"})) == []


def test_unknown_element_in_a_primitive_extension() -> None:
    resource = patient(gender="male", _gender={"foo": 1})
    assert problem(resource) == ("structure", "Patient.gender.foo")


def test_required_primitive_may_be_only_an_extension() -> None:
    absent = ext(
        url="http://hl7.org/fhir/StructureDefinition/data-absent-reason", valueCode="unknown"
    )
    resource = {
        "resourceType": "Observation",
        "code": {"text": "x"},
        "_status": {"extension": [absent]},
    }
    assert validate(resource) == []


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
