"""Dotted paths into JSON bodies, and a JSON reader that keeps decimal text.

Paths are a small, FHIRPath-flavoured subset used by the case files
(https://hl7.org/fhir/R4/fhirpath.html#paths): ``meta.versionId``, ``entry.resource.id``,
``name[0].given``, ``link[?relation=next].url``, ``entry[?resource.id^=abc-]``.

- A path yields a *collection* (a Python list). Navigating a field of a list maps over its
  items and flattens, as FHIRPath does, so ``entry.resource.id`` lists every entry's id.
  JSON ``null`` items are dropped.
- ``[n]`` picks the n-th item of the collection so far (negative counts from the end).
- ``[?sub=value]``, ``[?sub!=value]``, ``[?sub^=prefix]`` keep the items whose ``sub`` path
  has an item whose text equals / differs from / starts with ``value``.
- The empty path and ``$`` mean the whole body.

Decimals: FHIR decimals keep their precision (https://hl7.org/fhir/R4/datatypes.html#decimal,
https://hl7.org/fhir/R4/json.html#primitive), so the reader keeps each JSON number's source
text: ``text_of(value)`` gives ``72.50`` for a body that said ``72.50``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class RawFloat(float):
    """A JSON number with a fraction or exponent, remembering its exact source text."""

    raw: str

    def __new__(cls, text: str) -> RawFloat:
        obj = super().__new__(cls, text)
        obj.raw = text
        return obj


def loads(text: str | bytes) -> Any:
    """Parse JSON, keeping the source text of every decimal number."""
    return json.loads(text, parse_float=RawFloat)


def text_of(value: Any) -> str:
    """The text of one JSON value: strings as-is, numbers as written, others as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, RawFloat):
        return value.raw
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_equal(a: Any, b: Any) -> bool:
    """JSON value equality: booleans are not numbers, numbers compare by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    return bool(a == b)


class PathError(ValueError):
    """A path in a case file that cannot be parsed."""


@dataclass(frozen=True)
class _Field:
    name: str

    def apply(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if not isinstance(item, dict) or self.name not in item:
                continue
            value = item[self.name]
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            elif value is not None:
                out.append(value)
        return out


@dataclass(frozen=True)
class _Index:
    index: int

    def apply(self, items: list[Any]) -> list[Any]:
        try:
            return [items[self.index]]
        except IndexError:
            return []


@dataclass(frozen=True)
class _Filter:
    path: str
    op: str
    value: str

    def apply(self, items: list[Any]) -> list[Any]:
        return [item for item in items if self._keeps(item)]

    def _keeps(self, item: Any) -> bool:
        texts = [text_of(v) for v in evaluate(item, self.path)]
        if self.op == "=":
            return self.value in texts
        if self.op == "!=":
            return self.value not in texts
        return any(t.startswith(self.value) for t in texts)


_Segment = _Field | _Index | _Filter


def _split_top(path: str) -> list[str]:
    """Split on dots that are not inside brackets."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise PathError(f"unbalanced ']' in path {path!r}")
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise PathError(f"unbalanced '[' in path {path!r}")
    parts.append(current)
    return parts


def _selector(body: str, path: str) -> _Segment:
    if body.startswith("?"):
        for op in ("!=", "^=", "="):
            sub, sep, value = body[1:].partition(op)
            if sep and sub:
                return _Filter(sub, op, value)
        raise PathError(f"filter [{body}] in {path!r} needs sub=value, sub!=value or sub^=value")
    try:
        return _Index(int(body))
    except ValueError:
        raise PathError(f"[{body}] in {path!r} is neither an index nor a filter") from None


def parse(path: str) -> list[_Segment]:
    """Parse a path into segments; raise PathError with the reason."""
    if path in ("", "$"):
        return []
    segments: list[_Segment] = []
    for part in _split_top(path):
        name, bracket, rest = part.partition("[")
        if name:
            segments.append(_Field(name))
        elif not bracket:
            raise PathError(f"empty step in path {path!r}")
        rest = bracket + rest
        while rest:
            if not rest.startswith("["):
                raise PathError(f"unexpected {rest!r} in path {path!r}")
            end = _matching_bracket(rest)
            segments.append(_selector(rest[1:end], path))
            rest = rest[end + 1 :]
    return segments


def _matching_bracket(text: str) -> int:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
    raise PathError(f"unbalanced '[' in {text!r}")


def evaluate(doc: Any, path: str) -> list[Any]:
    """Evaluate a path against a JSON document; the result is always a list."""
    items: list[Any] = [doc] if doc is not None else []
    for segment in parse(path):
        items = segment.apply(items)
    return items
