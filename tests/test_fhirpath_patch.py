"""FHIRPath Patch: https://hl7.org/fhir/R4/fhirpatch.html (add, insert, delete, replace,
move; several operations; the errors are in test_fhirpath_patch_errors.py)."""

from __future__ import annotations

import copy

from resources.fhir_json import dumps, loads
from resources.fhirpath_patch import apply_fhirpath_patch
from tests.fhirpath_patch_support import (
    REPEATS,
    observation,
    operation,
    patch,
    patch_error,
    patient,
)

# --- add ------------------------------------------------------------------------------


def test_spec_example_add_birth_date() -> None:
    resource = {"resourceType": "Patient", "id": "p1"}
    op = operation("add", "Patient", name="birthDate", value={"valueDate": "1930-01-01"})
    assert patch(resource, op)["birthDate"] == "1930-01-01"


def test_spec_example_add_backbone_element_from_parts() -> None:
    value = {"part": [{"name": "name", "valueHumanName": {"text": "a name"}}]}
    result = patch(patient(), operation("add", "Patient", name="contact", value=value))
    assert result["contact"] == [{"name": {"text": "a name"}}]


def test_add_appends_to_an_existing_list() -> None:
    value = {"valueIdentifier": {"system": "http://c", "value": "3"}}
    result = patch(patient(), operation("add", "Patient", name="identifier", value=value))
    assert [i["system"] for i in result["identifier"]] == ["http://a", "http://b", "http://c"]


def test_add_primitive_to_a_repeating_element_inside_a_list_item() -> None:
    op = operation("add", "Patient.name[0]", name="given", value={"valueString": "Lee"})
    assert patch(patient(), op)["name"][0]["given"] == ["Jane", "Q", "Ann", "Lee"]


def test_add_creates_a_list_for_an_absent_repeating_element() -> None:
    value = {"valueContactPoint": {"system": "phone", "value": "555"}}
    result = patch(patient(), operation("add", "Patient", name="telecom", value=value))
    assert result["telecom"] == [{"system": "phone", "value": "555"}]


def test_add_backbone_parts_nest_and_repeat() -> None:
    value = {
        "part": [
            {"name": "name", "valueHumanName": {"family": "Roe"}},
            {"name": "telecom", "valueContactPoint": {"value": "1"}},
            {"name": "telecom", "valueContactPoint": {"value": "2"}},
            {"name": "gender", "valueCode": "male"},
        ]
    }
    result = patch(patient(), operation("add", "Patient", name="contact", value=value))
    assert result["contact"] == [
        {
            "name": {"family": "Roe"},
            "telecom": [{"value": "1"}, {"value": "2"}],
            "gender": "male",
        }
    ]


def test_add_component_with_choice_value_from_parts() -> None:
    value = {
        "part": [
            {"name": "code", "valueCodeableConcept": {"text": "c"}},
            {"name": "value", "valueBoolean": True},
        ]
    }
    result = patch(observation(), operation("add", "Observation", name="component", value=value))
    assert result["component"][-1] == {"code": {"text": "c"}, "valueBoolean": True}


def test_add_choice_element_uses_the_typed_json_name() -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "w"}}
    value = {"valueQuantity": {"value": 1, "unit": "kg"}}
    result = patch(resource, operation("add", "Observation", name="value", value=value))
    assert result["valueQuantity"] == {"value": 1, "unit": "kg"}
    assert "value" not in result


def test_add_choice_element_by_its_typed_name() -> None:
    resource = {"resourceType": "Patient"}
    op = operation("add", "Patient", name="deceasedBoolean", value={"valueBoolean": False})
    assert patch(resource, op)["deceasedBoolean"] is False


def test_add_extension_given_as_parts() -> None:
    value = {
        "part": [
            {"name": "url", "valueUri": "http://example.org/ext"},
            {"name": "value", "valueString": "hello"},
        ]
    }
    result = patch(patient(), operation("add", "Patient", name="extension", value=value))
    assert result["extension"] == [{"url": "http://example.org/ext", "valueString": "hello"}]


