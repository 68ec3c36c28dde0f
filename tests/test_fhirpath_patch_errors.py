"""FHIRPath Patch: https://hl7.org/fhir/R4/fhirpatch.html (errors, more paths and edge
cases)."""

from __future__ import annotations

import pytest

from resources.errors import FhirError
from resources.fhirpath_patch import apply_fhirpath_patch
from tests.fhirpath_patch_support import (
    observation,
    operation,
    patch,
    patch_error,
    patient,
)

# --- errors: the patch document --------------------------------------------------------


def test_error_not_a_parameters_resource() -> None:
    with pytest.raises(FhirError) as caught:
        apply_fhirpath_patch(patient(), {"resourceType": "Patient"})
    assert (caught.value.status, caught.value.code) == (400, "invalid")
    assert caught.value.expression == ("Parameters",)


def test_error_parameter_is_not_a_list() -> None:
    with pytest.raises(FhirError) as caught:
        apply_fhirpath_patch(patient(), {"resourceType": "Parameters", "parameter": {}})
    assert caught.value.status == 400


def test_error_parameter_not_named_operation() -> None:
    op = {**operation("delete", "Patient.gender"), "name": "op"}
    error = patch_error(patient(), op)
    assert (error.status, error.expression) == (400, ("Parameters.parameter[0]",))


def test_error_operation_without_parts() -> None:
    assert patch_error(patient(), {"name": "operation"}).status == 400


def test_error_unknown_operation_type() -> None:
    error = patch_error(patient(), operation("upsert", "Patient.gender"))
    assert (error.status, error.code) == (400, "invalid")
    assert "upsert" in error.diagnostics


def test_error_type_given_as_a_string_not_a_code() -> None:
    op = operation("delete", "Patient.gender")
    op["part"][0] = {"name": "type", "valueString": "delete"}
    assert patch_error(patient(), op).status == 400


