"""String search values (https://hl7.org/fhir/R4/search.html#string).

The spec's string search matches "any of the string elements" of a complex value:

- ``HumanName``: ``family``, ``given``, ``prefix``, ``suffix`` and ``text``;
- ``Address``: ``line``, ``city``, ``district``, ``state``, ``postalCode``, ``country``
  and ``text``;
- primitive strings (``string``, ``markdown``, ``code``, ``uri``, ...): the value.

One :class:`StringRow` per string: ``exact`` keeps the text as written (``:exact``),
``normalized`` is :func:`normalize_string` (default prefix match and ``:contains``).
Other complex types carry no string to match and give no rows. Sort value: the
normalized string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resources.search.model import StringRow
from resources.search.normalize import normalize_string

Item = tuple[Any, str]

_PARTS: dict[str, tuple[str, ...]] = {
    "HumanName": ("family", "given", "prefix", "suffix", "text"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}


def string_rows(code: str, items: Iterable[Item]) -> list[StringRow]:
    rows: list[StringRow] = []
    for value, type_name in items:
        if isinstance(value, str):
            _add(rows, code, value)
        elif isinstance(value, dict):
            for key in _PARTS.get(type_name, ()):
                part = value.get(key)
                if isinstance(part, list):
                    for text in part:
                        if isinstance(text, str):
                            _add(rows, code, text)
                elif isinstance(part, str):
                    _add(rows, code, part)
    return rows


def _add(rows: list[StringRow], code: str, text: str) -> None:
    normalized = normalize_string(text)
    if normalized:
        rows.append(StringRow(code, normalized, text))