def test_add_extension_to_a_primitive_goes_to_its_underscore_twin() -> None:
    value = {"part": [{"name": "url", "valueUri": "http://e"}, {"name": "value", "valueCode": "x"}]}
    result = patch(patient(), operation("add", "Patient.birthDate", name="extension", value=value))
    assert result["birthDate"] == "1970-01-01"
    assert result["_birthDate"] == {"extension": [{"url": "http://e", "valueCode": "x"}]}


def test_add_primitive_value_keeps_its_extension() -> None:
    value = {"valueDate": "1930-01-01", "_valueDate": {"extension": [{"url": "http://e"}]}}
    resource = {"resourceType": "Patient"}
    result = patch(resource, operation("add", "Patient", name="birthDate", value=value))
    assert result["_birthDate"] == {"extension": [{"url": "http://e"}]}


def test_add_contained_resource_from_a_resource_part() -> None:
    value = {"resource": {"resourceType": "Organization", "id": "o1", "name": "Acme"}}
    result = patch(patient(), operation("add", "Patient", name="contained", value=value))
    assert result["contained"] == [{"resourceType": "Organization", "id": "o1", "name": "Acme"}]


def test_add_without_a_cardinality_lookup_repeats_only_extensions() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            operation("add", "Patient", name="extension", value={"valueExtension": {"url": "u"}})
        ],
    }
    result = apply_fhirpath_patch({"resourceType": "Patient"}, parameters)
    assert result["extension"] == [{"url": "u"}]


def test_add_path_without_the_type_name_starts_at_the_resource() -> None:
    op = operation("add", "name[0]", name="given", value={"valueString": "Lee"})
    assert patch(patient(), op)["name"][0]["given"][-1] == "Lee"


# --- insert ---------------------------------------------------------------------------


def test_insert_at_the_front() -> None:
    value = {"valueIdentifier": {"system": "http://c"}}
    result = patch(patient(), operation("insert", "Patient.identifier", value=value, index=0))
    assert [i["system"] for i in result["identifier"]] == ["http://c", "http://a", "http://b"]


def test_insert_at_the_end_equals_the_list_length() -> None:
    value = {"valueString": "Lee"}
    op = operation("insert", "Patient.name[0].given", value=value, index=3)
    assert patch(patient(), op)["name"][0]["given"] == ["Jane", "Q", "Ann", "Lee"]


def test_insert_into_an_absent_list_at_zero_creates_it() -> None:
    value = {"valueContactPoint": {"value": "555"}}
    result = patch(patient(), operation("insert", "Patient.telecom", value=value, index=0))
    assert result["telecom"] == [{"value": "555"}]


def test_insert_backbone_element_from_parts() -> None:
    value = {"part": [{"name": "code", "valueCodeableConcept": {"text": "z"}}]}
    op = operation("insert", "Observation.component", value=value, index=1)
    result = patch(observation(), op)
    assert [c["code"]["text"] for c in result["component"]] == ["a", "z", "b"]


# --- delete ---------------------------------------------------------------------------


def test_delete_a_single_element() -> None:
    assert "gender" not in patch(patient(), operation("delete", "Patient.gender"))


def test_delete_a_list_item_chosen_by_where() -> None:
    result = patch(patient(), operation("delete", "Patient.identifier.where(system='http://a')"))
    assert result["identifier"] == [{"system": "http://b", "value": "2"}]


def test_delete_the_last_item_removes_the_array() -> None:
    resource = {"resourceType": "Patient", "identifier": [{"value": "1"}]}
    assert "identifier" not in patch(resource, operation("delete", "Patient.identifier"))


def test_delete_matching_nothing_is_a_no_op() -> None:
    resource = patient()
    result = patch(resource, operation("delete", "Patient.identifier.where(system='none')"))
    assert result == resource


