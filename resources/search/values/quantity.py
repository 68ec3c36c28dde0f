"""Quantity values: https://hl7.org/fhir/R4/search.html#quantity.

``[prefix][number]|[system]|[code]``: with a system, ``code`` is a unit code of that
system; ``[number]||[code]`` matches the code or the unit text in any system; a bare
number matches any unit. The number part follows the number rules (precision ranges,
prefixes).
"""

from __future__ import annotations

from resources.search.query import QuantityMatch
from resources.search.values.common import bad, split, unescape
from resources.search.values.number import number_range, split_prefix


def parse_quantity(text: str, name: str) -> QuantityMatch:
    parts = split(text, "|")
    if len(parts) not in (1, 3):
        raise bad(name, f"{unescape(text)!r} is not [prefix]number|system|code")
    prefix, number = split_prefix(unescape(parts[0]), name)
    value, low, high = number_range(number, name, prefix)
    if len(parts) == 1:
        return QuantityMatch(prefix, value, low, high)
    system, code = unescape(parts[1]) or None, unescape(parts[2]) or None
    return QuantityMatch(prefix, value, low, high, system, code)
