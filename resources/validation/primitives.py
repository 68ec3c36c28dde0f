"""Checks of primitive values and the messages of required bindings.

- JSON types of primitives, https://hl7.org/fhir/R4/json.html#primitive
- the value formats, https://hl7.org/fhir/R4/datatypes.html#primitive: the R4 regexes
  from the generated definitions (``format_check``), then what the regexes leave out
  (``late_check``): dates that are not in the calendar, codes with leading, trailing or
  doubled Unicode whitespace, strings of only Unicode whitespace, base64 that does not
  decode, lone surrogates (text that is not Unicode, which no JSON writer can write
  back). The second kind is reported only where nothing else was (see ``walk``), as the
  fhir.resources models that did these checks before reported them;
- required bindings, https://hl7.org/fhir/R4/terminologies.html#required.

A check takes a value of the right JSON type and returns a message, or None when the value
is valid. Checks are built once per primitive type; ``fast_check`` is a quick test that
most valid values pass without a Python call.
"""

from __future__ import annotations

import binascii
import calendar
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from resources import definitions
from resources.definitions import ValueSetCodes

Check = Callable[[Any], "str | None"]

# The kind of an element's values, ordered: the primitives (by JSON type), then the others.
BOOLEAN, INTEGER, DECIMAL, STRING, COMPLEX, RESOURCE = range(6)
_KIND_OF_PRIMITIVE = {
    "boolean": BOOLEAN,
    "integer": INTEGER,
    "positiveInt": INTEGER,
    "unsignedInt": INTEGER,
    "decimal": DECIMAL,
}
_JSON_TYPE_NAMES = {
    BOOLEAN: "a JSON boolean",
    INTEGER: "a JSON integer number",
    DECIMAL: "a JSON number",
    STRING: "a JSON string",
}
_INT32 = range(-(2**31), 2**31)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")
_SPACE = re.compile(r"[ \t\r\n]+")
# A code in Unicode terms: no leading, trailing or doubled whitespace of any script.
_UNICODE_CODE = re.compile(r"[^\s]+(\s[^\s]+)*").fullmatch
_STRING_SPACE = frozenset(" \t\r\n")
# Primitive types whose R4 regex holds for every non-empty string without control
# characters (``[ \r\n\t\S]+`` with XML Schema's ASCII ``\s``).
_ANY_TEXT = frozenset({"string", "markdown", "xhtml"})
# Strings SHALL NOT exceed 1 MB (1024 * 1024 characters),
# https://hl7.org/fhir/R4/datatypes.html#string: string and its specializations.
MAX_STRING = 1024 * 1024
_LIMITED = frozenset({"string", "markdown", "code"})
# Quick tests of common values (see ``fast_check``): printable ASCII, the R4 rules.
_FAST_PATTERNS = {
    "uri": r"[!-~]+",
    "url": r"[!-~]+",
    "canonical": r"[!-~]+",
    "code": r"[!-~]+( [!-~]+)*",
    "base64Binary": r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?",
}
# Dates: the R4 regexes with days up to 28 only, which every month has.
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
_ANY_DAY = "(0[1-9]|[1-2][0-9]|3[0-1])"
_DAY_TO_28 = "(0[1-9]|1[0-9]|2[0-8])"


def kind_of(type_code: str) -> int:
    """The kind of the values of a primitive type (BOOLEAN ... STRING)."""
    return _KIND_OF_PRIMITIVE.get(type_code, STRING)


def is_primitive(type_code: str) -> bool:
    return type_code in definitions.primitive_types()


@cache
def _regex(primitive: str) -> Callable[[str], Any] | None:
    """The R4 regex of a primitive type (XML Schema semantics: ``\\s`` is ASCII)."""
    pattern = definitions.primitive_types().get(primitive)
    return re.compile(pattern, re.ASCII).fullmatch if pattern else None


def _base64_ok(text: str) -> bool:
    """R4's base64Binary regex, without its exponential backtracking on long input."""
    compact = _SPACE.sub("", text)
    return len(compact) % 4 == 0 and _BASE64.fullmatch(compact) is not None


def _text_problem(value: str) -> str | None:
    if value == "":
        return "Empty strings are not allowed; omit the element instead"
    if not value.isprintable() and _CONTROL.search(value):
        return "Strings must not contain control characters other than tab, CR and LF"
    return None


@cache
def format_check(type_code: str) -> Check:
    """The check of a primitive type's values against its R4 regex (and JSON number range)."""
    kind = kind_of(type_code)
    if kind == BOOLEAN:
        return lambda value: None
    if kind == INTEGER:
        return _integer_check(type_code)
    if kind == DECIMAL:
        return _decimal_check()
    if type_code == "base64Binary":
        return lambda value: (
            _text_problem(value)
            or (None if _base64_ok(value) else "Not a valid base64Binary value")
        )
    match = None if type_code in _ANY_TEXT else _regex(type_code)
    if type_code in _LIMITED:
        return _limited(match, type_code)
    if match is None:
        return _text_problem

    def check(value: str) -> str | None:
        problem = _text_problem(value)
        if problem is None and match(value) is None:
            return f"{value[:100]!r} is not a valid {type_code}"
        return problem

    return check