def test_delete_path_into_an_absent_element_is_a_no_op() -> None:
    assert patch(patient(), operation("delete", "Patient.contact[0].name")) == patient()


def test_delete_choice_element_by_its_name() -> None:
    result = patch(observation(), operation("delete", "Observation.value"))
    assert "valueQuantity" not in result


def test_delete_with_first_and_last() -> None:
    result = patch(
        patient(),
        operation("delete", "Patient.name.given.first()"),
        operation("delete", "Patient.name.given.last()"),
    )
    assert result["name"][0]["given"] == ["Q"]


def test_delete_extension_by_url() -> None:
    resource = {
        "resourceType": "Patient",
        "extension": [{"url": "http://a", "valueString": "1"}, {"url": "http://b"}],
    }
    result = patch(resource, operation("delete", "Patient.extension('http://a')"))
    assert result["extension"] == [{"url": "http://b"}]


def test_delete_primitive_also_deletes_its_extensions() -> None:
    resource = {
        "resourceType": "Patient",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://e", "valueString": "t"}]},
    }
    assert patch(resource, operation("delete", "Patient.birthDate")) == {"resourceType": "Patient"}


def test_delete_extension_of_a_primitive_drops_the_empty_twin() -> None:
    resource = {
        "resourceType": "Patient",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://e", "valueString": "t"}]},
    }
    result = patch(resource, operation("delete", "Patient.birthDate.extension('http://e')"))
    assert result == {"resourceType": "Patient", "birthDate": "1970-01-01"}


def test_delete_primitive_list_item_keeps_extension_twins_aligned() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b", "c"], "_given": [None, {"id": "b1"}, {"id": "c1"}]}],
    }
    result = patch(resource, operation("delete", "Patient.name.given[0]"))
    assert result["name"][0] == {"given": ["b", "c"], "_given": [{"id": "b1"}, {"id": "c1"}]}


def test_delete_the_only_extended_primitive_item_drops_the_twin_array() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b"], "_given": [None, {"id": "b1"}]}],
    }
    result = patch(resource, operation("delete", "Patient.name.given[1]"))
    assert result["name"][0] == {"given": ["a"]}


def test_delete_removes_the_parent_it_empties() -> None:
    """fhir-test-cases "Delete Nested Primitive #2": no ``"name": {}`` is left behind."""
    resource = {
        "resourceType": "Patient",
        "contact": [{"name": {"text": "a name"}, "gender": "male"}],
    }
    result = patch(resource, operation("delete", "Patient.contact[0].name.text"))
    assert result["contact"] == [{"gender": "male"}]


def test_delete_removes_every_ancestor_it_empties_up_to_the_resource() -> None:
    resource = {
        "resourceType": "Patient",
        "id": "p1",
        "contact": [{"name": {"text": "a"}}, {"gender": "male"}],
    }
    result = patch(resource, operation("delete", "Patient.contact[0].name.text"))
    assert result == {"resourceType": "Patient", "id": "p1", "contact": [{"gender": "male"}]}
    emptied = patch(result, operation("delete", "Patient.contact.gender"))
    assert emptied == {"resourceType": "Patient", "id": "p1"}


def test_delete_removes_an_emptied_list_item_and_keeps_its_siblings() -> None:
    resource = {"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]}
    result = patch(resource, operation("delete", "Patient.name[0].family"))
    assert result["name"] == [{"family": "B"}]


def test_delete_of_a_valueless_primitive_s_last_extension_removes_the_emptied_parent() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"_family": {"extension": [{"url": "http://e", "valueString": "x"}]}}],
    }
    op = operation("delete", "Patient.name[0].family.extension('http://e')")
    assert patch(resource, op) == {"resourceType": "Patient"}


