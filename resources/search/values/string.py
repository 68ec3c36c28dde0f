"""String values: https://hl7.org/fhir/R4/search.html#string.

The default match is a case- and accent-insensitive prefix, ``:contains`` anywhere, both
on the normalized form (``resources.search.normalize``); ``:exact`` is the whole value as
written, case and accents included.
"""

from __future__ import annotations

from typing import Literal

from resources.search.normalize import normalize_string
from resources.search.query import StringMatch
from resources.search.values.common import unescape

MODIFIERS = frozenset({"exact", "contains"})


def parse_string(text: str, modifier: str | None) -> StringMatch:
    """One (escaped) value with its modifier (None, ``exact`` or ``contains``)."""
    value = unescape(text)
    if modifier == "exact":
        return StringMatch(value, "exact")
    mode: Literal["prefix", "contains"] = "contains" if modifier == "contains" else "prefix"
    return StringMatch(normalize_string(value), mode)
