"""FHIRPath operators and type tests of the invariants' evaluator (``fhirpath_eval``):
equality, ordering of dates, times and quantities by their precision, three-valued logic,
arithmetic (https://hl7.org/fhirpath/N1/#operations)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from resources.validation.fhirpath_env import DATE, TIME, Env, EvaluationError, Fn, truth
from resources.validation.fhirpath_parse import Unsupported

# --------------------------------------------------------------------------- types

_SYSTEM_TYPES = {
    "Boolean": "boolean",
    "String": "string",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
    "Quantity": "Quantity",
}


def _is(values: list[Any], test: Callable[[Any], bool]) -> list[Any]:
    if not values:
        return []
    if len(values) > 1:
        _fail("'is' needs a single item")
    return [test(values[0])]


def _fail(message: str) -> Any:
    raise EvaluationError(message)


# --------------------------------------------------------------------------- operators


def _operator(operator: str, left: Fn, right: Fn) -> Fn:
    if operator in _LOGIC:
        logic = _LOGIC[operator]

        def boolean(focus: list[Any], env: Env) -> list[Any]:
            return logic(left, right, focus, env)

        return boolean
    if operator == "|":
        return lambda focus, env: _distinct(left(focus, env) + right(focus, env))
    if operator == "&":
        return lambda focus, env: [_text(left(focus, env)) + _text(right(focus, env))]
    if operator == "in":
        return lambda focus, env: _member(left(focus, env), right(focus, env))
    if operator == "contains":
        return lambda focus, env: _member(right(focus, env), left(focus, env))
    binary = _BINARY.get(operator)
    if binary is None:
        raise Unsupported(f"operator {operator}")

    def apply(focus: list[Any], env: Env) -> list[Any]:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1:
            if operator in ("=", "!="):
                same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
                return [same if operator == "=" else not same]
            _fail(f"'{operator}' needs single items")
        result = binary(a[0], b[0])
        return [] if result is None else [result]

    return apply


def _and(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a = truth(left(focus, env))
    if a is False:
        return [False]
    b = truth(right(focus, env))
    if b is False:
        return [False]
    return [True] if a and b else []


def _or(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a = truth(left(focus, env))
    if a is True:
        return [True]
    b = truth(right(focus, env))
    if b is True:
        return [True]
    return [False] if a is False and b is False else []


def _xor(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a, b = truth(left(focus, env)), truth(right(focus, env))
    return [] if a is None or b is None else [a != b]


def _implies(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a = truth(left(focus, env))
    if a is False:
        return [True]
    b = truth(right(focus, env))
    if b is True:
        return [True]
    if a is True and b is False:
        return [False]
    return []


_LOGIC = {"and": _and, "or": _or, "xor": _xor, "implies": _implies}


def _text(values: list[Any]) -> str:
    if not values:
        return ""
    if len(values) > 1:
        _fail("'&' needs single items")
    return _string(values[0])


def _string(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return getattr(value, "raw", None) or str(value)
    if isinstance(value, str | int):
        return str(value)
    _fail("not a primitive value")
    return ""


def _member(items: list[Any], collection: list[Any]) -> list[Any]:
    if not items:
        return []
    if len(items) > 1:
        _fail("'in' needs a single item")
    return [any(_equal(items[0], other) for other in collection)]


def _distinct(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if not any(_equal(value, seen) for seen in out):
            out.append(value)
    return out


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return a == b
    return a == b


def _eq(a: Any, b: Any) -> bool | None:
    if a.__class__ is str and b.__class__ is str and a != b and a[:1].isdigit() and b[:1].isdigit():
        dates = compare_dates(a, b)
        if dates is not None or (DATE.fullmatch(a) and DATE.fullmatch(b)):
            return None if dates is None else dates == 0
    return _equal(a, b)


def _ne(a: Any, b: Any) -> bool | None:
    same = _eq(a, b)
    return None if same is None else not same


def _order(a: Any, b: Any) -> int | None:
    """-1, 0, 1, or None when the two cannot be ordered (FHIRPath: empty)."""
    if isinstance(a, bool) or isinstance(b, bool):
        _fail("booleans have no order")
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        dates = compare_dates(a, b)
        if dates is not None or (DATE.fullmatch(a) and DATE.fullmatch(b)):
            return dates
        return (a > b) - (a < b)
    if isinstance(a, dict) and isinstance(b, dict):
        return _compare_quantities(a, b)
    if isinstance(a, dict) and isinstance(b, int | Decimal):
        return _order(a.get("value"), b) if _unitless(a) and "value" in a else None
    if isinstance(b, dict) and isinstance(a, int | Decimal):
        return _order(a, b.get("value")) if _unitless(b) and "value" in b else None
    _fail("values of these types have no order")
    return None


def _unitless(quantity: dict[str, Any]) -> bool:
    return not quantity.get("code") and not quantity.get("unit")


def _compare_quantities(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    if "value" not in a or "value" not in b:
        return None
    same_unit = (a.get("system"), a.get("code")) == (b.get("system"), b.get("code")) and (
        a.get("code") is not None or a.get("unit") == b.get("unit")
    )
    if not same_unit:
        return None
    return _order(a["value"], b["value"])


def _moment(text: str) -> tuple[list[Any], int] | None:
    """A date/dateTime/instant as comparable parts (in UTC when it has a time zone) and
    its precision (the number of parts)."""
    match = DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    parts: list[Any] = [int(year)]
    for part in (month, day, hour, minute):
        if part is None:
            return parts, len(parts)
        parts.append(int(part))
    seconds = Decimal(second + (fraction or "")) if second is not None else None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        parts[4] -= sign * (int(zone[1:3]) * 60 + int(zone[4:6]))
    if zone:  # normalise to UTC through the calendar
        base = datetime.datetime(parts[0], parts[1], parts[2]) + datetime.timedelta(
            hours=parts[3], minutes=parts[4]
        )
        parts = [base.year, base.month, base.day, base.hour, base.minute]
    if seconds is not None:
        parts.append(seconds)
    return parts, len(parts)


def compare_dates(a: str, b: str) -> int | None:
    """Dates compared part by part; None when they cannot be (not both dates, or equal
    as far as the less precise goes while their precisions differ)."""
    if len(a) == len(b) and _same_shape(a, b):
        return (a > b) - (a < b)
    if ":" in a and ":" in b and TIME.fullmatch(a) and TIME.fullmatch(b):
        return (a > b) - (a < b)
    first, second = _moment(a), _moment(b)
    if first is None or second is None:
        return None
    (left, left_precision), (right, right_precision) = first, second
    for x, y in zip(left, right, strict=False):
        if x != y:
            return -1 if x < y else 1
    return 0 if left_precision == right_precision else None


_DAY_OR_LESS = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?").fullmatch


def _same_shape(a: str, b: str) -> bool:
    """Whether two date texts of one length compare as text: dates of the same precision,
    or date-times with the same time zone and fraction digits."""
    if len(a) <= 10:
        return _DAY_OR_LESS(a) is not None and _DAY_OR_LESS(b) is not None
    zone_a, zone_b = (a[-1:], b[-1:]) if a[-1:] == "Z" else (a[-6:], b[-6:])
    return (
        zone_a == zone_b
        and a[10:11] == "T" == b[10:11]
        and DATE.fullmatch(a) is not None
        and DATE.fullmatch(b) is not None
    )


def _less(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order < 0


def _greater(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order > 0


def _less_equal(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order <= 0


def _greater_equal(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order >= 0


def _plus(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return a + b
    _fail("'+' of these types")


def _arithmetic(operation: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        if isinstance(a, bool) or isinstance(b, bool):
            _fail("arithmetic on booleans")
        if not (isinstance(a, int | Decimal) and isinstance(b, int | Decimal)):
            _fail("arithmetic on values that are not numbers")
        try:
            return operation(a, b)
        except (ZeroDivisionError, InvalidOperation):
            return None

    return run


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "=": _eq,
    "!=": _ne,
    "<": _less,
    ">": _greater,
    "<=": _less_equal,
    ">=": _greater_equal,
    "+": _plus,
    "-": _arithmetic(lambda a, b: a - b),
    "*": _arithmetic(lambda a, b: a * b),
    "/": _arithmetic(lambda a, b: Decimal(a) / Decimal(b)),
    "div": _arithmetic(lambda a, b: a // b),
    "mod": _arithmetic(lambda a, b: a % b),
}
