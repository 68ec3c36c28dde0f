"""Number search values (https://hl7.org/fhir/R4/search.html#number).

A stored number is a point: ``low == high == value``. The precision that matters is the
search value's (``100`` searches ``[99.5, 100.5)``, :mod:`resources.search.normalize`),
so a target ``100.4`` equals ``100`` and ``gt100`` means strictly greater.

- ``Range`` (e.g. ``RiskAssessment.prediction.probability[x]``): one row from
  ``low.value`` to ``high.value`` ("the target is explicitly a range"), open ends to
  -/+ infinity; ``value`` is ``low.value`` (else ``high.value``).
- ``Quantity`` and its profiles: the ``value`` alone.

Sort value: ``value``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from resources.search.model import NumberRow
from resources.search.normalize import exact_range, to_decimal

Item = tuple[Any, str]

INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "System.Integer"})
QUANTITY_TYPES = frozenset(
    {"Quantity", "SimpleQuantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity"}
)


def number_bounds(value: object, type_name: str) -> tuple[float, float, float] | None:
    """``(value, low, high)`` of one JSON number, or None when it is not a number."""
    number = to_decimal(value)
    if number is None:
        return None
    return exact_range(number)


def range_bounds(value: dict[str, Any]) -> tuple[float, float, float] | None:
    """``(value, low, high)`` of a ``Range``: its two quantities' outer limits."""
    low = _quantity_value(value.get("low"))
    high = _quantity_value(value.get("high"))
    if low is None and high is None:
        return None
    low_bounds = exact_range(low) if low is not None else None
    high_bounds = exact_range(high) if high is not None else None
    return (
        (low_bounds or high_bounds or (0.0,))[0],
        low_bounds[1] if low_bounds else float("-inf"),
        high_bounds[2] if high_bounds else float("inf"),
    )


def number_rows(code: str, items: Iterable[Item]) -> list[NumberRow]:
    rows: list[NumberRow] = []
    for value, type_name in items:
        if isinstance(value, dict):
            if type_name == "Range":
                bounds = range_bounds(value)
            elif type_name in QUANTITY_TYPES:
                bounds = number_bounds(value.get("value"), "decimal")
            else:
                bounds = None
        else:
            bounds = number_bounds(value, type_name)
        if bounds is not None:
            rows.append(NumberRow(code, *bounds))
    return rows


def _quantity_value(quantity: object) -> Decimal | None:
    if isinstance(quantity, dict):
        return to_decimal(quantity.get("value"))
    return None
