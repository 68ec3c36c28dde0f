"""String and number normalisation shared by indexing and query parsing
(https://hl7.org/fhir/R4/search.html#string, https://hl7.org/fhir/R4/search.html#number)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from resources.fhir_json import FhirDecimal
from resources.search.normalize import exact_range, implied_range, normalize_string, to_decimal


def test_strings_are_lower_cased() -> None:
    assert normalize_string("Chalmers") == "chalmers"


def test_accents_are_removed() -> None:
    assert normalize_string("Zoë Ångström-Müller") == "zoe angstrom-muller"


def test_whitespace_is_collapsed() -> None:
    assert normalize_string("  Peter \t James\n") == "peter james"


def test_compatibility_forms_are_folded() -> None:
    assert normalize_string("ﬁle") == "file"


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("100", 99.5, 100.5),
        ("100.00", 99.995, 100.005),
        ("2.0", 1.95, 2.05),
        ("0.1", 0.05, 0.15),
        ("1e2", 50.0, 150.0),
        ("1.0e2", 95.0, 105.0),
    ],
)
def test_decimals_cover_half_a_unit_of_their_last_digit(text: str, low: float, high: float) -> None:
    value, got_low, got_high = implied_range(FhirDecimal(text))
    assert value == float(Decimal(text))
    assert (got_low, got_high) == pytest.approx((low, high))


def test_integers_are_exact_points() -> None:
    assert exact_range(Decimal(3)) == (3.0, 3.0, 3.0)


def test_json_integers_and_floats_become_decimals() -> None:
    assert to_decimal(7) == Decimal(7)
    assert to_decimal(0.25) == Decimal("0.25")


def test_booleans_and_text_are_not_numbers() -> None:
    assert to_decimal(True) is None
    assert to_decimal("5") is None
