"""Search values as MongoDB conditions on one index element (``i.<kind>`` of
``mongo_index``), the counterpart of ``sqlite_match``.

Comparison semantics are those of https://hl7.org/fhir/R4/search.html#prefix: a value
stands for a range (its precision), and a prefix compares the target's range with the
search value's range.

Each match becomes a list of *alternatives* (a disjunction), each a conjunction of field
conditions on the same array element; the search wraps every alternative in
``{"$elemMatch": {"p": code, **alternative}}`` and ORs them at the top level, so no
``$or`` ever sits inside an ``$elemMatch`` and every branch can use a multikey index.
An empty list matches nothing.

Operators used, all with the same semantics in mongomock 4.3 and MongoDB
(https://www.mongodb.com/docs/manual/reference/operator/query/): ``$gt $gte $lt $lte``
between values of one BSON type (strings by code point, doubles numerically, ``inf``
included), ``$in``, ``$exists``, equality on strings, and ``$regex`` given as a
:class:`bson.regex.Regex` built only from :func:`literal_pattern` (every ASCII character
that is not a letter or digit is written ``\\xHH``, so user text is never a pattern and
NUL cannot truncate it). String prefixes are ranges, never regular expressions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import product
from typing import Any

from bson.regex import Regex

from resources.search.query import (
    CompositeMatch,
    DateMatch,
    Match,
    NumberMatch,
    QuantityMatch,
    ReferenceMatch,
    StringMatch,
    TokenMatch,
    UriMatch,
)

Alternative = dict[str, Any]
"""Conditions on fields of one index element, all of which must hold."""

NO_SYSTEM = {"$exists": False}
"""A value written without a system (None fields are not stored)."""


def prefix_upper_bound(text: str) -> str:
    """The smallest string greater than every string starting with ``text``: both
    MongoDB (UTF-8 bytes) and Python (code points) order U+10FFFF after every other
    character."""
    return text + "\U0010ffff"


def literal_pattern(text: str) -> str:
    """A regular expression (PCRE and Python ``re`` alike) matching ``text`` literally."""
    return "".join(ch if ch.isalnum() or ord(ch) >= 0x80 else f"\\x{ord(ch):02x}" for ch in text)


def conjunction(*parts: Alternative) -> Alternative:
    """Merge conditions; two operator documents on one field are combined, any other
    clash falls back to ``$and``."""
    merged: Alternative = {}
    rest: list[Alternative] = []
    for part in parts:
        for name, condition in part.items():
            if name not in merged:
                merged[name] = condition
            elif (
                _operators(merged[name])
                and _operators(condition)
                and not (set(merged[name]) & set(condition))
            ):
                merged[name] = {**merged[name], **condition}
            else:
                rest.append({name: condition})
    if rest:
        merged["$and"] = [*merged.pop("$and", []), *rest]
    return merged


def _operators(condition: Any) -> bool:
    return isinstance(condition, dict) and all(str(k).startswith("$") for k in condition)


def combine(groups: Sequence[Sequence[Alternative]]) -> list[Alternative]:
    """The AND of several disjunctions, as one disjunction."""
    return [conjunction(*choice) for choice in product(*groups)]


def alternatives(match: Match) -> list[Alternative]:
    """The match against the element fields of its parameter's kind."""
    if isinstance(match, TokenMatch):
        return token(match, "s", "v")
    if isinstance(match, StringMatch):
        return string(match, "n", "e")
    if isinstance(match, DateMatch):
        return date_range(match.prefix, "lo", "hi", match.low, match.high)
    if isinstance(match, QuantityMatch):
        return combine([number(match, "lo", "hi"), _units(match)])
    if isinstance(match, NumberMatch):
        return number(match, "lo", "hi")
    if isinstance(match, ReferenceMatch):
        return [_reference(match)]
    if isinstance(match, UriMatch):
        return [uri(match, "v")]
    if isinstance(match, CompositeMatch):
        return composite(match)
    raise TypeError(f"no MongoDB condition for {match!r}")


def token(m: TokenMatch, s: str, v: str) -> list[Alternative]:
    """``code``, ``system|code``, ``|code``, ``system|``, ``:text``, ``:of-type``, ``:in``."""
    if m.mode == "text":  # a string search on the text: equal or starts with
        text = m.text or ""
        return [{"t": {"$gte": text, "$lt": prefix_upper_bound(text)}}]
    if m.mode == "in":
        by_system: dict[str | None, list[str]] = {}
        for system, code in sorted(m.codes, key=lambda pair: (pair[0] or "", pair[1])):
            by_system.setdefault(system or None, []).append(code)
        return [
            {s: NO_SYSTEM if system is None else system, v: {"$in": codes}}
            for system, codes in by_system.items()
        ]
    if m.mode == "of-type":
        if m.system is None or m.code is None or m.text is None:
            return []
        return [{"ts": m.system, "tc": m.code, v: m.text}]
    alternative: Alternative = {}
    if m.code is not None:
        alternative[v] = m.code
    if m.system == "":
        alternative[s] = NO_SYSTEM
    elif m.system is not None:
        alternative[s] = m.system
    return [alternative]


def string(m: StringMatch, normalized: str, exact: str) -> list[Alternative]:
    """Prefix of the normalized value (a range), ``:contains`` anywhere in it, ``:exact``."""
    if m.mode == "exact":
        return [{exact: m.value}]
    if m.mode == "contains":
        return [{normalized: Regex(literal_pattern(m.value))}]
    return [{normalized: {"$gte": m.value, "$lt": prefix_upper_bound(m.value)}}]


