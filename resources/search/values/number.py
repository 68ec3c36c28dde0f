"""Number values and the prefixes shared by number, date and quantity.

https://hl7.org/fhir/R4/search.html#number and https://hl7.org/fhir/R4/search.html#prefix:
a number stands for the range its significant digits imply, ± half a unit of the last
written digit (``100`` is [99.5, 100.5), ``100.00`` is [99.995, 100.005), ``1e2`` is
[50, 150)); ``resources.search.normalize.implied_range`` is the one rule shared with the
index. ``ap`` is approximately equal: the value ± 10% of it, and at least the precision
range.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import cast

from resources.search.normalize import implied_range
from resources.search.query import NumberMatch, Prefix
from resources.search.values.common import bad

PREFIXES: frozenset[str] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d{1,4})?")


def split_prefix(text: str, name: str) -> tuple[Prefix, str]:
    """``ge2024`` -> (``ge``, ``2024``); no prefix means ``eq``."""
    head = text[:2]
    if head in PREFIXES:
        rest = text[2:]
        if not rest:
            raise bad(name, f"{text!r} has a prefix but no value")
        return cast(Prefix, head), rest
    if head[:1].isalpha():
        raise bad(name, f"unknown prefix in {text!r} (use one of eq ne gt lt ge le sa eb ap)")
    return "eq", text


def number_range(text: str, name: str, prefix: Prefix) -> tuple[float, float, float]:
    """(value, low, high) of a number as written, ``ap`` widened."""
    if _NUMBER.fullmatch(text) is None:
        raise bad(name, f"{text!r} is not a number")
    try:
        decimal = Decimal(text)
    except InvalidOperation:
        raise bad(name, f"{text!r} is not a number") from None
    value, low, high = implied_range(decimal)
    if prefix == "ap":
        margin = abs(value) / 10
        low, high = min(low, value - margin), max(high, value + margin)
    if not all(math.isfinite(f) for f in (value, low, high)):
        raise bad(name, f"{text!r} is out of range")
    return value, low, high


def parse_number(text: str, name: str) -> NumberMatch:
    """``[prefix]number``."""
    prefix, rest = split_prefix(text, name)
    value, low, high = number_range(rest, name, prefix)
    return NumberMatch(prefix, value, low, high)