def test_error_missing_path() -> None:
    op = {"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]}
    assert "path" in patch_error(patient(), op).diagnostics


def test_error_empty_path() -> None:
    assert patch_error(patient(), operation("delete", " ")).status == 400


def test_error_add_without_value() -> None:
    error = patch_error(patient(), operation("add", "Patient", name="gender"))
    assert (error.status, "value" in error.diagnostics) == (400, True)


def test_error_part_that_the_operation_does_not_take() -> None:
    op = operation("delete", "Patient.gender", index=0)
    assert "index" in patch_error(patient(), op).diagnostics


def test_error_part_given_twice() -> None:
    op = operation("delete", "Patient.gender")
    op["part"].append({"name": "path", "valueString": "Patient.id"})
    assert patch_error(patient(), op).status == 400


def test_error_index_not_an_integer() -> None:
    op = operation("insert", "Patient.identifier", value={"valueIdentifier": {}}, index=0)
    op["part"][-1] = {"name": "index", "valueString": "0"}
    assert patch_error(patient(), op).status == 400


def test_error_index_is_a_boolean() -> None:
    op = operation("insert", "Patient.identifier", value={"valueIdentifier": {}}, index=True)
    assert patch_error(patient(), op).status == 400


def test_error_negative_index() -> None:
    op = operation("move", "Patient.identifier", source=-1, destination=0)
    assert patch_error(patient(), op).status == 400


def test_error_value_with_two_types() -> None:
    op = operation("replace", "Patient.gender", value={"valueCode": "male", "valueString": "m"})
    assert patch_error(patient(), op).status == 400


def test_error_value_part_without_content() -> None:
    op = operation("replace", "Patient.gender", value={"part": []})
    assert patch_error(patient(), op).status == 400


def test_error_nested_value_part_without_name() -> None:
    value = {"part": [{"valueHumanName": {"text": "x"}}]}
    error = patch_error(patient(), operation("add", "Patient", name="contact", value=value))
    assert error.status == 400


def test_error_path_syntax() -> None:
    error = patch_error(patient(), operation("delete", "Patient.name["))
    assert (error.status, error.code) == (400, "invalid")


def test_error_unsupported_function_in_path() -> None:
    error = patch_error(patient(), operation("delete", "Patient.managingOrganization.resolve()"))
    assert "resolve" in error.diagnostics


def test_error_path_for_another_resource_type() -> None:
    error = patch_error(patient(), operation("delete", "Observation.status"))
    assert (error.status, error.code) == (400, "invalid")


def test_error_where_predicate_that_cannot_be_evaluated() -> None:
    error = patch_error(patient(), operation("delete", "Patient.name.where(nope())"))
    assert error.status == 400


def test_error_expression_names_the_failing_operation() -> None:
    error = patch_error(
        patient(),
        operation("delete", "Patient.gender"),
        operation("delete", "Patient.birthDate"),
        operation("replace", "Patient.gender", value={"valueCode": "male"}),
    )
    assert error.expression == ("Parameters.parameter[2]",)
    assert error.outcome()["issue"][0]["expression"] == ["Parameters.parameter[2]"]


# --- errors: the patch does not fit the resource ---------------------------------------


def test_error_replace_path_matching_nothing() -> None:
    op = operation("replace", "Patient.deceased", value={"valueBoolean": True})
    error = patch_error(patient(), op)
    assert (error.status, error.code) == (422, "processing")


def test_error_replace_path_matching_many() -> None:
    op = operation("replace", "Patient.identifier.value", value={"valueString": "1"})
    assert "matched 2" in patch_error(patient(), op).diagnostics


def test_error_delete_path_matching_many() -> None:
    error = patch_error(patient(), operation("delete", "Patient.identifier"))
    assert (error.status, error.code) == (422, "processing")


def test_error_add_path_matching_nothing() -> None:
    op = operation("add", "Patient.contact[0]", name="gender", value={"valueCode": "male"})
    assert patch_error(patient(), op).status == 422


def test_error_add_to_an_element_that_already_has_a_value() -> None:
    op = operation("add", "Patient", name="gender", value={"valueCode": "male"})
    assert "already has a value" in patch_error(patient(), op).diagnostics


def test_error_add_second_type_to_a_choice_element() -> None:
    op = operation("add", "Observation", name="value", value={"valueString": "x"})
    assert patch_error(observation(), op).status == 422


def test_error_add_unknown_element() -> None:
    op = operation("add", "Patient", name="shoeSize", value={"valueInteger": 42})
    assert "shoeSize" in patch_error(patient(), op).diagnostics


def test_error_choice_type_not_allowed() -> None:
    op = operation("replace", "Observation.value", value={"valueAddress": {"city": "X"}})
    assert patch_error(observation(), op).status == 422


def test_error_typed_choice_name_and_value_type_disagree() -> None:
    resource = {"resourceType": "Patient"}
    op = operation("add", "Patient", name="deceasedBoolean", value={"valueDateTime": "2020"})
    assert patch_error(resource, op).status == 422


def test_error_complex_value_for_a_primitive_element() -> None:
    op = operation("replace", "Patient.gender", value={"valueCoding": {"code": "male"}})
    assert patch_error(patient(), op).status == 422


def test_error_backbone_element_given_a_typed_value() -> None:
    op = operation("add", "Patient", name="contact", value={"valueHumanName": {"text": "x"}})
    assert "parts" in patch_error(patient(), op).diagnostics


def test_error_parts_for_a_primitive_element() -> None:
    value = {"part": [{"name": "id", "valueString": "x"}]}
    assert patch_error(patient(), operation("replace", "Patient.gender", value=value)).status == 422


def test_error_add_child_inside_a_primitive() -> None:
    op = operation("add", "Patient.gender", name="text", value={"valueString": "x"})
    assert patch_error(patient(), op).status == 422


def test_error_replace_the_resource_itself() -> None:
    value = {"resource": {"resourceType": "Patient"}}
    assert patch_error(patient(), operation("replace", "Patient", value=value)).status == 422


def test_error_delete_the_resource_itself() -> None:
    assert patch_error(patient(), operation("delete", "Patient")).status == 422


def test_error_insert_index_out_of_range() -> None:
    op = operation("insert", "Patient.identifier", value={"valueIdentifier": {}}, index=3)
    error = patch_error(patient(), op)
    assert (error.status, "out of range" in error.diagnostics) == (422, True)


def test_error_insert_into_a_non_repeating_element() -> None:
    op = operation("insert", "Patient.gender", value={"valueCode": "male"}, index=0)
    assert "not a list" in patch_error(patient(), op).diagnostics


def test_error_insert_path_not_ending_in_a_list_name() -> None:
    op = operation("insert", "Patient.identifier.first()", value={"valueIdentifier": {}}, index=0)
    assert patch_error(patient(), op).status == 422


def test_error_move_source_out_of_range() -> None:
    op = operation("move", "Patient.identifier", source=2, destination=0)
    assert "Source 2" in patch_error(patient(), op).diagnostics


def test_error_move_destination_out_of_range() -> None:
    op = operation("move", "Patient.identifier", source=0, destination=2)
    assert "Destination 2" in patch_error(patient(), op).diagnostics


def test_error_move_in_an_absent_list() -> None:
    op = operation("move", "Patient.telecom", source=0, destination=0)
    assert patch_error(patient(), op).status == 422


# --- more paths and edge cases ---------------------------------------------------------


def test_extension_url_with_escapes_in_the_string_literal() -> None:
    resource = {"resourceType": "Patient", "extension": [{"url": "http://a/'x'"}]}
    op = operation("delete", "Patient.extension('http://a/\\'x\\u0027')")
    assert patch(resource, op) == {"resourceType": "Patient"}


def test_delete_extension_of_a_primitive_list_item_keeps_the_value() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b"], "_given": [None, {"extension": [{"url": "http://e"}]}]}],
    }
    result = patch(resource, operation("delete", "Patient.name.given[1].extension[0]"))
    assert result["name"][0] == {"given": ["a", "b"]}