def _limited(match: Callable[[str], Any] | None, type_code: str) -> Check:
    """The check of a string type with the 1 MB limit."""

    def check(value: str) -> str | None:
        if len(value) > MAX_STRING:
            return f"A {type_code} must not be longer than 1 MB ({MAX_STRING:,} characters)"
        problem = _text_problem(value)
        if problem is None and match is not None and match(value) is None:
            return f"{value[:100]!r} is not a valid {type_code}"
        return problem

    return check


@cache
def fast_check(type_code: str) -> Callable[[str], Any] | None:
    """A quick test of a non-empty string value of at most :data:`MAX_STRING` characters
    (the walk tests the length): true only when ``format_check`` and
    ``late_check`` find nothing wrong with it (false tells nothing), for most values of
    the type; C-level (a regex or ``str.isprintable``), so the walk calls no Python
    function for them. None for the types that have none."""
    if kind_of(type_code) != STRING:
        return None
    if type_code == "xhtml":
        return _never  # always parsed (narrative)
    if type_code in _ANY_TEXT:
        return str.isprintable  # no control characters, no lone surrogates, no odd space
    pattern = _FAST_PATTERNS.get(type_code) or definitions.primitive_types().get(type_code)
    if type_code in _DATE_TYPES and pattern is not None:
        pattern = pattern.replace(_ANY_DAY, _DAY_TO_28) if _ANY_DAY in pattern else None
    return re.compile(pattern, re.ASCII).fullmatch if pattern else _never


def _never(value: str) -> bool:
    return False


def _integer_check(type_code: str) -> Check:
    match = _regex(type_code)

    def check(value: int) -> str | None:
        if value not in _INT32:
            return f"{value} is outside the range of a 32-bit {type_code}"
        if match is not None and match(str(value)) is None:
            return f"{value} is not a valid {type_code}"
        return None

    return check


def _decimal_check() -> Check:
    match = _regex("decimal")

    def check(value: Any) -> str | None:
        text = getattr(value, "raw", None) or str(value)
        return None if match is None or match(text) else f"{text} is not a valid decimal"

    return check


@cache
def late_check(type_code: str) -> Check | None:
    """The check of what a value valid by its regex can still get wrong, or None."""
    if kind_of(type_code) != STRING:
        return None
    specific = _LATE_CHECKS.get(type_code)
    if specific is None:
        return _surrogate_problem

    def check(value: str) -> str | None:
        return _surrogate_problem(value) or specific(value)

    return check


def _surrogate_problem(value: str) -> str | None:
    """Text must be Unicode characters: a lone surrogate (``"\\ud800"`` in JSON) is not."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Strings must not contain lone surrogates (invalid Unicode)"
    return None


def _calendar_problem(value: str) -> str | None:
    """A full date must be in the calendar (the regexes allow 2021-02-30)."""
    if len(value) < 10 or value[8:10] <= "28":
        return None
    year, month, day = int(value[:4]), int(value[5:7]), int(value[8:10])
    if day <= calendar.monthrange(year, month)[1]:
        return None
    return f"{value!r} is not a date in the calendar"


def _code_problem(value: str) -> str | None:
    if value.isascii() or _UNICODE_CODE(value):
        return None
    return f"{value[:100]!r} is not a valid code: it has leading, trailing or doubled whitespace"


def _string_problem(value: str) -> str | None:
    if value.isspace() and not _STRING_SPACE.intersection(value):
        return "A string must not be only whitespace"
    return None


def _base64_problem(value: str) -> str | None:
    try:
        binascii.a2b_base64(value)
    except (binascii.Error, ValueError) as exc:
        return f"Not a valid base64Binary value: {exc}"
    return None


_LATE_CHECKS: dict[str, Check] = {
    "date": _calendar_problem,
    "dateTime": _calendar_problem,
    "instant": _calendar_problem,
    "code": _code_problem,
    "string": _string_problem,
    "base64Binary": _base64_problem,
}


def json_type_problem(value: Any, kind: int, type_code: str) -> str | None:
    """The message when a primitive's value has the wrong JSON type, or None."""
    if _json_type_ok(value, kind):
        return None
    return f"A value of type {type_code} must be {_JSON_TYPE_NAMES[kind]}, not {json_name(value)}"


def _json_type_ok(value: Any, kind: int) -> bool:
    if kind == STRING:
        return isinstance(value, str)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | Decimal | float) and not isinstance(value, bool)


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
