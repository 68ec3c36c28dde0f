"""What every value parser shares: escaping, errors, and the parse context.

Escaping: https://hl7.org/fhir/R4/search.html#escaping. ``,`` (OR), ``|`` (system|code)
and ``$`` (composite components) separate; ``\\,`` ``\\|`` ``\\$`` and ``\\\\`` stand for
the characters themselves. A backslash before any other character is kept as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from resources.errors import FhirError, invalid
from resources.search.model import SearchParam

ValueSetLookup = Callable[[str], frozenset[tuple[str | None, str]] | None]

_ESCAPED = re.compile(r"\\([\\,|$])")
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""A resource id: https://hl7.org/fhir/R4/datatypes.html#id"""


class Unsupported(Exception):
    """An unknown parameter, or a modifier the parameter does not take.

    Under ``Prefer: handling=strict`` this is a 400; under lenient the parameter is
    ignored (https://hl7.org/fhir/R4/search.html#errors).
    """


class UnknownParameter(Unsupported):
    """No parameter of that code for the resource type(s)."""


@dataclass(frozen=True)
class Context:
    """What parsing needs from outside: parameter definitions, value sets, the time."""

    params_for: Callable[[str], Mapping[str, SearchParam]]
    value_set: ValueSetLookup | None
    now: datetime
    memo: tuple[object, ...] = ()
    """What the parse of a value depends on besides the value (the lookups as given by
    the caller): the key prefix of :mod:`resources.search.parse`'s memo."""


def split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped; the parts keep their escapes."""
    if "\\" not in text:
        return text.split(separator)
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """The value a (separator-free) part stands for."""
    return _ESCAPED.sub(r"\1", text) if "\\" in text else text


def bad(name: str, message: str) -> FhirError:
    """A 400 for a malformed value of parameter ``name``."""
    return invalid(f"Invalid value for search parameter '{name}': {message}", name)