def test_delete_leaves_a_contained_resource_with_its_type() -> None:
    resource = {"resourceType": "Patient", "contained": [{"resourceType": "Basic", "id": "b"}]}
    op = operation("delete", "Patient.contained.ofType(Basic).id")
    assert patch(resource, op)["contained"] == [{"resourceType": "Basic"}]


def test_delete_in_a_contained_resource() -> None:
    resource = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": "o1", "name": "Acme"}],
    }
    op = operation("delete", "Patient.contained.ofType(Organization).where(id='o1').name")
    assert patch(resource, op)["contained"] == [{"resourceType": "Organization", "id": "o1"}]


# --- replace --------------------------------------------------------------------------


def test_replace_a_primitive() -> None:
    op = operation("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"})
    assert patch(patient(), op)["birthDate"] == "1930-01-01"


def test_replace_a_datatype_in_a_list() -> None:
    value = {"valueIdentifier": {"system": "http://new", "value": "9"}}
    op = operation("replace", "Patient.identifier[1]", value=value)
    assert patch(patient(), op)["identifier"][1] == {"system": "http://new", "value": "9"}


def test_replace_value_found_by_where_predicate() -> None:
    op = operation(
        "replace", "Patient.identifier.where(system = 'http://b').value", value={"valueString": "7"}
    )
    assert patch(patient(), op)["identifier"][1]["value"] == "7"


def test_replace_choice_element_changes_its_json_name() -> None:
    op = operation("replace", "Observation.value", value={"valueString": "heavy"})
    result = patch(observation(), op)
    assert result["valueString"] == "heavy"
    assert "valueQuantity" not in result


def test_replace_inside_choice_found_by_of_type() -> None:
    decimal = loads(b'{"v": 80.10}')["v"]
    op = operation(
        "replace", "Observation.value.ofType(Quantity).value", value={"valueDecimal": decimal}
    )
    assert b'"valueQuantity":{"value":80.10,"unit":"kg"}' in dumps(patch(observation(), op))


def test_replace_component_chosen_by_a_predicate_on_its_choice_value() -> None:
    path = "Observation.component.where(value.ofType(Quantity).value > 1).code.text"
    result = patch(observation(), operation("replace", path, value={"valueString": "big"}))
    assert [c["code"]["text"] for c in result["component"]] == ["big", "b"]


def test_replace_primitive_with_its_extension_from_the_value() -> None:
    resource = {"resourceType": "Patient", "gender": "female", "_gender": {"id": "old"}}
    value = {"valueCode": "male", "_valueCode": {"id": "new"}}
    result = patch(resource, operation("replace", "Patient.gender", value=value))
    assert (result["gender"], result["_gender"]) == ("male", {"id": "new"})


def test_replace_primitive_replaces_the_whole_element_with_its_extensions() -> None:
    resource = {"resourceType": "Patient", "gender": "female", "_gender": {"id": "old"}}
    result = patch(resource, operation("replace", "Patient.gender", value={"valueCode": "male"}))
    assert result == {"resourceType": "Patient", "gender": "male"}


def test_replace_backbone_element_from_parts() -> None:
    resource = {"resourceType": "Patient", "contact": [{"name": {"family": "Old"}}]}
    value = {"part": [{"name": "name", "valueHumanName": {"family": "New"}}]}
    result = patch(resource, operation("replace", "Patient.contact[0]", value=value))
    assert result["contact"] == [{"name": {"family": "New"}}]


def test_replace_via_backtick_identifier() -> None:
    op = operation("replace", "Patient.`gender`", value={"valueCode": "other"})
    assert patch(patient(), op)["gender"] == "other"


NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">a</div>'}


def test_a_keyword_after_a_dot_is_a_name() -> None:
    """``div`` is also an operator; as the reference engines do, after ``.`` it is a name."""
    new_div = '<div xmlns="http://www.w3.org/1999/xhtml">b</div>'
    resource = {**patient(), "text": dict(NARRATIVE)}
    op = operation("replace", "Patient.text.div", value={"valueString": new_div})
    assert patch(resource, op)["text"] == {"status": "generated", "div": new_div}


