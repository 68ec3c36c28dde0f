"""JSON Merge Patch of a resource: https://www.rfc-editor.org/rfc/rfc7386

The examples of RFC 7386 appendix A whose target and patch are objects, plus the one FHIR
rule (an element the patch's nulls leave empty is removed) and the refusal of a patch
document that is not an object.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from resources.errors import FhirError
from resources.fhir_json import dumps, loads
from resources.json_merge_patch import apply_merge_patch

# RFC 7386 appendix A: (original, patch, result), the object cases, in the RFC's order
APPENDIX_A: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
]


@pytest.mark.parametrize(("original", "patch", "result"), APPENDIX_A)
def test_rfc_7386_appendix_a(original: dict, patch: dict, result: dict) -> None:
    assert apply_merge_patch(original, patch) == result


def test_an_object_the_patch_s_nulls_empty_is_removed() -> None:
    """RFC 7386's last example gives {"a": {"bb": {}}}; FHIR has no empty elements."""
    assert apply_merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {}
    original = {"text": {"status": "generated", "div": "<div/>"}, "gender": "male"}
    patch = {"text": {"status": None, "div": None}}
    assert apply_merge_patch(original, patch) == {"gender": "male"}


def test_an_empty_object_the_patch_gives_is_kept_for_validation_to_judge() -> None:
    assert apply_merge_patch({"gender": "male"}, {"text": {}}) == {"gender": "male", "text": {}}
    assert apply_merge_patch({"text": {"status": "x"}}, {"text": {}}) == {"text": {"status": "x"}}


def test_arrays_are_replaced_whole() -> None:
    original = {"name": [{"family": "A", "given": ["B"]}, {"family": "C"}]}
    assert apply_merge_patch(original, {"name": [{"family": "D"}]}) == {"name": [{"family": "D"}]}


def test_nested_objects_merge_member_by_member() -> None:
    original = {"maritalStatus": {"coding": [{"code": "M"}], "text": "married"}}
    result = apply_merge_patch(original, {"maritalStatus": {"text": "Married"}})
    assert result == {"maritalStatus": {"coding": [{"code": "M"}], "text": "Married"}}


def test_null_removes_only_the_member_not_its_primitive_twin() -> None:
    original = {"birthDate": "1970", "_birthDate": {"id": "b"}}
    assert apply_merge_patch(original, {"birthDate": None}) == {"_birthDate": {"id": "b"}}


def test_decimals_keep_their_exact_text() -> None:
    original = loads(b'{"valueQuantity": {"value": 72.50, "unit": "kg"}}')
    patch = loads(b'{"valueQuantity": {"value": 1.0e2}}')
    expected = b'{"valueQuantity":{"value":1.0e2,"unit":"kg"}}'
    assert dumps(apply_merge_patch(original, patch)) == expected


def test_the_inputs_are_not_changed() -> None:
    original = {"a": {"b": "c", "d": ["e"]}, "f": "g"}
    patch = {"a": {"b": None, "x": {"y": 1}}, "f": None, "h": ["i"]}
    before = copy.deepcopy((original, patch))
    result = apply_merge_patch(original, patch)
    result["a"]["x"]["y"] = 2
    result["h"].append("j")
    assert (original, patch) == before


@pytest.mark.parametrize("document", [[{"op": "add"}], "bar", None, 1, True])
def test_a_patch_that_is_not_an_object_is_400_invalid(document: Any) -> None:
    with pytest.raises(FhirError) as caught:
        apply_merge_patch({"a": "b"}, document)
    assert (caught.value.status, caught.value.code) == (400, "invalid")
