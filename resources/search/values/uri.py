"""URI values: https://hl7.org/fhir/R4/search.html#uri.

The whole URI matches exactly (case-sensitive); ``:below`` matches URIs that start with the
value, ``:above`` URIs the value starts with.
"""

from __future__ import annotations

from typing import Literal

from resources.search.query import UriMatch
from resources.search.values.common import unescape

MODIFIERS = frozenset({"above", "below"})


def parse_uri(text: str, modifier: str | None) -> UriMatch:
    mode: Literal["eq", "above", "below"] = "eq"
    if modifier == "above":
        mode = "above"
    elif modifier == "below":
        mode = "below"
    return UriMatch(unescape(text), mode)
