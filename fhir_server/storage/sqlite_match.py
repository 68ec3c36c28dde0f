"""Search values as SQL predicates over the SQLite index tables.

The comparison semantics are those of https://hl7.org/fhir/R4/search.html#prefix: a value
stands for a range (its precision), and a prefix compares the target's range with the
search value's range. Every value is a bound parameter: no user text enters the SQL.
"""

from __future__ import annotations

from typing import Any

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

Sql = tuple[str, list[Any]]


def prefix_upper_bound(text: str) -> str:
    """The smallest string greater than every string starting with ``text``."""
    return text + "\U0010ffff"


def match_sql(match: Match) -> Sql:
    """A predicate over the index table that holds this match's parameter type."""
    if isinstance(match, TokenMatch):
        return _token(match)
    if isinstance(match, StringMatch):
        return _string(match)
    if isinstance(match, DateMatch):
        return range_sql(match.prefix, "low", "high", match.low, match.high)
    if isinstance(match, QuantityMatch):
        sql, params = _number(match.prefix, "low", "high", match.value, match.low, match.high)
        return _with_units(sql, params, match)
    if isinstance(match, NumberMatch):
        return _number(match.prefix, "low", "high", match.value, match.low, match.high)
    if isinstance(match, ReferenceMatch):
        return _reference(match)
    if isinstance(match, UriMatch):
        return _uri(match, "value")
    if isinstance(match, CompositeMatch):
        return composite_sql(match)
    raise TypeError(f"no SQL for {match!r}")


def _token(m: TokenMatch, s: str = "system", v: str = "value") -> Sql:
    if m.mode == "text":  # a string search on the text: equal or starts with
        text = m.text or ""
        return "text >= ? AND text < ?", [text, prefix_upper_bound(text)]
    if m.mode == "in":
        if not m.codes:
            return "0", []
        pairs = sorted((sys or "", code) for sys, code in m.codes)
        marks = ",".join("(?,?)" for _ in pairs)
        flat = [x for pair in pairs for x in pair]
        return f"(coalesce({s}, ''), {v}) IN (VALUES {marks})", flat
    if m.mode == "of-type":
        return (
            f"type_system = ? AND type_code = ? AND {v} = ?",
            [m.system, m.code, m.text],
        )
    clauses: list[str] = []
    params: list[Any] = []
    if m.code is not None:
        clauses.append(f"{v} = ?")
        params.append(m.code)
    if m.system == "":
        clauses.append(f"{s} IS NULL")
    elif m.system is not None:
        clauses.append(f"{s} = ?")
        params.append(m.system)
    return (" AND ".join(clauses) or "1"), params


def _string(m: StringMatch, norm: str = "norm", exact: str = "exact") -> Sql:
    if m.mode == "exact":
        return f"{exact} = ?", [m.value]
    if m.mode == "contains":
        return f"instr({norm}, ?) > 0", [m.value]
    return f"{norm} >= ? AND {norm} < ?", [m.value, prefix_upper_bound(m.value)]


def range_sql(prefix: str, low: str, high: str, s_low: Any, s_high: Any) -> Sql:
    """Target range ``[low, high)`` against search range ``[s_low, s_high)``."""
    if prefix == "eq":
        return f"{low} >= ? AND {high} <= ?", [s_low, s_high]
    if prefix == "ne":
        return f"NOT ({low} >= ? AND {high} <= ?)", [s_low, s_high]
    if prefix == "gt":
        return f"{high} > ?", [s_high]
    if prefix == "lt":
        return f"{low} < ?", [s_low]
    if prefix == "ge":
        return f"({high} > ? OR ({low} >= ? AND {high} <= ?))", [s_high, s_low, s_high]
    if prefix == "le":
        return f"({low} < ? OR ({low} >= ? AND {high} <= ?))", [s_low, s_low, s_high]
    if prefix == "sa":
        return f"{low} >= ?", [s_high]
    if prefix == "eb":
        return f"{high} <= ?", [s_low]
    if prefix == "ap":
        return f"{low} < ? AND {high} > ?", [s_high, s_low]
    raise ValueError(prefix)