def test_delete_extension_of_a_valueless_primitive_list_item_drops_the_item() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["a", None], "_given": [None, {"extension": [{"url": "http://e"}]}]}],
    }
    result = patch(resource, operation("delete", "Patient.name.given[1].extension[0]"))
    assert result["name"][0] == {"given": ["a"]}


def test_unknown_resource_type_is_navigated_by_json_names() -> None:
    resource = {"resourceType": "Widget", "part": [{"x": 1}, {"x": 2}]}
    assert patch(resource, operation("delete", "Widget.part.where(x = 1)")) == {
        "resourceType": "Widget",
        "part": [{"x": 2}],
    }


def test_where_in_first_position_filters_the_resource() -> None:
    result = patch(patient(), operation("delete", "where(gender = 'female').birthDate"))
    assert "birthDate" not in result


@pytest.mark.parametrize(
    "path",
    [
        "Patient.name | Patient.telecom",
        "Patient.name[0 + 1]",
        "Patient.name.first(1)",
        "Patient.extension(1)",
        "Patient.name.ofType('HumanName')",
        "%resource.name",
        "$this.name",
    ],
)
def test_error_unsupported_path_expression(path: str) -> None:
    error = patch_error(patient(), operation("delete", path))
    assert (error.status, error.code) == (400, "invalid")


def test_error_delete_path_with_an_unknown_element_name() -> None:
    error = patch_error(patient(), operation("delete", "Patient.shoeSize"))
    assert (error.status, "shoeSize" in error.diagnostics) == (400, True)


def test_error_where_predicate_giving_many_values() -> None:
    error = patch_error(patient(), operation("delete", "Patient.name.where(given)"))
    assert error.status == 400


def test_error_operation_part_without_a_name() -> None:
    op = operation("delete", "Patient.gender")
    op["part"].append({"valueString": "x"})
    assert patch_error(patient(), op).status == 400


def test_error_value_resource_that_is_not_a_resource() -> None:
    op = operation("add", "Patient", name="contained", value={"resource": {"id": "x"}})
    assert patch_error(patient(), op).status == 400


def test_error_resource_value_for_a_datatype_element() -> None:
    value = {"resource": {"resourceType": "Organization"}}
    op = operation("add", "Patient", name="managingOrganization", value=value)
    assert patch_error(patient(), op).status == 422


def test_error_datatype_value_for_a_resource_element() -> None:
    op = operation("add", "Patient", name="contained", value={"valueString": "x"})
    assert patch_error(patient(), op).status == 422


def test_delete_one_of_two_extensions_on_a_primitive_keeps_the_twin() -> None:
    resource = {
        "resourceType": "Patient",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://a"}, {"url": "http://b"}]},
    }
    result = patch(resource, operation("delete", "Patient.birthDate.extension('http://a')"))
    assert result["_birthDate"] == {"extension": [{"url": "http://b"}]}


def test_element_defined_elsewhere_is_navigated_by_its_definition() -> None:
    resource = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"link": [{"relation": "self", "url": "http://x"}]}],
    }
    op = operation("replace", "Bundle.entry[0].link[0].url", value={"valueUri": "http://y"})
    assert patch(resource, op)["entry"][0]["link"][0]["url"] == "http://y"


def test_error_insert_when_the_list_owner_matches_many() -> None:
    resource = {"resourceType": "Patient", "name": [{"given": ["a"]}, {"given": ["b"]}]}
    op = operation("insert", "Patient.name.given", value={"valueString": "c"}, index=0)
    assert "exactly one" in patch_error(resource, op).diagnostics


def test_error_insert_into_an_absent_element_known_not_to_repeat() -> None:
    op = operation("insert", "Patient.contact[0].name", value={"valueHumanName": {}}, index=0)
    resource = {"resourceType": "Patient", "contact": [{"gender": "male"}]}
    assert "not a list" in patch_error(resource, op).diagnostics
