"""Checks of primitive values and the messages of required bindings.

- JSON types of primitives, https://hl7.org/fhir/R4/json.html#primitive
- the value formats, https://hl7.org/fhir/R4/datatypes.html#primitive (the R4 regexes
  from the generated definitions; fhir.resources adds the calendar checks);
- required bindings, https://hl7.org/fhir/R4/terminologies.html#required.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from resources import definitions
from resources.definitions import ValueSetCodes
from resources.validation.r4_models import BOOLEAN, DECIMAL, INTEGER, STRING, Field

_INT32 = range(-(2**31), 2**31)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")
_SPACE = re.compile(r"[ \t\r\n]+")

_JSON_TYPE_NAMES = {
    BOOLEAN: "a JSON boolean",
    INTEGER: "a JSON integer number",
    DECIMAL: "a JSON number",
    STRING: "a JSON string",
}


@cache
def _regex(primitive: str) -> Callable[[str], Any] | None:
    """The R4 regex of a primitive type (XML Schema semantics: ``\\s`` is ASCII)."""
    pattern = definitions.primitive_types().get(primitive)
    return re.compile(pattern, re.ASCII).fullmatch if pattern else None


def _base64_ok(text: str) -> bool:
    """R4's base64Binary regex, without its exponential backtracking on long input."""
    compact = _SPACE.sub("", text)
    return len(compact) % 4 == 0 and _BASE64.fullmatch(compact) is not None


def string_problem(value: str, primitive: str) -> str | None:
    """What is wrong with the string value of a primitive type, or None."""
    if value == "":
        return "Empty strings are not allowed; omit the element instead"
    if _CONTROL.search(value):
        return "Strings must not contain control characters other than tab, CR and LF"
    if primitive == "base64Binary":
        return None if _base64_ok(value) else "Not a valid base64Binary value"
    match = _regex(primitive)
    if match is not None and match(value) is None:
        return f"{value[:100]!r} is not a valid {primitive}"
    return None


def number_problem(value: Any, f: Field) -> str | None:
    """What is wrong with the number value of an integer or decimal field, or None."""
    if f.kind == INTEGER:
        if value not in _INT32:
            return f"{value} is outside the range of a 32-bit {f.type}"
        match = _regex(f.type)
        return None if match is None or match(str(value)) else f"{value} is not a valid {f.type}"
    text = getattr(value, "raw", None) or str(value)
    match = _regex("decimal")
    return None if match is None or match(text) else f"{text} is not a valid decimal"


def json_type_problem(value: Any, f: Field) -> str | None:
    """The message when a primitive's value has the wrong JSON type, or None."""
    if _json_type_ok(value, f.kind):
        return None
    expected = _JSON_TYPE_NAMES[min(f.kind, STRING)]
    return f"A value of type {f.type} must be {expected}, not {json_name(value)}"


def _json_type_ok(value: Any, kind: int) -> bool:
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == DECIMAL:
        return isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    return isinstance(value, str)


def json_name(value: Any) -> str:
    """What a JSON value is, for messages: "null", "a string", "an object" ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return {str: "a string", dict: "an object", list: "an array"}.get(type(value), "a value")


def outside(what: str, binding: ValueSetCodes) -> str:
    """E.g. "'bogus' is not in the required value set <url> (allowed: a, b)"."""
    message = f"{what} the required value set {binding.url}"
    if len(binding.codes) <= 12:
        message += f" (allowed: {', '.join(sorted(binding.codes))})"
    return message