def date_range(prefix: str, lo: str, hi: str, s_lo: Any, s_hi: Any) -> list[Alternative]:
    """Target range ``[lo, hi)`` against search range ``[s_lo, s_hi)``."""
    inside = {lo: {"$gte": s_lo}, hi: {"$lte": s_hi}}
    table: dict[str, list[Alternative]] = {
        "eq": [inside],
        "ne": [{lo: {"$lt": s_lo}}, {hi: {"$gt": s_hi}}],
        "gt": [{hi: {"$gt": s_hi}}],
        "lt": [{lo: {"$lt": s_lo}}],
        "ge": [{hi: {"$gt": s_hi}}, inside],
        "le": [{lo: {"$lt": s_lo}}, inside],
        "sa": [{lo: {"$gte": s_hi}}],
        "eb": [{hi: {"$lte": s_lo}}],
        "ap": [{lo: {"$lt": s_hi}, hi: {"$gt": s_lo}}],
    }
    if prefix not in table:
        raise ValueError(prefix)
    return table[prefix]


def number(m: NumberMatch | QuantityMatch, lo: str, hi: str) -> list[Alternative]:
    """A stored point (``lo == hi``) or range ``[lo, hi]`` (open ends are -/+ ``inf``)
    against a search value whose precision gives ``[s_low, s_high)``: ``eq``/``ne`` by
    containment in that range, the order prefixes against the value itself, ``ap``
    (range widened by the parser) by overlap; as ``sqlite_match._number``."""
    s_low, s_high, value = float(m.low), float(m.high), float(m.value)
    inside = {lo: {"$gte": s_low}, hi: {"$lt": s_high}}
    table: dict[str, list[Alternative]] = {
        "eq": [inside],
        "ne": [{lo: {"$lt": s_low}}, {hi: {"$gte": s_high}}],
        "gt": [{hi: {"$gt": value}}],
        "lt": [{lo: {"$lt": value}}],
        "ge": [{hi: {"$gte": value}}],
        "le": [{lo: {"$lte": value}}],
        "sa": [{lo: {"$gt": value}}],
        "eb": [{hi: {"$lt": value}}],
        "ap": [{lo: {"$lte": s_high}, hi: {"$gte": s_low}}],
    }
    if m.prefix not in table:
        raise ValueError(m.prefix)
    return table[m.prefix]


def _units(m: QuantityMatch) -> list[Alternative]:
    """``number|system|code``; ``number||code`` matches the UCUM code or the unit text."""
    if m.system is not None and m.code is not None:
        return [{"s": m.system, "c": m.code}]
    if m.code is not None:
        return [{"c": m.code}, {"u": m.code}]
    if m.system is not None:
        return [{"s": m.system}]
    return [{}]


def _reference(m: ReferenceMatch) -> Alternative:
    if m.identifier_value is not None or m.identifier_system is not None:
        alternative: Alternative = {}
        if m.identifier_value is not None:
            alternative["iv"] = m.identifier_value
        if m.identifier_system == "":
            alternative["is"] = NO_SYSTEM
        elif m.identifier_system is not None:
            alternative["is"] = m.identifier_system
        return alternative
    if m.url is not None:
        if m.version is not None:
            return {"u": m.url, "ver": m.version}
        return {"u": m.url}
    fields = {"id": m.target_id, "t": m.target_type, "ver": m.version}
    return {name: value for name, value in fields.items() if value is not None}


def uri(m: UriMatch, field: str) -> Alternative:
    """``:below``: the value starts with the search URI (a range); ``:above``: the value
    is a prefix of the search URI (one of its prefixes, listed)."""
    if m.mode == "below":
        return {field: {"$gte": m.value, "$lt": prefix_upper_bound(m.value)}}
    if m.mode == "above":
        return {field: {"$in": _prefixes(m.value)}}
    return {field: m.value}


def _prefixes(text: str) -> list[str]:
    return [text[:end] for end in range(len(text) + 1)]


def composite(m: CompositeMatch) -> list[Alternative]:
    """Every component against its own fields of the same element."""
    return combine([_component(part, n) for n, part in enumerate(m.parts, start=1)])


def _component(part: Match, n: int) -> list[Alternative]:
    s, v, lo, hi = f"s{n}", f"v{n}", f"l{n}", f"h{n}"
    if isinstance(part, TokenMatch):
        return token(part, s, v)
    if isinstance(part, ReferenceMatch):
        fields = {v: part.target_id, s: part.target_type}
        return [{name: value for name, value in fields.items() if value is not None}]
    if isinstance(part, QuantityMatch):
        units = {v: part.code, s: part.system}
        unit_fields = {name: value for name, value in units.items() if value is not None}
        return combine([number(part, lo, hi), [unit_fields]])
    if isinstance(part, NumberMatch):
        return number(part, lo, hi)
    if isinstance(part, DateMatch):
        return date_range(part.prefix, lo, hi, part.low, part.high)
    if isinstance(part, StringMatch):
        return string(part, v, v)
    if isinstance(part, UriMatch):
        return [uri(part, v)]
    raise TypeError(f"unsupported composite component {part!r}")


def any_of(conditions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A filter matching any of ``conditions`` (nothing when there are none)."""
    listed = list(conditions)
    if not listed:
        return MATCH_NOTHING
    if len(listed) == 1:
        return listed[0]
    return {"$or": listed}


MATCH_NOTHING: dict[str, Any] = {"_id": {"$in": []}}
"""A filter no document satisfies."""
