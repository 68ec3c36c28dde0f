"""The MongoDB search compiler on the stand-in, continued: hostile values stay data, and a
grid of matches gives the same answers as the SQLite store (the reference implementation).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from fhir_server.storage.base import IndexEntries, WriteRequest
from fhir_server.storage.mongo_search import (
    RESOURCES,
    compile_filter,
    run_search,
)
from fhir_server.storage.open import open_store
from resources import fhir_json
from resources.search.model import (
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    SearchParam,
    SortKey,
    StringRow,
    TokenRow,
)
from resources.search.query import (
    AnyOf,
    ChainClause,
    Clause,
    CompositeMatch,
    DateMatch,
    HasClause,
    IdClause,
    Include,
    LastUpdatedClause,
    Match,
    MissingMatch,
    NumberMatch,
    QuantityMatch,
    ReferenceMatch,
    Sort,
    StringMatch,
    TokenMatch,
    UriMatch,
)
from tests.test_mongo_search.support import (
    CODE,
    COMBO,
    DATE,
    IDENTIFIER,
    NAME,
    ORG,
    QUANTITY,
    SUBJECT,
    URL,
    VALUE,
    found,
    ids,
    put,
    q,
)

# -- hostile values stay data -------------------------------------------------------------

HOSTILE = ['{"$ne": null}', "$ne", ".*", "^", "$where", "a|b", "\\", "(", "[", "\x00", "' OR 1"]


@pytest.mark.parametrize("value", HOSTILE)
async def test_hostile_values_are_matched_literally(db, value):
    await put(
        db,
        "Patient",
        "plain",
        [StringRow("name", "plain", "Plain"), TokenRow("identifier", None, "1", "plain")],
    )
    await put(
        db,
        "Patient",
        "literal",
        [
            StringRow("name", f"x{value}y", f"x{value}y"),
            TokenRow("identifier", None, value, f"{value} w"),
        ],
    )
    assert await found(db, NAME, StringMatch(f"x{value}")) == ["literal"]
    assert await found(db, NAME, StringMatch(value, "contains")) == ["literal"]
    assert await found(db, NAME, StringMatch(f"x{value}y", "exact")) == ["literal"]
    assert await found(db, IDENTIFIER, TokenMatch(code=value)) == ["literal"]
    assert await found(db, IDENTIFIER, TokenMatch(system=value)) == []
    assert await found(db, IDENTIFIER, TokenMatch(mode="text", text=value)) == ["literal"]
    assert await found(db, IDENTIFIER, TokenMatch(code=value), negate=True) == ["plain"]
    assert await ids(db, q("Patient", IdClause((value,)))) == []
    assert await found(db, ORG, ReferenceMatch("Organization", value)) == []
    assert await found(db, URL, UriMatch(value, "above")) == []


async def test_compiled_filters_hold_user_text_only_as_values(db):
    value = '{"$where": "sleep(1000)"}'
    query = q(
        "Patient",
        Clause(NAME, (StringMatch(value), StringMatch(value, "exact"))),
        Clause(IDENTIFIER, (TokenMatch(system=value, code=value),), negate=True),
        IdClause((value,)),
    )
    where = await compile_filter(db, query)

    def keys(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [*node, *(k for v in node.values() for k in keys(v))]
        if isinstance(node, list):
            return [k for v in node for k in keys(v)]
        return []

    assert all(k.startswith("$") or k in _FIELDS for k in keys(where)), keys(where)
    assert value not in keys(where)


_FIELDS = {"type", "method", "_id", "i.str", "i.tok", "p", "n", "e", "s", "v"}


SHARED_OPERATORS = {
    # query operators (mongo_match, mongo_search, mongo_include)
    "$and", "$or", "$nor", "$in", "$nin", "$elemMatch", "$exists", "$ne",
    "$gt", "$gte", "$lt", "$lte",
    # aggregation stages and expressions
    "$match", "$addFields", "$sort", "$limit", "$project", "$unwind", "$group",
    "$ifNull", "$literal",
}  # fmt: skip
"""What the compiler may emit: operators whose semantics mongomock 4.3 shares with MongoDB
(listed in the module docstrings). Regular expressions are BSON ``Regex`` values built
by ``mongo_match.literal_pattern``, never ``$regex`` with ``$options`` or under ``$not``."""


class Recording:
    """A collection that records every filter and pipeline it is given."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.seen: list[Any] = []

    def find(self, where: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(where)
        return self.collection.find(where, *args, **kwargs)

    async def aggregate(self, pipeline: Any, **kwargs: Any) -> Any:
        self.seen.append(pipeline)
        return await self.collection.aggregate(pipeline, **kwargs)

    async def count_documents(self, where: Any, **kwargs: Any) -> int:
        self.seen.append(where)
        return await self.collection.count_documents(where, **kwargs)


def _operators(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {k for k in node if k.startswith("$")}
        return found.union(*(_operators(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_operators(v) for v in node))
    return set()  # values, including field paths of expressions ("$i.ref") and Regex


async def test_only_operators_shared_with_mongodb_are_used(db):
    await put(db, "Patient", "p1", [StringRow("name", "eve", "Eve")], [SortKey("name", "e", "e")])
    rows = [ReferenceRow("subject", "Patient", "p1", None), TokenRow("code", None, "x")]
    await put(db, "Observation", "x1", rows)
    recording = Recording(db[RESOURCES])
    database = {RESOURCES: recording}
    chain = ChainClause(SUBJECT, ("Patient",), Clause(NAME, (StringMatch("ev", "contains"),)))
    has = HasClause("Observation", SUBJECT, Clause(CODE, (TokenMatch(code="x"),)))
    queries = [
        q("Observation", chain, Clause(CODE, (MissingMatch(False),)), includes=(
            Include("Observation", SUBJECT), Include("*", None, reverse=True, iterate=True)
        )),
        q("Patient", has, AnyOf((IdClause(("p1",), negate=True), Clause(NAME, (
            StringMatch("e"),), negate=True))), sort=(Sort(NAME, descending=True),)),
        q("Observation", *(Clause(VALUE, (NumberMatch(p, 1, 0.5, 1.5),)) for p in ("ne", "ap"))),
        q("Observation", Clause(COMBO, (CompositeMatch((TokenMatch(mode="text", text="a"),
            QuantityMatch("ge", 1, 0.5, 1.5, None, "mg"))),))),
        q("Observation", LastUpdatedClause((DateMatch("ne", "2024", "2025"),))),
    ]  # fmt: skip
    for query in queries:
        page = await run_search(database, query, None, 1, True)
        if page.next_cursor is not None:
            await run_search(database, query, page.next_cursor, 1, False)
    used = _operators(recording.seen)
    assert used <= SHARED_OPERATORS, used - SHARED_OPERATORS
    assert {"$elemMatch", "$nor", "$addFields", "$ifNull", "$group"} <= used


# -- the same answers as the SQLite store ---------------------------------------------------


def _quantity(value: float, low: float, high: float, unit: str | None) -> QuantityRow:
    return QuantityRow("value-quantity", value, low, high, "http://u", unit, unit)


_GRID_ROWS: dict[str, list[IndexRow]] = {
    "a": [NumberRow("value", 99.4, 99.4, 99.4), DateRow("date", "2024-01-01", "2024-01-02")],
    "b": [NumberRow("value", 100.0, 100.0, 100.0), DateRow("date", "2024-01-05", "2024-01-06")],
    "c": [NumberRow("value", 100.5, 100.5, 100.5), DateRow("date", "2024-01-01", "2024-02-01")],
    "d": [NumberRow("value", -3.0, -3.0, -3.0), NumberRow("value", 250.0, 250.0, 250.0)],
    "e": [DateRow("date", "2024-01-05T10:00", "2024-01-05T11:00"), _quantity(5, 5, 5, "mg")],
    "f": [],
    "g": [NumberRow("value", 2.0, 2.0, math.inf), _quantity(4.9, 4.9, 4.9, "g")],
    "h": [NumberRow("value", 100.0, -math.inf, 100.2), _quantity(5.2, 5.2, 5.2, None)],
    "i": [NumberRow("value", 99.0, 99.0, 101.0), _quantity(1.0, 0.0, 10.0, "mg")],
}


def _grid_matches() -> list[tuple[SearchParam, Match]]:
    cases: list[tuple[SearchParam, Match]] = []
    prefixes = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
    for prefix in prefixes:
        for value, low, high in ((100.0, 99.5, 100.5), (250.0, 249.5, 250.5), (0.0, -5.0, 5.0)):
            cases.append((VALUE, NumberMatch(prefix, value, low, high)))
        for low, high in (("2024-01-05", "2024-01-06"), ("2024-01-01", "2024-02-01")):
            cases.append((DATE, DateMatch(prefix, low, high)))
        for system, code in ((None, None), ("http://u", "mg"), (None, "g"), ("http://u", None)):
            match = QuantityMatch(prefix, 5.0, 4.95, 5.05, system, code)
            cases.append((QUANTITY, match))
    return cases


async def test_matches_agree_with_the_sqlite_store(db, tmp_path: Path):
    sqlite = open_store(f"sqlite:///{tmp_path / 'grid.sqlite3'}")
    await sqlite.open()
    try:
        for id_, rows in _GRID_ROWS.items():
            await put(db, "Observation", id_, rows)
            body = fhir_json.dumps({"resourceType": "Observation", "id": id_})
            await sqlite.write(
                WriteRequest(
                    "Observation",
                    id_,
                    "update",
                    lambda v, lu, b=body: b,
                    index=IndexEntries(rows),
                )
            )
        for param, match in _grid_matches():
            for negate in (False, True):
                query = q("Observation", Clause(param, (match,), negate))
                expected = [e.id for e in (await sqlite.search(query, None, 50, False)).entries]
                assert await ids(db, query) == expected, (match, negate)
    finally:
        await sqlite.close()
