"""Lossless FHIR JSON (https://hl7.org/fhir/R4/json.html)."""

from __future__ import annotations

import pytest

from resources import fhir_json
from resources.errors import FhirError


@pytest.mark.parametrize(
    "text", ["72.50", "0.010", "1.0e2", "-0.0", "1E-7", "123456789012345678.9"]
)
def test_decimal_text_survives_a_round_trip(text: str) -> None:
    value = fhir_json.loads(f'{{"v": {text}}}')
    assert fhir_json.dumps(value) == f'{{"v":{text}}}'.encode()


def test_pretty_printing_keeps_decimal_text() -> None:
    value = fhir_json.loads(b'{"a": [72.50, {"b": 0.010}]}')
    assert b"72.50" in fhir_json.dumps(value, pretty=True)
    assert b"0.010" in fhir_json.reindent(fhir_json.dumps(value))


def test_integers_and_unicode_are_kept() -> None:
    value = fhir_json.loads('{"n": 12345678901234567890, "s": "Zoë 日本"}'.encode())
    assert fhir_json.loads(fhir_json.dumps(value)) == value


def test_duplicate_property_is_rejected() -> None:
    with pytest.raises(FhirError) as error:
        fhir_json.loads(b'{"a": 1, "a": 2}')
    assert error.value.status == 400
    assert "duplicate" in error.value.diagnostics


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(text: str) -> None:
    with pytest.raises(FhirError):
        fhir_json.loads(f'{{"v": {text}}}')


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(FhirError) as error:
        fhir_json.loads(b'{"v": "\xff"}')
    assert "UTF-8" in error.value.diagnostics


def test_byte_order_mark_is_tolerated() -> None:
    assert fhir_json.loads("\ufeff{}".encode()) == {}


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3", b"null"])
def test_resource_body_must_be_an_object(body: bytes) -> None:
    with pytest.raises(FhirError) as error:
        fhir_json.loads_resource(body)
    assert error.value.status == 400