def test_a_keyword_after_a_dot_is_a_name_in_a_where_predicate() -> None:
    resource = {**patient(), "text": dict(NARRATIVE)}
    op = operation("delete", "Patient.where(text.div.startsWith('<div')).gender")
    assert "gender" not in patch(resource, op)


def test_a_keyword_as_an_operator_is_still_an_operator() -> None:
    resource = {**patient(), "text": dict(NARRATIVE)}
    op = operation("delete", "Patient.where(5 div 2 = 2 and text.div.exists()).gender")
    assert "gender" not in patch(resource, op)


def test_a_keyword_inside_a_string_literal_is_left_alone() -> None:
    resource = {"resourceType": "Patient", "name": [{"text": "x.div"}, {"text": "y"}]}
    op = operation("delete", "Patient.name.where(text = 'x.div')")
    assert patch(resource, op)["name"] == [{"text": "y"}]


# --- move -----------------------------------------------------------------------------


def test_move_forward() -> None:
    op = operation("move", "Patient.name[0].given", source=0, destination=2)
    assert patch(patient(), op)["name"][0]["given"] == ["Q", "Ann", "Jane"]


def test_move_backward() -> None:
    op = operation("move", "Patient.identifier", source=1, destination=0)
    assert [i["system"] for i in patch(patient(), op)["identifier"]] == ["http://b", "http://a"]


def test_move_keeps_extension_twins_aligned() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["a", "b", "c"], "_given": [{"id": "a1"}, None, None]}],
    }
    op = operation("move", "Patient.name[0].given", source=0, destination=2)
    assert patch(resource, op)["name"][0] == {
        "given": ["b", "c", "a"],
        "_given": [None, None, {"id": "a1"}],
    }


# --- several operations, decimals, immutability ---------------------------------------


def test_operations_apply_in_order() -> None:
    result = patch(
        patient(),
        operation("delete", "Patient.identifier[0]"),
        operation("replace", "Patient.identifier[0].value", value={"valueString": "b2"}),
    )
    assert result["identifier"] == [{"system": "http://b", "value": "b2"}]


def test_decimals_keep_their_exact_text() -> None:
    result = patch(observation(), operation("delete", "Observation.component[1]"))
    text = dumps(result)
    assert b'"value":72.50' in text
    assert b'"value":1.50' in text


def test_decimal_value_from_the_patch_keeps_its_text() -> None:
    parameters = loads(
        b'{"resourceType": "Parameters", "parameter": [{"name": "operation", "part": ['
        b'{"name": "type", "valueCode": "replace"},'
        b'{"name": "path", "valueString": "Observation.valueQuantity.value"},'
        b'{"name": "value", "valueDecimal": 72.50}]}]}'
    )
    resource = loads(b'{"resourceType": "Observation", "valueQuantity": {"value": 1.0}}')
    assert dumps(apply_fhirpath_patch(resource, parameters)).endswith(b'{"value":72.50}}')


def test_the_inputs_are_not_changed() -> None:
    resource, value = patient(), {"valueString": "Lee"}
    parameters = {
        "resourceType": "Parameters",
        "parameter": [operation("add", "Patient.name[0]", name="given", value=value)],
    }
    before = (copy.deepcopy(resource), copy.deepcopy(parameters))
    result = apply_fhirpath_patch(resource, parameters, repeats=REPEATS)
    result["name"][0]["given"].append("mutated")
    assert (resource, parameters) == before


def test_a_failing_operation_leaves_the_input_unchanged() -> None:
    resource = patient()
    patch_error(
        resource,
        operation("delete", "Patient.gender"),
        operation("delete", "Patient.identifier"),
    )
    assert resource == patient()


def test_empty_parameters_change_nothing() -> None:
    result = apply_fhirpath_patch(patient(), {"resourceType": "Parameters"})
    assert result == patient()
