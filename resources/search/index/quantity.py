"""Quantity search values (https://hl7.org/fhir/R4/search.html#quantity).

One :class:`QuantityRow` per value, with ``value``/``low``/``high`` the range its
precision implies (as for numbers: ``5.4`` covers ``[5.35, 5.45)``) and ``system``,
``unit_code`` (``Quantity.code``) and ``unit`` (``Quantity.unit``, for ``number||unit``):

- ``Quantity``, ``SimpleQuantity``, ``Age``, ``Duration``, ``Count``, ``Distance``: as
  written. A ``comparator`` widens the range on its side: ``<5`` is ``(-inf, 5.5)``,
  ``>=5`` is ``[4.5, +inf)``: the true value lies there.
- ``Money``: ``value`` with ``system`` ``urn:iso:std:iso:4217`` and the ``currency`` as
  the code, which is how the spec searches money (``[number]|urn:iso:std:iso:4217|EUR``).
- ``Range`` (``onset-age``, ``context-quantity``): one row from the low of ``low`` to the
  high of ``high`` (open ends infinite); ``value`` is ``low.value`` (else
  ``high.value``); units from ``low`` (else ``high``).
- ``SampledData`` (listed by ``value-quantity``) has no single quantity: not indexed.

No unit conversion is done (UCUM canonical forms are not computed). Sort value:
``value``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resources.search.index.number import QUANTITY_TYPES, number_bounds, range_bounds
from resources.search.model import QuantityRow

Item = tuple[Any, str]

ISO_4217 = "urn:iso:std:iso:4217"
_INF = float("inf")


def quantity_rows(code: str, items: Iterable[Item]) -> list[QuantityRow]:
    rows: list[QuantityRow] = []
    for value, type_name in items:
        if not isinstance(value, dict):
            continue
        if type_name in QUANTITY_TYPES:
            row = _quantity(code, value)
        elif type_name == "Money":
            row = _money(code, value)
        elif type_name == "Range":
            row = _range(code, value)
        else:
            row = None
        if row is not None:
            rows.append(row)
    return rows


def _units(quantity: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    system, unit_code, unit = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    return (
        system if isinstance(system, str) else None,
        unit_code if isinstance(unit_code, str) else None,
        unit if isinstance(unit, str) else None,
    )


def _quantity(code: str, quantity: dict[str, Any]) -> QuantityRow | None:
    bounds = number_bounds(quantity.get("value"), "decimal")
    if bounds is None:
        return None
    value, low, high = bounds
    comparator = quantity.get("comparator")
    if comparator in ("<", "<="):
        low = -_INF
    elif comparator in (">", ">="):
        high = _INF
    return QuantityRow(code, value, low, high, *_units(quantity))


def _money(code: str, money: dict[str, Any]) -> QuantityRow | None:
    bounds = number_bounds(money.get("value"), "decimal")
    if bounds is None:
        return None
    currency = money.get("currency")
    unit_code = currency if isinstance(currency, str) else None
    return QuantityRow(code, *bounds, ISO_4217, unit_code, None)


def _range(code: str, value: dict[str, Any]) -> QuantityRow | None:
    bounds = range_bounds(value)
    if bounds is None:
        return None
    low, high = value.get("low"), value.get("high")
    units = low if isinstance(low, dict) and low.get("value") is not None else high
    return QuantityRow(code, *bounds, *_units(units if isinstance(units, dict) else {}))