def _number(prefix: str, low: str, high: str, value: float, s_low: float, s_high: float) -> Sql:
    """A stored point (``low == high``) or range ``[low, high]`` against a search value
    whose precision gives ``[s_low, s_high)``: eq/ne by containment in that range, the
    order prefixes against the value itself, "the range above/below the search value"."""
    if prefix == "eq":
        return f"{low} >= ? AND {high} < ?", [s_low, s_high]
    if prefix == "ne":
        return f"NOT ({low} >= ? AND {high} < ?)", [s_low, s_high]
    if prefix == "gt":
        return f"{high} > ?", [value]
    if prefix == "lt":
        return f"{low} < ?", [value]
    if prefix == "ge":
        return f"{high} >= ?", [value]
    if prefix == "le":
        return f"{low} <= ?", [value]
    if prefix == "sa":
        return f"{low} > ?", [value]
    if prefix == "eb":
        return f"{high} < ?", [value]
    if prefix == "ap":  # the parser widened s_low/s_high to the approximate range
        return f"{low} <= ? AND {high} >= ?", [s_high, s_low]
    raise ValueError(prefix)


def _with_units(sql: str, params: list[Any], m: QuantityMatch) -> Sql:
    if m.system is not None and m.code is not None:
        return f"{sql} AND system = ? AND code = ?", [*params, m.system, m.code]
    if m.code is not None:
        return f"{sql} AND (code = ? OR unit = ?)", [*params, m.code, m.code]
    if m.system is not None:
        return f"{sql} AND system = ?", [*params, m.system]
    return sql, params


def _reference(m: ReferenceMatch) -> Sql:
    if m.identifier_value is not None or m.identifier_system is not None:
        clauses, params = [], []
        if m.identifier_value is not None:
            clauses.append("ident_value = ?")
            params.append(m.identifier_value)
        if m.identifier_system == "":
            clauses.append("ident_system IS NULL")
        elif m.identifier_system is not None:
            clauses.append("ident_system = ?")
            params.append(m.identifier_system)
        return " AND ".join(clauses), params
    if m.url is not None and m.below:
        return "url >= ? AND url < ?", [m.url, prefix_upper_bound(m.url)]
    if m.url is not None:
        if m.version is not None:
            return "url = ? AND version = ?", [m.url, m.version]
        return "url = ?", [m.url]
    clauses, params = [], []
    if m.target_id is not None:
        clauses.append("target_id = ?")
        params.append(m.target_id)
    if m.target_type is not None:
        clauses.append("target_type = ?")
        params.append(m.target_type)
    if m.version is not None:
        clauses.append("version = ?")
        params.append(m.version)
    return (" AND ".join(clauses) or "1"), params


def _uri(m: UriMatch, column: str) -> Sql:
    if m.mode == "below":
        return f"{column} >= ? AND {column} < ?", [m.value, prefix_upper_bound(m.value)]
    if m.mode == "above":
        return f"substr(?, 1, length({column})) = {column}", [m.value]
    return f"{column} = ?", [m.value]


def composite_sql(m: CompositeMatch) -> Sql:
    """Each component against its columns ``s{n} v{n} lo{n} hi{n} n{n}``."""
    clauses: list[str] = []
    params: list[Any] = []
    for index, part in enumerate(m.parts, start=1):
        sql, part_params = _component(part, index)
        clauses.append(f"({sql})")
        params += part_params
    return " AND ".join(clauses), params


def _component(part: Match, n: int) -> Sql:
    s, v, lo, hi = f"s{n}", f"v{n}", f"lo{n}", f"hi{n}"
    if isinstance(part, TokenMatch):
        return _token(part, s, v)
    if isinstance(part, ReferenceMatch):
        clauses, params = [f"{v} = ?"], [part.target_id]
        if part.target_type is not None:
            clauses.append(f"{s} = ?")
            params.append(part.target_type)
        return " AND ".join(clauses), params
    if isinstance(part, QuantityMatch):
        sql, params = _number(part.prefix, lo, hi, part.value, part.low, part.high)
        if part.code is not None:
            sql += f" AND {v} = ?"
            params.append(part.code)
        if part.system is not None:
            sql += f" AND {s} = ?"
            params.append(part.system)
        return sql, params
    if isinstance(part, NumberMatch):
        return _number(part.prefix, lo, hi, part.value, part.low, part.high)
    if isinstance(part, DateMatch):
        return range_sql(part.prefix, lo, hi, part.low, part.high)
    if isinstance(part, StringMatch):
        return _string(part, v, v)
    if isinstance(part, UriMatch):
        return _uri(part, v)
    raise TypeError(f"unsupported composite component {part!r}")
