"""The write validator: JSON rules, structure, primitive values, required bindings, R4.

JSON representation: https://hl7.org/fhir/R4/json.html
Primitive types: https://hl7.org/fhir/R4/datatypes.html#primitive
Required bindings: https://hl7.org/fhir/R4/terminologies.html#required
Element rule ele-1: https://hl7.org/fhir/R4/element.html#invs
"""

from __future__ import annotations

from typing import Any

import pytest

from resources import definitions
from resources.validation import validate, validator_covers
from tests.test_r4_examples import R4_ONLY_TYPES
from tests.validation_support import (
    PORTAL_TYPES,
    ext,
    observation,
    parsed,
    patient,
    problem,
)

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
