"""Quantity index values (https://hl7.org/fhir/R4/search.html#quantity)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resources import fhir_json
from resources.search.extract import Indexer
from resources.search.model import QuantityRow, SearchParam

UCUM = "http://unitsofmeasure.org"


def rows(resource: dict[str, Any], expression: str) -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", "quantity", expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


def observation(value: str) -> dict[str, Any]:
    return fhir_json.loads(f'{{"resourceType": "Observation", "valueQuantity": {value}}}')


def test_a_quantity_gives_value_range_system_code_and_unit() -> None:
    resource = observation(
        f'{{"value": 5.4, "unit": "mmol/L", "system": "{UCUM}", "code": "mmol/L"}}'
    )
    [row] = rows(resource, "(Observation.value as Quantity)")
    assert (row.value, row.low, row.high) == pytest.approx((5.4, 5.4, 5.4))
    assert (row.system, row.unit_code, row.unit) == (UCUM, "mmol/L", "mmol/L")


def test_an_integer_value_is_a_decimal_without_fraction() -> None:
    [row] = rows(observation('{"value": 100}'), "Observation.value.as(Quantity)")
    assert (row.low, row.high) == (100.0, 100.0)


def test_a_quantity_without_value_is_not_indexed() -> None:
    assert rows(observation('{"unit": "kg"}'), "Observation.value.as(Quantity)") == []


def test_a_less_than_comparator_opens_the_low_end() -> None:
    [row] = rows(observation('{"value": 5, "comparator": "<"}'), "Observation.value.as(Quantity)")
    assert math.isinf(row.low) and row.low < 0
    assert row.high == 5.0


def test_a_greater_than_comparator_opens_the_high_end() -> None:
    [row] = rows(observation('{"value": 5, "comparator": ">="}'), "Observation.value.as(Quantity)")
    assert (row.low, row.high) == (5.0, math.inf)


def test_money_uses_iso_4217_and_the_currency() -> None:
    resource = fhir_json.loads(
        '{"resourceType": "Invoice", "totalGross": {"value": 48.00, "currency": "EUR"}}'
    )
    assert rows(resource, "Invoice.totalGross") == [
        QuantityRow("p", 48.0, 48.0, 48.0, "urn:iso:std:iso:4217", "EUR", None)
    ]


def test_an_age_is_a_quantity() -> None:
    resource = {
        "resourceType": "Condition",
        "onsetAge": {"value": 52, "unit": "years", "system": UCUM, "code": "a"},
    }
    assert rows(resource, "Condition.onset.as(Age)") == [
        QuantityRow("p", 52.0, 52.0, 52.0, UCUM, "a", "years")
    ]


def test_a_range_covers_low_to_high_with_the_units_of_low() -> None:
    range_ = {"low": {"value": 2, "code": "a", "system": UCUM}, "high": {"value": 5, "code": "a"}}
    resource = {"resourceType": "Condition", "onsetRange": range_}
    assert rows(resource, "Condition.onset.as(Range)") == [
        QuantityRow("p", 2.0, 2.0, 5.0, UCUM, "a", None)
    ]


def test_sampled_data_is_not_indexed() -> None:
    resource = {"resourceType": "Observation", "valueSampledData": {"origin": {"value": 1}}}
    assert rows(resource, "(Observation.value as SampledData)") == []
