"""URI search values (https://hl7.org/fhir/R4/search.html#uri).

A ``uri``/``url``/``canonical``/``oid``/``uuid`` value is indexed as written, one
:class:`UriRow` each (``:above``/``:below`` and exact matching work on the text).
A ``canonical`` keeps its ``|version`` suffix: the uri type has no version semantics.
Sort value: the URI.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resources.search.model import UriRow

Item = tuple[Any, str]


def uri_rows(code: str, items: Iterable[Item]) -> list[UriRow]:
    return [UriRow(code, value) for value, _type in items if isinstance(value, str) and value]
