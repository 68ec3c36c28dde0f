"""Composite index values: component values taken from the same element
(https://hl7.org/fhir/R4/search.html#composite)."""

from __future__ import annotations

from typing import Any

from resources import fhir_json
from resources.search.extract import Indexer
from resources.search.model import (
    Component,
    CompositeRow,
    QuantityRow,
    SearchParam,
    StringRow,
    TokenRow,
)

LOINC = "http://loinc.org"
CODE = Component("code", "token", "code")
VALUE_QUANTITY = Component("value-quantity", "quantity", "value.as(Quantity)")


def rows(resource: dict[str, Any], expression: str, *components: Component) -> list:
    param = SearchParam("Observation", "p", "composite", expression, components=components)
    return [
        row for row in Indexer({"p": param}, "Observation").extract(resource) if row.code == "p"
    ]


BLOOD_PRESSURE = fhir_json.loads(
    """{"resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
        "component": [
          {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
           "valueQuantity": {"value": 107, "unit": "mmHg"}},
          {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
           "valueQuantity": {"value": 60, "unit": "mmHg"}}
        ]}"""
)


def quantity(code: str, value: float) -> QuantityRow:
    return QuantityRow(code, value, value, value, None, None, "mmHg")


def test_code_value_quantity_pairs_the_code_with_the_value() -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": LOINC, "code": "8310-5"}]},
        "valueQuantity": {"value": 37, "unit": "mmHg"},
    }
    assert rows(resource, "Observation", CODE, VALUE_QUANTITY) == [
        CompositeRow("p", (TokenRow("code", LOINC, "8310-5"), quantity("value-quantity", 37)))
    ]


def test_a_missing_component_gives_no_row() -> None:
    assert rows(BLOOD_PRESSURE, "Observation", CODE, VALUE_QUANTITY) == []


def test_component_values_pair_only_within_one_component() -> None:
    found = rows(BLOOD_PRESSURE, "Observation.component", CODE, VALUE_QUANTITY)
    assert found == [
        CompositeRow("p", (TokenRow("code", LOINC, "8480-6"), quantity("value-quantity", 107))),
        CompositeRow("p", (TokenRow("code", LOINC, "8462-4"), quantity("value-quantity", 60))),
    ]


def test_combo_takes_the_resource_and_its_components() -> None:
    resource = {**BLOOD_PRESSURE, "valueQuantity": {"value": 1, "unit": "mmHg"}}
    found = rows(resource, "Observation | Observation.component", CODE, VALUE_QUANTITY)
    assert [row.parts[0].value for row in found] == ["85354-9", "8480-6", "8462-4"]


def test_every_combination_of_values_is_a_row() -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": LOINC, "code": "a"}, {"system": LOINC, "code": "b"}]},
        "valueQuantity": {"value": 1, "unit": "mmHg"},
    }
    found = rows(resource, "Observation", CODE, VALUE_QUANTITY)
    assert [row.parts[0].value for row in found] == ["a", "b"]


def test_concept_text_alone_is_not_a_component_value() -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"text": "only text"},
        "valueString": "positive",
    }
    value = Component("value-string", "string", "value.as(string)")
    assert rows(resource, "Observation", CODE, value) == []


def test_a_string_component() -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": LOINC, "code": "x"}]},
        "valueString": "Positive",
    }
    value = Component("value-string", "string", "value.as(string)")
    assert rows(resource, "Observation", CODE, value) == [
        CompositeRow(
            "p", (TokenRow("code", LOINC, "x"), StringRow("value-string", "positive", "Positive"))
        )
    ]
