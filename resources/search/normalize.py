"""Normalisation shared by index extraction and query parsing.

- Strings (https://hl7.org/fhir/R4/search.html#string): the default search is "case- and
  accent-insensitive" and may match the start of a string. Both sides therefore compare
  :func:`normalize_string` forms: lower-cased, accents removed (Unicode NFKD, combining
  marks dropped) and runs of whitespace collapsed to one space.
- Numbers (https://hl7.org/fhir/R4/search.html#number): a decimal stands for the range its
  significant digits imply. ``100`` has 3 significant figures and covers
  ``[99.5, 100.5)``; ``100.00`` covers ``[99.995, 100.005)``; ``2.0`` covers
  ``[1.95, 2.05)``. The rule is "plus or minus half a unit of the last significant digit",
  i.e. ``0.5 * 10**exponent`` of the decimal as written. For exponential forms the same
  rule gives ``1e2`` (one significant figure) ``[50, 150)`` and ``1.0e2`` ``[95, 105)``;
  the R4 page's table lists ``[95 ... 105)`` for ``1e2``, which contradicts its own "1
  significant figure" text, so the rule is followed, not that cell. Integer elements
  (``integer``, ``positiveInt``, ``unsignedInt``) are exact: "when a number search is used
  against a resource element that stores a simple integer ... searching is based on exact
  matches", so their range is the single point ``[value, value]``.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal, InvalidOperation

_HALF = Decimal(5)


def normalize_string(text: str) -> str:
    """Lower-case, strip accents, collapse whitespace: the form string search compares."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.lower().split())


def to_decimal(value: object) -> Decimal | None:
    """A JSON number (FhirDecimal, int, float) as a Decimal; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        try:
            return Decimal(repr(value))
        except InvalidOperation:
            return None
    return None


def implied_range(value: Decimal) -> tuple[float, float, float]:
    """``(value, low, high)``: the half-open range the decimal's precision implies."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / Infinity never come from FHIR JSON
        number = float(value)
        return number, number, number
    half = _HALF.scaleb(exponent - 1)
    return float(value), float(value - half), float(value + half)


def exact_range(value: Decimal) -> tuple[float, float, float]:
    """``(value, value, value)``: integers match exactly."""
    number = float(value)
    return number, number, number
