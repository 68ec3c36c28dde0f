"""Search index fields of the MongoDB store, written on the resource document in the
same operation as the resource (https://hl7.org/fhir/R4/search.html).

Each document of the ``resources`` collection (``_id`` = ``"Type/id"``, the current
version) carries, next to ``type, id, version, last_updated, method, content, seq``:

``i``: the index rows, one array per kind of row. Every element names its parameter by
value (``"p": code``), so no parameter code ever becomes a field name, and a search on
one parameter is one ``$elemMatch`` served by a multikey index on ``(type, i.<kind>.p,
i.<kind>.<value field>)``. Fields whose value is None are left out (queries say
``{"$exists": false}``)::

    i.tok  {p, s: system, v: code/value, t: text, ts/tc: Identifier.type system/code}
    i.str  {p, n: normalized, e: exact}
    i.date {p, lo, hi}               half-open UTC range, instants as sortable strings
    i.num  {p, lo, hi}               a point (lo == hi) or a Range, doubles
    i.qty  {p, lo, hi, s: system, c: code, u: unit}
    i.ref  {p, t: target type, id: target id, u: url, ver: version,
            is/iv: identifier system/value}
    i.uri  {p, v}
    i.cmp  {p, s1 v1 l1 h1, s2 v2 ..., ...}   one element per composite combination

Numbers are stored as doubles: MongoDB compares doubles natively and mongomock cannot
compare ``Decimal128`` (the exact decimal text stays in the stored resource bytes).
``inf``/``-inf`` are valid doubles and compare as expected on both.

``s``: the sort keys, ``s.<field>.lo`` (lowest value, for ascending) and ``s.<field>.hi``
(highest, for descending), scalars rather than arrays, because MongoDB sorts an array
field by its min/max element while mongomock compares whole lists. ``<field>`` is
:func:`sort_field` of the code: the one place where a parameter code becomes part of a
field name, so it is escaped to a safe alphabet. Documents without a value for a
parameter have no ``s.<field>``; the search gives them a sentinel so they sort last in
both directions (see ``mongo_search``). The exception are the :data:`STORED_SORTS`
(``date``, the common clinical sort): every live document carries their keys, with the
sentinels themselves (:data:`NO_VALUE_LAST` for ``lo``, ``""`` for ``hi``) when it has no
value, so a search sorts on the stored fields and MongoDB can walk the ``sort_date_*``
indexes instead of sorting every match.

MongoDB reference: https://www.mongodb.com/docs/manual/core/indexes/index-types/index-multikey/
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel

from fhir_server.storage.base import IndexEntries, StoredVersion
from resources.search.model import (
    CompositeRow,
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)

STORED_FIELDS = ("type", "id", "version", "last_updated", "method", "content", "seq")
"""The fields of a resource document that make a :class:`StoredVersion`."""
INDEX = "i"
"""Field holding the index rows, by kind."""
REFS = f"{INDEX}.ref"
"""The reference elements (chains, ``_has``, includes)."""
SORT = "s"
"""Field holding the sort keys, by :func:`sort_field`."""

KIND_OF_TYPE = {
    "token": "tok",
    "string": "str",
    "date": "date",
    "number": "num",
    "quantity": "qty",
    "reference": "ref",
    "uri": "uri",
    "composite": "cmp",
}
"""Where a parameter of each type keeps its rows (``i.<kind>``)."""

NUMERIC_SORT_TYPES = frozenset({"number", "quantity"})
"""Parameter types whose sort keys are doubles; every other type sorts by strings."""
NO_VALUE_LAST = "\U0010ffff\U0010ffff"
"""Sorts after every real string key (an ascending string sort puts no value last); ``""``
sorts before all of them (the same for a descending sort)."""
STORED_SORTS = frozenset({"date"})
"""Codes of (``date``-typed) parameters whose sort keys every live document stores, with
sentinels when it has no value, so that their sorts can use an index. ``date`` is a
date parameter on each of the 60 R4 types that define it."""

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def sort_field(code: str) -> str:
    """The field name (under ``s``) of a parameter's sort keys.

    Letters, digits, ``_`` and ``-`` stay; every other character (``.``, ``$``, ``~``,
    NUL, ...) becomes ``~`` and six hex digits, so the mapping is injective and the result
    is a plain field name that neither starts with ``$`` nor contains a ``.``.
    """
    return "".join(ch if ch in _SAFE else f"~{ord(ch):06x}" for ch in code) or "~"


def encode(entries: IndexEntries) -> dict[str, Any]:
    """The index fields (``i`` and ``s``) of a resource version, to store on its document.

    Both fields are always present (possibly empty), so replacing a document replaces its
    whole index.
    """
    index: dict[str, list[dict[str, Any]]] = {}
    for row in entries.rows:
        kind, fields = _element(row)
        index.setdefault(kind, []).append(fields)
    sort = {sort_field(c): {"lo": NO_VALUE_LAST, "hi": ""} for c in sorted(STORED_SORTS)}
    sort |= {
        sort_field(key.code): {"lo": _sort_value(key.low), "hi": _sort_value(key.high)}
        for key in entries.sort_keys
    }
    return {INDEX: index, SORT: sort}


def stored_version(doc: Mapping[str, Any]) -> StoredVersion:
    """A resource document (projected on :data:`STORED_FIELDS`) as a version."""
    content = doc.get("content")
    return StoredVersion(
        doc["type"],
        doc["id"],
        doc["version"],
        doc["last_updated"],
        doc["method"],
        None if content is None else bytes(content),
        doc.get("seq", 0),
    )


def _sort_value(value: str | float) -> str | float:
    return value if isinstance(value, str) else float(value)


def _compact(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _element(row: IndexRow) -> tuple[str, dict[str, Any]]:
    """``(kind, element)`` of one index row."""
    if isinstance(row, TokenRow):
        return "tok", _compact(
            p=row.code, s=row.system, v=row.value, t=row.text, ts=row.type_system, tc=row.type_code
        )
    if isinstance(row, StringRow):
        return "str", {"p": row.code, "n": row.normalized, "e": row.exact}
    if isinstance(row, DateRow):
        return "date", {"p": row.code, "lo": row.low, "hi": row.high}
    if isinstance(row, ReferenceRow):
        ref = _compact(p=row.code, t=row.target_type, id=row.target_id, u=row.url)
        ref |= _compact(ver=row.version, iv=row.identifier_value)
        if row.identifier_system is not None:
            ref["is"] = row.identifier_system
        return "ref", ref
    if isinstance(row, QuantityRow):
        return "qty", _compact(
            p=row.code,
            lo=float(row.low),
            hi=float(row.high),
            s=row.system,
            c=row.unit_code,
            u=row.unit,
        )
    if isinstance(row, NumberRow):
        return "num", {"p": row.code, "lo": float(row.low), "hi": float(row.high)}
    if isinstance(row, UriRow):
        return "uri", {"p": row.code, "v": row.value}
    if isinstance(row, CompositeRow):
        element: dict[str, Any] = {"p": row.code}
        for n, part in enumerate(row.parts, start=1):
            element.update(component_fields(part, n))
        return "cmp", element
    raise TypeError(f"unknown index row {row!r}")


def component_fields(part: IndexRow, n: int) -> dict[str, Any]:
    """Component ``n`` (from 1) of a composite as ``s{n} v{n} l{n} h{n}`` (system, value,
    range low/high), the columns the SQLite store matches."""
    if isinstance(part, TokenRow):
        values: tuple[Any, ...] = (part.system, part.value, None, None)
    elif isinstance(part, ReferenceRow):
        values = (part.target_type, part.target_id, None, None)
    elif isinstance(part, QuantityRow):
        values = (part.system, part.unit_code, float(part.low), float(part.high))
    elif isinstance(part, NumberRow):
        values = (None, None, float(part.low), float(part.high))
    elif isinstance(part, DateRow):
        values = (None, None, part.low, part.high)
    elif isinstance(part, StringRow):
        values = (None, part.normalized, None, None)
    elif isinstance(part, UriRow):
        values = (None, part.value, None, None)
    else:
        raise TypeError(f"unsupported composite component {part!r}")
    names = (f"s{n}", f"v{n}", f"l{n}", f"h{n}")
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}


def _index(name: str, *fields: str) -> IndexModel:
    return IndexModel([(field, ASCENDING) for field in fields], name=name)


INDEXES: list[IndexModel] = [
    _index("search_tok", "type", "i.tok.p", "i.tok.v", "i.tok.s"),
    _index("search_str", "type", "i.str.p", "i.str.n"),
    _index("search_date", "type", "i.date.p", "i.date.lo", "i.date.hi"),
    _index("search_num", "type", "i.num.p", "i.num.lo"),
    _index("search_qty", "type", "i.qty.p", "i.qty.c", "i.qty.lo"),
    _index("search_ref", "type", "i.ref.p", "i.ref.id", "i.ref.t"),
    _index("search_ref_url", "type", "i.ref.p", "i.ref.u"),
    _index("search_ref_target", "i.ref.id", "i.ref.t"),
    _index("search_uri", "type", "i.uri.p", "i.uri.v"),
    _index("search_cmp", "type", "i.cmp.p", "i.cmp.v1", "i.cmp.s1"),
    _index("search_last_updated", "type", "last_updated", "_id"),
    _index("sort_date_lo", "type", f"{SORT}.date.lo", "_id"),
    _index("sort_date_hi", "type", f"{SORT}.date.hi", "_id"),
    # patient-context access: the resources of a compartment (``m``, see mongo_access)
    _index("member_type", "m", "type", "_id"),
]
"""The ``resources`` indexes the searches need, created by the store at start-up
(``create_indexes`` is idempotent for identical definitions).

Each compound index has one array path (``i.<kind>``) and, with ``$elemMatch``, MongoDB
compounds the bounds of ``p`` and the value field on the same element.
``search_ref_target`` serves ``_revinclude=*`` (any source type and parameter); ``_id``
(``Type/id``) serves ``_id`` clauses, includes, ``_has`` results and the default order.

Sorts: ``search_last_updated`` serves ``_sort=_lastUpdated`` and ``sort_date_lo`` /
``sort_date_hi`` serve ``_sort=date`` / ``_sort=-date`` (walked backwards, with ``_id``
breaking ties in the same direction), so a broad sorted search reads one page of index
entries instead of sorting all of its matches; MongoDB's planner still prefers a
selective filter index (``patient=...``) and sorts its few matches. Other sort keys are
not indexed (one index per parameter code would cost every write an index entry per
index): a ``_sort`` on them sorts the matches of the filter, cheap for a selective search
and costly for one matching much of a type (see ``mongo_search``).
"""
