"""FHIRPath functions of the invariants' evaluator (``fhirpath_eval``): existence,
filtering, subsetting, strings, conversions, combining
(https://hl7.org/fhirpath/N1/#functions)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from resources.validation.fhirpath_env import Env, Fn, truth
from resources.validation.fhirpath_operators import _distinct, _equal, _fail, _string
from resources.validation.fhirpath_parse import Unsupported

# --------------------------------------------------------------------------- functions


def _exists(values: list[Any], criteria: Fn | None, env: Env) -> list[Any]:
    if criteria is None:
        return [bool(values)]
    return [any(truth(criteria([v], env)) for v in values)]


def _where(values: list[Any], criteria: Fn | None, env: Env) -> list[Any]:
    return [v for v in values if truth(criteria([v], env))]  # type: ignore[misc]


def _all(values: list[Any], criteria: Fn | None, env: Env) -> list[Any]:
    return [all(truth(criteria([v], env)) is True for v in values)]  # type: ignore[misc]


def _select(values: list[Any], projection: Fn | None, env: Env) -> list[Any]:
    out: list[Any] = []
    for value in values:
        out.extend(projection([value], env))  # type: ignore[misc]
    return out


_WITH_ITEM_ARGUMENT = {"exists": _exists, "where": _where, "all": _all, "select": _select}


def _iif(source: Fn, args: list[Fn]) -> Fn:
    if len(args) not in (2, 3):
        raise Unsupported("iif() arguments")

    def run(focus: list[Any], env: Env) -> list[Any]:
        values = source(focus, env)
        if len(values) > 1:
            _fail("iif() on several items")
        if truth(args[0](values, env)):
            return args[1](values, env)
        return args[2](values, env) if len(args) == 3 else []

    return run


def _single(values: list[Any]) -> Any:
    if len(values) > 1:
        _fail("a function of one item was given several")
    return values[0] if values else None


def _single_string(values: list[Any]) -> str | None:
    value = _single(values)
    return value if isinstance(value, str) else None


def _empty(values: list[Any], env: Env) -> list[Any]:
    return [not values]


def _not(values: list[Any], env: Env) -> list[Any]:
    value = truth(values)
    return [] if value is None else [not value]


def _count(values: list[Any], env: Env) -> list[Any]:
    return [len(values)]


def _has_value(values: list[Any], env: Env) -> list[Any]:
    return [len(values) == 1 and not isinstance(values[0], dict | list)]


def _is_distinct(values: list[Any], env: Env) -> list[Any]:
    return [len(_distinct(values)) == len(values)]


def _first(values: list[Any], env: Env) -> list[Any]:
    return values[:1]


def _last(values: list[Any], env: Env) -> list[Any]:
    return values[-1:]


def _tail(values: list[Any], env: Env) -> list[Any]:
    return values[1:]


def _children_of(value: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "resourceType" or key.startswith("_"):
                continue
            if isinstance(child, list):
                out.extend(c for c in child if c is not None)
            else:
                out.append(child)
    return out


def _children(values: list[Any], env: Env) -> list[Any]:
    return [c for v in values for c in _children_of(v)]


def _descendants(values: list[Any], env: Env) -> list[Any]:
    out: list[Any] = []
    pending = _children(values, env)
    while pending:
        out.extend(pending)
        pending = _children(pending, env)
    return out


def _matches(values: list[Any], env: Env, pattern: list[Any]) -> list[Any]:
    text, regex = _single_string(values), _single_string(pattern)
    if text is None or regex is None:
        return []
    return [_regex(regex).search(text) is not None]


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def _replace_matches(
    values: list[Any], env: Env, pattern: list[Any], replacement: list[Any]
) -> list[Any]:
    text, regex, by = _single_string(values), _single_string(pattern), _single(replacement)
    if text is None or regex is None or not isinstance(by, str):
        return []
    return [_regex(regex).sub(by.replace("\\", "\\\\").replace("$", "\\"), text)]


def _starts_with(values: list[Any], env: Env, prefix: list[Any]) -> list[Any]:
    text, start = _single_string(values), _single_string(prefix)
    return [] if text is None or start is None else [text.startswith(start)]


def _contains_text(values: list[Any], env: Env, part: list[Any]) -> list[Any]:
    text, inner = _single_string(values), _single_string(part)
    return [] if text is None or inner is None else [inner in text]


def _substring(values: list[Any], env: Env, start: list[Any], *length: list[Any]) -> list[Any]:
    text, at = _single_string(values), _single(start)
    if text is None or not isinstance(at, int) or at < 0 or at >= len(text):
        return []
    if length:
        size = _single(length[0])
        return [text[at : at + size]] if isinstance(size, int) else [text[at:]]
    return [text[at:]]


def _length(values: list[Any], env: Env) -> list[Any]:
    text = _single_string(values)
    return [] if text is None else [len(text)]


def _to_integer(values: list[Any], env: Env) -> list[Any]:
    value = _single(values)
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return [int(value)]
    return []


def _to_string(values: list[Any], env: Env) -> list[Any]:
    value = _single(values)
    if value is None or isinstance(value, dict | list):
        return []
    return [_string(value)]


def _combine(values: list[Any], env: Env, other: list[Any]) -> list[Any]:
    return values + other


def _intersect(values: list[Any], env: Env, other: list[Any]) -> list[Any]:
    return _distinct([v for v in values if any(_equal(v, o) for o in other)])


def _distinct_function(values: list[Any], env: Env) -> list[Any]:
    return _distinct(values)


def _union(values: list[Any], env: Env, other: list[Any]) -> list[Any]:
    return _distinct(values + other)


_FUNCTIONS: dict[tuple[str, int], Callable[..., list[Any]]] = {
    ("empty", 0): _empty,
    ("not", 0): _not,
    ("count", 0): _count,
    ("hasValue", 0): _has_value,
    ("isDistinct", 0): _is_distinct,
    ("distinct", 0): _distinct_function,
    ("first", 0): _first,
    ("last", 0): _last,
    ("tail", 0): _tail,
    ("children", 0): _children,
    ("descendants", 0): _descendants,
    ("matches", 1): _matches,
    ("replaceMatches", 2): _replace_matches,
    ("startsWith", 1): _starts_with,
    ("contains", 1): _contains_text,
    ("substring", 1): _substring,
    ("substring", 2): _substring,
    ("length", 0): _length,
    ("toInteger", 0): _to_integer,
    ("toString", 0): _to_string,
    ("combine", 1): _combine,
    ("intersect", 1): _intersect,
    ("union", 1): _union,
}
