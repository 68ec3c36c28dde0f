"""Number index values: the range a number's precision implies
(https://hl7.org/fhir/R4/search.html#number)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resources import fhir_json
from resources.search.extract import Indexer
from resources.search.model import NumberRow, SearchParam


def rows(resource: dict[str, Any], expression: str) -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", "number", expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


def risk(probability: str) -> dict[str, Any]:
    text = f'{{"resourceType": "RiskAssessment", "prediction": [{{"probability{probability}}}]}}'
    return fhir_json.loads(text)


def test_a_stored_decimal_is_a_point() -> None:
    # the search value's precision makes the range (search.html#number), not the target's
    [row] = rows(risk('Decimal": 0.25'), "RiskAssessment.prediction.probability")
    assert (row.value, row.low, row.high) == pytest.approx((0.25, 0.25, 0.25))


def test_trailing_zeros_do_not_change_the_point() -> None:
    [row] = rows(risk('Decimal": 0.250'), "RiskAssessment.prediction.probability")
    assert (row.low, row.high) == pytest.approx((0.25, 0.25))


def test_an_exponent_is_read_as_its_value() -> None:
    resource = fhir_json.loads('{"resourceType": "ChargeItem", "factorOverride": 1e2}')
    [row] = rows(resource, "ChargeItem.factorOverride")
    assert (row.value, row.low, row.high) == (100.0, 100.0, 100.0)


def test_an_integer_element_is_exact() -> None:
    resource = {"resourceType": "MolecularSequence", "variant": [{"start": 128}]}
    assert rows(resource, "MolecularSequence.variant.start") == [
        NumberRow("p", 128.0, 128.0, 128.0)
    ]


def test_a_range_covers_its_low_to_its_high() -> None:
    range_ = 'Range": {"low": {"value": 0.1}, "high": {"value": 0.3}}'
    [row] = rows(risk(range_), "RiskAssessment.prediction.probability")
    assert (row.value, row.low, row.high) == pytest.approx((0.1, 0.1, 0.3))


def test_a_range_without_high_is_open() -> None:
    [row] = rows(risk('Range": {"low": {"value": 2}}'), "RiskAssessment.prediction.probability")
    assert row.low == 2.0
    assert math.isinf(row.high)
