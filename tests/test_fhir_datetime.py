"""Date/time values as ranges by precision (https://hl7.org/fhir/R4/search.html#date)."""

from __future__ import annotations

import pytest

from resources.errors import FhirError
from resources.fhir_datetime import parse_range_text


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2024", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-12", "2024-12-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-02", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"),
        ("2024-02-28", "2024-02-28T00:00:00.000Z", "2024-02-29T00:00:00.000Z"),
        ("2024-02-28T10:15", "2024-02-28T10:15:00.000Z", "2024-02-28T10:16:00.000Z"),
        ("2024-02-28T10:15:30Z", "2024-02-28T10:15:30.000Z", "2024-02-28T10:15:31.000Z"),
        ("2024-02-28T10:15:30.5+02:00", "2024-02-28T08:15:30.500Z", "2024-02-28T08:15:30.600Z"),
    ],
)
def test_precision_gives_the_range(text: str, start: str, end: str) -> None:
    assert parse_range_text(text) == (start, end)


@pytest.mark.parametrize("text", ["2024-13", "2024-02-30", "yesterday", "2024-1-1", "24:00"])
def test_bad_values_are_400(text: str) -> None:
    with pytest.raises(FhirError) as error:
        parse_range_text(text, "_since")
    assert error.value.status == 400
    assert error.value.expression == ("_since",)
