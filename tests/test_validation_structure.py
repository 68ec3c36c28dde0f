"""The structural validator compiled from the R4 StructureDefinitions.

Validation: https://hl7.org/fhir/R4/validation.html
Element definitions (paths, types, cardinality, content references):
https://hl7.org/fhir/R4/elementdefinition.html
Primitive formats: https://hl7.org/fhir/R4/datatypes.html#primitive

Each test here fails when the check it names is missing. ``tests/test_validation.py`` and
``test_validation_bindings.py`` hold the rest of the validator's behaviour; the structure
is also compared, element by element, with the fhir.resources R4B models corrected to R4
(``r4_models``), which the validator used before, and with client-py's R4 models
(``fhirclient``), which also have the R4 types the R4B models lack.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fhirclient.models.fhirabstractbase import FHIRAbstractBase
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.resource import Resource as FhirResource

from resources import definitions
from resources.errors import Issue
from resources.validation import r4_models, validate, validator_covers
from resources.validation.primitives import (
    BOOLEAN,
    COMPLEX,
    DECIMAL,
    INTEGER,
    RESOURCE,
    STRING,
    fast_check,
    format_check,
    kind_of,
    late_check,
)
from resources.validation.structure import shape
from tests.test_r4_examples import R4_ONLY_TYPES

ROOT = Path(__file__).resolve().parent.parent
UUID_V1 = "urn:uuid:c232ab00-9414-11ec-b3c8-9f6bdeced846"


def issues_of(resource: Any) -> list[tuple[str, str]]:
    return [(i.code, i.expression[0] if i.expression else "") for i in validate(resource)]


def only(resource: Any) -> Issue:
    issues = validate(resource)
    assert len(issues) == 1, issues
    return issues[0]


def problem(resource: Any) -> tuple[str, str]:
    issue = only(resource)
    return issue.code, issue.expression[0] if issue.expression else ""


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def observation(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **elements}


def ext(**value: Any) -> dict[str, Any]:
    return {"url": "http://example.org/ext", **value}


def questionnaire(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "status": "draft", "item": items}


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


# --------------------------------------------------------------------------- unknown elements


def test_unknown_element_in_a_backbone_element() -> None:
    resource = patient(contact=[{"gender": "male", "nickname": "x"}])
    assert problem(resource) == ("structure", "Patient.contact[0].nickname")


def test_unknown_element_in_a_nested_backbone_element() -> None:
    entry = {"request": {"method": "POST", "url": "Patient", "verb": "x"}}
    assert problem(bundle(entry)) == ("structure", "Bundle.entry[0].request.verb")


def test_unknown_element_below_a_content_reference() -> None:
    inner = {"linkId": "1.1.1", "type": "string", "hint": "x"}
    items = [
        {
            "linkId": "1",
            "type": "group",
            "item": [{"linkId": "1.1", "type": "group", "item": [inner]}],
        }
    ]
    assert problem(questionnaire(items)) == (
        "structure",
        "Questionnaire.item[0].item[0].item[0].hint",
    )


def test_element_of_another_backbone_is_unknown_here() -> None:
    # Bundle.entry.request has "url"; Bundle.entry.response does not.
    entry = {"response": {"status": "201", "url": "Patient/1"}}
    resource = {"resourceType": "Bundle", "type": "transaction-response", "entry": [entry]}
    assert problem(resource) == ("structure", "Bundle.entry[0].response.url")


def test_unknown_element_in_a_datatype_inside_an_extension() -> None:
    resource = patient(extension=[ext(valueHumanName={"family": "x", "surname": "y"})])
    assert problem(resource) == ("structure", "Patient.extension[0].valueHumanName.surname")


def test_modifier_extension_is_not_an_element_of_a_datatype() -> None:
    resource = patient(name=[{"family": "x", "modifierExtension": [ext(valueString="a")]}])
    assert problem(resource) == ("structure", "Patient.name[0].modifierExtension")


def test_modifier_extension_is_an_element_of_a_backbone_element() -> None:
    contact = {"gender": "male", "telecom": [{"system": "phone", "value": "1"}]}  # pat-1
    resource = patient(contact=[{**contact, "modifierExtension": [ext(valueString="a")]}])
    assert validate(resource) == []


# --------------------------------------------------------------------------- cardinality


def test_single_element_of_a_backbone_given_as_an_array() -> None:
    resource = observation(component=[{"code": [{"text": "a"}], "valueString": "x"}])
    assert problem(resource) == ("structure", "Observation.component[0].code")


def test_repeating_element_of_a_backbone_given_as_an_object() -> None:
    resource = patient(contact=[{"telecom": {"system": "phone", "value": "1"}}])
    assert problem(resource) == ("structure", "Patient.contact[0].telecom")


def test_repeating_element_below_a_content_reference_given_as_an_object() -> None:
    items = [{"linkId": "1", "type": "group", "item": {"linkId": "1.1", "type": "string"}}]
    assert problem(questionnaire(items)) == ("structure", "Questionnaire.item[0].item")


# --------------------------------------------------------------------------- required elements


def test_missing_required_element_in_a_nested_backbone_element() -> None:
    entry = {"request": {"url": "Patient"}, "resource": patient()}
    assert problem(bundle(entry)) == ("required", "Bundle.entry[0].request.method")


def test_missing_required_element_below_a_content_reference() -> None:
    items = [{"linkId": "1", "type": "group", "item": [{"type": "string"}]}]
    assert problem(questionnaire(items)) == ("required", "Questionnaire.item[0].item[0].linkId")


def test_missing_url_of_a_nested_extension() -> None:
    resource = patient(extension=[ext(extension=[{"valueString": "a"}])])
    assert problem(resource) == ("required", "Patient.extension[0].extension[0].url")


def test_missing_required_element_of_a_datatype_in_an_extension() -> None:
    resource = patient(extension=[ext(valueRelatedArtifact={"label": "x"})])
    assert problem(resource) == ("required", "Patient.extension[0].valueRelatedArtifact.type")


def test_missing_required_choice_element_in_a_backbone_element() -> None:
    option = {"initialSelected": True}
    items = [{"linkId": "1", "type": "choice", "answerOption": [option]}]
    assert problem(questionnaire(items)) == (
        "required",
        "Questionnaire.item[0].answerOption[0].value[x]",
    )


# ------------------------------------------------------------------ primitives in extensions


def test_date_outside_the_calendar_in_an_extension() -> None:
    resource = patient(extension=[ext(valueDateTime="2021-02-30T10:00:00Z")])
    assert problem(resource) == ("value", "Patient.extension[0].valueDateTime")


def test_integer_beyond_32_bits_in_an_extension() -> None:
    resource = patient(extension=[ext(valueInteger=2**31)])
    assert problem(resource) == ("value", "Patient.extension[0].valueInteger")


def test_bad_code_in_an_extension_of_a_primitive() -> None:
    birth_date = {"extension": [ext(valueCode="a  b")]}
    resource = patient(birthDate="2000-01-01", _birthDate=birth_date)
    assert problem(resource) == ("value", "Patient.birthDate.extension[0].valueCode")


def test_wrong_json_type_in_a_nested_extension() -> None:
    resource = patient(extension=[ext(extension=[ext(valueBoolean="true")])])
    assert problem(resource) == ("structure", "Patient.extension[0].extension[0].valueBoolean")


# --------------------------------------------------------------------------- choice types


def test_two_types_of_a_choice_in_a_backbone_element() -> None:
    component = {"code": {"text": "a"}, "valueString": "x", "valueQuantity": {"value": 1}}
    resource = observation(component=[component])
    assert problem(resource) == ("invalid", "Observation.component[0].value[x]")


def test_a_choice_given_only_by_its_extension_counts_as_a_type() -> None:
    absent = {"extension": [ext(valueCode="unknown")]}
    resource = observation(effectiveDateTime="2020-01-01", _effectiveInstant=absent)
    assert problem(resource) == ("invalid", "Observation.effective[x]")


def test_a_type_the_choice_does_not_allow_is_unknown() -> None:
    assert problem(observation(effectiveDate="2020-01-01")) == (
        "structure",
        "Observation.effectiveDate",
    )


# --------------------------------------------------------------------------- contained resources


def test_unknown_element_in_a_contained_resource() -> None:
    resource = observation(contained=[patient(id="p", nickname="x")])
    assert problem(resource) == ("structure", "Observation.contained[0].nickname")


def test_missing_required_element_in_a_contained_resource() -> None:
    contained = {"resourceType": "Observation", "id": "o", "code": {"text": "x"}}
    assert problem(patient(contained=[contained])) == ("required", "Patient.contained[0].status")


def test_bad_date_in_a_contained_resource() -> None:
    resource = observation(contained=[patient(id="p", birthDate="2021-02-29")])
    assert problem(resource) == ("value", "Observation.contained[0].birthDate")


def test_contained_resource_in_a_bundle_entry() -> None:
    inner = observation(contained=[patient(id="p", gender=["male"])])
    entry = {"resource": inner, "request": {"method": "POST", "url": "Observation"}}
    assert problem(bundle(entry)) == ("structure", "Bundle.entry[0].resource.contained[0].gender")


def test_contained_resource_of_a_type_the_r4b_models_lack() -> None:
    product = {"resourceType": "MedicinalProduct", "id": "m", "name": [{"productName": "x"}]}
    used = {"subject": {"reference": "#m"}}  # dom-3: a contained resource is referred to
    assert validate(observation(contained=[product], **used)) == []
    resource = observation(contained=[{**product, "name": [{"productName": 1}]}])
    assert problem(resource) == ("structure", "Observation.contained[0].name[0].productName")


def test_contained_resource_must_be_an_object() -> None:
    assert problem(patient(contained=["Patient/1"])) == ("structure", "Patient.contained[0]")


# ---------------------------------------------------------------- what the regexes leave out


@pytest.mark.parametrize(
    ("type_", "value", "valid"),
    [
        ("Date", "2020-02-29", True),
        ("Date", "2019-02-29", False),
        ("Date", "2021-04-31", False),
        ("Date", "2021-04", True),
        ("DateTime", "2021-06-31T10:00:00+02:00", False),
        ("DateTime", "2016-12-31T23:59:60Z", True),  # a leap second
        ("Instant", "2100-02-29T00:00:00Z", False),
        ("Instant", "2000-02-29T00:00:00.123456789Z", True),
        ("Time", "23:59:60", True),
    ],
)
def test_dates_must_be_in_the_calendar(type_: str, value: str, valid: bool) -> None:
    issues = issues_of(patient(extension=[ext(**{f"value{type_}": value})]))
    assert issues == ([] if valid else [("value", f"Patient.extension[0].value{type_}")])


@pytest.mark.parametrize("value", ["a\xa0", "\u3000a", "a\xa0\xa0b", "a \u2028b"])
def test_code_with_unicode_whitespace_at_the_ends_or_doubled(value: str) -> None:
    resource = patient(extension=[ext(valueCode=value)])
    assert problem(resource) == ("value", "Patient.extension[0].valueCode")


def test_code_with_a_single_inner_unicode_space_is_valid() -> None:
    assert validate(patient(extension=[ext(valueCode="a\xa0b")])) == []


def test_string_of_only_unicode_spaces() -> None:
    assert problem(patient(name=[{"family": "\xa0\u3000"}])) == ("value", "Patient.name[0].family")


def test_string_of_only_plain_spaces_is_valid() -> None:
    assert validate(patient(name=[{"family": "  "}])) == []


@pytest.mark.parametrize("value", ["YW=j", "a==="])
def test_base64_that_does_not_decode(value: str) -> None:
    assert problem(patient(photo=[{"data": value}])) == ("value", "Patient.photo[0].data")


@pytest.mark.parametrize(
    ("elements", "where"),
    [
        ({"name": [{"family": "a\ud800"}]}, "Patient.name[0].family"),
        ({"extension": [ext(valueUrl="http://x/\udc00")]}, "Patient.extension[0].valueUrl"),
        (
            {"text": {"status": "generated", "div": "<div>\ud800</div>"}},
            "Patient.text.div",
        ),
    ],
)
def test_lone_surrogates_are_not_text(elements: dict[str, Any], where: str) -> None:
    # JSON can spell them ("\\ud800"), but no UTF-8 writer can write them back.
    assert problem(patient(**elements)) == ("value", where)


def test_uuid_of_any_version_is_valid() -> None:
    assert validate(patient(extension=[ext(valueUuid=UUID_V1)])) == []


def test_calendar_problem_next_to_a_structure_problem_is_reported_once() -> None:
    resource = patient(birthDate="2021-02-30", _birthDate={"foo": 1})
    assert issues_of(resource) == [("structure", "Patient.birthDate.foo")]


def test_calendar_problems_elsewhere_are_reported_too() -> None:
    resource = patient(birthDate="2021-02-30", name=[{"family": "x", "nickname": "y"}])
    assert sorted(issues_of(resource)) == [
        ("structure", "Patient.name[0].nickname"),
        ("value", "Patient.birthDate"),
    ]


# --------------------------------------------------------------------------- the quick checks

_SAMPLES = [
    "a", "  ", "a b", "a  b", " a", "a ", "a\tb", "a\nb", "\x7f", "é", "a\xa0", "\xa0", "\u3000",
    "a\u2028b", "x\ud800", "\x01", "2020-02-29", "2019-02-29", "2021-02-28", "2021-02-28T10:00:00Z",
    "2021-02-30T10:00:00Z", "2021-12-31T23:59:60.5+14:00", "2021", "2021-13", "23:59:60",
    "urn:oid:1.2.3", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", UUID_V1, "http://a/b?c=d#e",
    "aGVsbG8=", "aGVsbA==", "aGVs", "YW=j", "a===", "====", "ab==cd==", "A" * 64, "A" * 65, "a.b-c",
]  # fmt: skip


@pytest.mark.parametrize(
    "type_", [t for t in definitions.primitive_types() if kind_of(t) == STRING]
)
def test_quick_check_passes_only_valid_values(type_: str) -> None:
    fast, full, late = fast_check(type_), format_check(type_), late_check(type_)
    assert fast is not None
    for value in _SAMPLES:
        if fast(value):
            assert full(value) is None and (late is None or late(value) is None), value


# --------------------------------------------------------------------------- the structure itself


def test_covers_every_r4_type_the_r4b_models_covered_and_the_others() -> None:
    assert all(validator_covers(t) for t in definitions.RESOURCE_TYPES)
    lacking = {t for t in definitions.RESOURCE_TYPES if not r4_models.validator_covers(t)}
    assert lacking == set(R4_ONLY_TYPES)


def _model_scopes() -> list[tuple[type, str]]:
    """Every (R4B model, definition path) the covered resource types reach."""
    todo = [(r4_models._resource_class(t), t) for t in definitions.RESOURCE_TYPES]
    seen: dict[tuple[type, str], None] = {}
    while todo:
        cls, path = todo.pop()
        if cls is None or (cls, path) in seen:
            continue
        seen[(cls, path)] = None
        for slot, _ in r4_models.scope(cls, path).keys.values():
            if slot.field.kind == r4_models.COMPLEX:
                todo.append((slot.field.model, slot.child_path))
    return list(seen)


def _differences(cls: type, path: str) -> list[Any]:
    model, compiled = r4_models.scope(cls, path), shape(path)
    values = {k: s for k, (s, companion) in model.keys.items() if not companion}
    companions = {k for k, (_s, companion) in model.keys.items() if companion}
    out: list[Any] = []
    if set(values) != set(compiled.values) or companions != set(compiled.companions):
        out.append(
            (
                "properties",
                sorted(set(values) ^ set(compiled.values) ^ companions ^ set(compiled.companions)),
            )
        )
    for name in set(values) & set(compiled.values):
        old, new = values[name], compiled.values[name]
        f = old.field
        pairs = {
            "many": (f.many, new.many),
            "kind": (min(f.kind, r4_models.COMPLEX + 1), min(new.kind, r4_models.COMPLEX + 1)),
            "required": (f.required, new.required),
            "choice": (f.choice, new.choice),
            "binding": (old.binding and old.binding.url, new.binding and new.binding.url),
        }
        if f.kind < r4_models.COMPLEX:
            pairs["type"] = (f.type, new.type)
        if f.kind == r4_models.COMPLEX:
            pairs["child"] = (old.child_path, new.shape.path if new.shape else None)
        out.extend((name, what, a, b) for what, (a, b) in pairs.items() if a != b)
    required_choices = set(compiled.required_choices)
    if set(model.model.required_choices) != required_choices:
        out.append(("required choices", model.model.required_choices, required_choices))
    return out  # fmt: skip


def test_structure_agrees_with_the_r4b_models_corrected_to_r4() -> None:
    scopes = _model_scopes()
    assert len(scopes) > 500
    differences = {path: d for cls, path in scopes if (d := _differences(cls, path))}
    assert differences == {}


_KINDS = {
    BOOLEAN: "boolean", INTEGER: "integer", DECIMAL: "decimal", STRING: "string",
    COMPLEX: "complex", RESOURCE: "resource",
}  # fmt: skip
_CLIENT_PY_PRIMITIVES = {bool: "boolean", int: "integer", float: "decimal", str: "string"}


def _kind_of_client_py(type_: Any) -> str:
    if issubclass(type_, FHIRDate):  # date, dateTime, instant, time
        return "string"
    if not issubclass(type_, FHIRAbstractBase):
        return _CLIENT_PY_PRIMITIVES[type_]
    return "resource" if issubclass(type_, FhirResource) else "complex"


def _client_py_class(type_: str) -> type:
    cls = type(FHIRElementFactory.instantiate(type_, None))
    assert cls.resource_type == type_
    return cls


def _client_py_differences(cls: type, path: str, seen: set[tuple[type, str]]) -> dict:
    """How the compiled shapes at ``path`` and below differ from client-py's R4 models
    (``elementProperties()``: name, JSON name, type, is list, choice, required)."""
    if (cls, path) in seen:
        return {}
    seen.add((cls, path))
    compiled = shape(path)
    model = {p[1]: p for p in cls().elementProperties()}
    out: dict[str, Any] = {}
    found = []
    if set(model) != set(compiled.values):
        found.append(("properties", sorted(set(model) ^ set(compiled.values))))
    for name in set(model) & set(compiled.values):
        slot, (_, _, type_, many, choice, required) = compiled.values[name], model[name]
        pairs = {
            "many": (slot.many, many),
            "choice": (slot.choice, choice),
            "required": (slot.required, required and choice is None),
            "kind": (_KINDS[slot.kind], _kind_of_client_py(type_)),
        }
        found.extend((name, what, a, b) for what, (a, b) in pairs.items() if a != b)
        if _kind_of_client_py(type_) == "complex" and slot.shape is not None:
            out.update(_client_py_differences(type_, slot.shape.path, seen))
    required_choices = {p[4] for p in model.values() if p[4] and p[5]}
    if required_choices != set(compiled.required_choices):
        found.append(("required choices", sorted(required_choices), compiled.required_choices))
    if found:
        out[path] = found
    return out


def test_structure_agrees_with_client_py_r4_models() -> None:
    """client-py's models are generated from the R4 4.0.1 StructureDefinitions: a reading
    of the structure independent of ours, which has the types the R4B models lack."""
    seen: set[tuple[type, str]] = set()
    differences: dict[str, Any] = {}
    for type_ in sorted(definitions.RESOURCE_TYPES):
        differences.update(_client_py_differences(_client_py_class(type_), type_, seen))
    assert len(seen) > 600
    assert {path.split(".")[0] for _cls, path in seen} >= set(R4_ONLY_TYPES)
    assert differences == {}


def test_validate_does_not_load_fhir_resources() -> None:
    code = (
        "import sys; from resources.validation import validate; "
        "assert validate({'resourceType': 'Patient', 'birthDate': '2020-02-30'}); "
        "print(any(m.split('.')[0] in ('fhir', 'fhir_core') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
