"""The stores' search execution on hand-built index rows and query IR: matching per
parameter type and prefix (https://hl7.org/fhir/R4/search.html#prefix), chains, _has,
:missing, :not, sorting by the spec's min/max rule, keyset paging and includes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from fhir_server.storage.base import IndexEntries, Store, WriteRequest
from fhir_server.storage.open import open_store
from fhir_server.storage.search_page import Cursor
from resources import fhir_json
from resources.errors import FhirError
from resources.search.model import (
    DateRow,
    IndexRow,
    NumberRow,
    ReferenceRow,
    SearchParam,
    SortKey,
    StringRow,
    TokenRow,
)
from resources.search.query import (
    ChainClause,
    Clause,
    DateMatch,
    HasClause,
    IdClause,
    Include,
    MissingMatch,
    NumberMatch,
    ReferenceMatch,
    SearchQuery,
    Sort,
    StringMatch,
    TokenMatch,
)
from tests.conftest import STORES, storage_url

CODE = SearchParam("Observation", "code", "token", "Observation.code")
SUBJECT = SearchParam(
    "Observation", "subject", "reference", "Observation.subject", targets=("Patient",)
)
DATE = SearchParam("Observation", "date", "date", "Observation.effective")
VALUE = SearchParam("Observation", "value", "number", "Observation.value")
NAME = SearchParam("Patient", "name", "string", "Patient.name")
ORG = SearchParam("Patient", "organization", "reference", "Patient.managingOrganization")
ORG_NAME = SearchParam("Organization", "name", "string", "Organization.name")


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    instance = open_store(storage_url(request.param, tmp_path))
    await instance.open()
    yield instance
    await instance.close()


async def put(
    store: Store, type_: str, id_: str, rows: Sequence[IndexRow] = (), sort: Sequence[SortKey] = ()
) -> None:
    body = fhir_json.dumps({"resourceType": type_, "id": id_})
    await store.write(
        WriteRequest(type_, id_, "update", lambda v, lu: body, index=IndexEntries(rows, sort))
    )


async def ids(store: Store, query: SearchQuery, count: int = 100) -> list[str]:
    page = await store.search(query, None, count, False)
    return [e.id for e in page.entries]


def q(types: str, *conditions, **kwargs) -> SearchQuery:
    return SearchQuery(types=(types,), conditions=list(conditions), **kwargs)


async def test_token_system_and_code(store):
    await put(store, "Observation", "a", [TokenRow("code", "http://loinc.org", "1234-5")])
    await put(store, "Observation", "b", [TokenRow("code", "http://other", "1234-5")])
    await put(store, "Observation", "c", [TokenRow("code", None, "1234-5")])
    both = Clause(CODE, (TokenMatch(system="http://loinc.org", code="1234-5"),))
    assert await ids(store, q("Observation", both)) == ["a"]
    any_system = Clause(CODE, (TokenMatch(code="1234-5"),))
    assert await ids(store, q("Observation", any_system)) == ["a", "b", "c"]
    no_system = Clause(CODE, (TokenMatch(system="", code="1234-5"),))
    assert await ids(store, q("Observation", no_system)) == ["c"]
    system_only = Clause(CODE, (TokenMatch(system="http://other"),))
    assert await ids(store, q("Observation", system_only)) == ["b"]


async def test_comma_is_or_and_repeat_is_and(store):
    await put(store, "Observation", "a", [TokenRow("code", None, "x"), TokenRow("code", None, "y")])
    await put(store, "Observation", "b", [TokenRow("code", None, "x")])
    either = Clause(CODE, (TokenMatch(code="x"), TokenMatch(code="y")))
    assert await ids(store, q("Observation", either)) == ["a", "b"]
    x, y = Clause(CODE, (TokenMatch(code="x"),)), Clause(CODE, (TokenMatch(code="y"),))
    assert await ids(store, q("Observation", x, y)) == ["a"]


async def test_not_includes_resources_without_a_value(store):
    await put(store, "Observation", "a", [TokenRow("code", None, "x")])
    await put(store, "Observation", "b", [TokenRow("code", None, "y")])
    await put(store, "Observation", "c")
    negated = Clause(CODE, (TokenMatch(code="x"),), negate=True)
    assert await ids(store, q("Observation", negated)) == ["b", "c"]


async def test_missing(store):
    await put(store, "Observation", "a", [TokenRow("code", None, "x")])
    await put(store, "Observation", "b")
    missing = Clause(CODE, (MissingMatch(True),))
    present = Clause(CODE, (MissingMatch(False),))
    assert await ids(store, q("Observation", missing)) == ["b"]
    assert await ids(store, q("Observation", present)) == ["a"]


async def test_string_prefix_contains_exact(store):
    await put(store, "Patient", "a", [StringRow("name", "eve", "Eve")])
    await put(store, "Patient", "b", [StringRow("name", "evelyn", "Evelyn")])
    await put(store, "Patient", "c", [StringRow("name", "steve", "Steve")])
    prefix = Clause(NAME, (StringMatch("eve"),))
    assert await ids(store, q("Patient", prefix)) == ["a", "b"]
    contains = Clause(NAME, (StringMatch("eve", "contains"),))
    assert await ids(store, q("Patient", contains)) == ["a", "b", "c"]
    exact = Clause(NAME, (StringMatch("Eve", "exact"),))
    assert await ids(store, q("Patient", exact)) == ["a"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", ["day"]),
        ("ne", ["before", "after", "span"]),
        ("gt", ["after", "span"]),
        ("lt", ["before", "span"]),
        ("ge", ["day", "after", "span"]),
        ("le", ["before", "day", "span"]),
        ("sa", ["after"]),
        ("eb", ["before"]),
    ],
)
async def test_date_prefixes_compare_ranges(store, prefix, expected):
    day = ("2024-03-05T00:00:00.000Z", "2024-03-06T00:00:00.000Z")
    await put(
        store,
        "Observation",
        "before",
        [DateRow("date", "2024-03-01T00:00:00.000Z", "2024-03-02T00:00:00.000Z")],
    )
    await put(
        store,
        "Observation",
        "day",
        [DateRow("date", "2024-03-05T10:00:00.000Z", "2024-03-05T10:00:01.000Z")],
    )
    await put(
        store,
        "Observation",
        "after",
        [DateRow("date", "2024-03-09T00:00:00.000Z", "2024-03-10T00:00:00.000Z")],
    )
    await put(
        store,
        "Observation",
        "span",
        [DateRow("date", "2024-03-01T00:00:00.000Z", "2024-03-09T00:00:00.000Z")],
    )
    clause = Clause(DATE, (DateMatch(prefix, *day),))
    assert sorted(await ids(store, q("Observation", clause))) == sorted(expected)


async def test_number_precision_and_prefixes(store):
    for id_, value in (("a", 99.4), ("b", 99.5), ("c", 100.0), ("d", 100.49), ("e", 100.5)):
        await put(store, "Observation", id_, [NumberRow("value", value, value, value)])
    eq = Clause(VALUE, (NumberMatch("eq", 100.0, 99.5, 100.5),))
    assert await ids(store, q("Observation", eq)) == ["b", "c", "d"]
    gt = Clause(VALUE, (NumberMatch("gt", 100.0, 99.5, 100.5),))
    assert await ids(store, q("Observation", gt)) == ["d", "e"]
    le = Clause(VALUE, (NumberMatch("le", 100.0, 99.5, 100.5),))
    assert await ids(store, q("Observation", le)) == ["a", "b", "c"]


async def test_reference_and_chain(store):
    await put(store, "Organization", "o1", [StringRow("name", "acme", "Acme")])
    await put(store, "Patient", "p1", [ReferenceRow("organization", "Organization", "o1", None)])
    await put(store, "Patient", "p2")
    await put(store, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    await put(store, "Observation", "x2", [ReferenceRow("subject", "Patient", "p2", None)])
    direct = Clause(SUBJECT, (ReferenceMatch("Patient", "p2"),))
    assert await ids(store, q("Observation", direct)) == ["x2"]
    inner = ChainClause(ORG, ("Organization",), Clause(ORG_NAME, (StringMatch("acm"),)))
    chain = ChainClause(SUBJECT, ("Patient",), inner)
    assert await ids(store, q("Observation", chain)) == ["x1"]


async def test_has(store):
    await put(store, "Patient", "p1")
    await put(store, "Patient", "p2")
    await put(
        store,
        "Observation",
        "x1",
        [ReferenceRow("subject", "Patient", "p1", None), TokenRow("code", None, "bp")],
    )
    await put(
        store,
        "Observation",
        "x2",
        [ReferenceRow("subject", "Patient", "p2", None), TokenRow("code", None, "hr")],
    )
    has = HasClause("Observation", SUBJECT, Clause(CODE, (TokenMatch(code="bp"),)))
    assert await ids(store, q("Patient", has)) == ["p1"]


async def test_deleted_resources_are_not_found(store):
    await put(store, "Observation", "a", [TokenRow("code", None, "x")])
    await store.write(WriteRequest("Observation", "a", "delete"))
    assert await ids(store, q("Observation", Clause(CODE, (TokenMatch(code="x"),)))) == []


async def test_update_replaces_index_rows(store):
    await put(store, "Observation", "a", [TokenRow("code", None, "x")])
    await put(store, "Observation", "a", [TokenRow("code", None, "y")])
    assert await ids(store, q("Observation", Clause(CODE, (TokenMatch(code="x"),)))) == []
    assert await ids(store, q("Observation", Clause(CODE, (TokenMatch(code="y"),)))) == ["a"]


async def test_sort_on_repeating_values_uses_min_ascending_and_max_descending(store):
    await put(store, "Patient", "a", sort=[SortKey("name", "b", "y")])
    await put(store, "Patient", "b", sort=[SortKey("name", "c", "d")])
    await put(store, "Patient", "c", sort=[SortKey("name", "a", "z")])
    await put(store, "Patient", "none")
    ascending = q("Patient", sort=(Sort(NAME),))
    assert await ids(store, ascending) == ["c", "a", "b", "none"]
    descending = q("Patient", sort=(Sort(NAME, descending=True),))
    # highest values: c has "z", a has "y", b has "d"; no value sorts last both ways
    assert await ids(store, descending) == ["c", "a", "b", "none"]


async def test_keyset_paging_forward_and_back(store):
    for n in range(7):
        await put(store, "Patient", f"p{n}", sort=[SortKey("name", f"n{6 - n}", f"n{6 - n}")])
    query = q("Patient", sort=(Sort(NAME),))
    first = await store.search(query, None, 3, True)
    assert [e.id for e in first.entries] == ["p6", "p5", "p4"] and first.total == 7
    assert first.prev_cursor is None
    second = await store.search(query, first.next_cursor, 3, False)
    assert [e.id for e in second.entries] == ["p3", "p2", "p1"]
    third = await store.search(query, second.next_cursor, 3, False)
    assert [e.id for e in third.entries] == ["p0"] and third.next_cursor is None
    back = await store.search(query, third.prev_cursor, 3, False)
    assert [e.id for e in back.entries] == ["p3", "p2", "p1"]
    assert back.prev_cursor is not None and back.next_cursor is not None
    decoded = Cursor.decode(back.next_cursor.encode())
    assert decoded == back.next_cursor


async def test_include_and_revinclude_with_iterate(store):
    await put(store, "Organization", "o1")
    await put(store, "Patient", "p1", [ReferenceRow("organization", "Organization", "o1", None)])
    await put(store, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    include = Include("Observation", SUBJECT)
    iterate = Include("Patient", ORG, iterate=True)
    page = await store.search(q("Observation", includes=(include, iterate)), None, 10, False)
    assert [e.id for e in page.included] == ["p1", "o1"]
    rev = Include("Observation", SUBJECT, reverse=True)
    page = await store.search(q("Patient", includes=(rev,)), None, 10, False)
    assert [e.id for e in page.entries] == ["p1"]
    assert [e.id for e in page.included] == ["x1"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", ["b"]),
        ("ne", ["a", "c"]),
        ("gt", ["c"]),
        ("lt", ["a"]),
        ("ge", ["b", "c"]),
        ("le", ["a", "b"]),
    ],
)
async def test_last_updated_is_a_point_in_time(store, prefix, expected):
    import asyncio

    from resources.search.query import LastUpdatedClause

    stamps = {}
    for id_ in ("a", "b", "c"):
        await put(store, "Patient", id_)
        stamps[id_] = (await store.read("Patient", id_)).last_updated
        await asyncio.sleep(0.005)
    b = stamps["b"]
    # the millisecond of b's lastUpdated as the search range
    from datetime import datetime, timedelta

    from resources.fhir_datetime import format_instant

    end = format_instant(
        datetime.fromisoformat(b.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    )
    clause = LastUpdatedClause((DateMatch(prefix, b, end),))
    assert await ids(store, q("Patient", clause)) == expected


async def test_selective_search_plan_does_not_scan_the_resource_table(tmp_path):
    import sqlite3

    from fhir_server.storage.sqlite_index import ParamIds
    from fhir_server.storage.sqlite_page import build_select
    from fhir_server.storage.sqlite_search import Compiler

    store = open_store(f"sqlite:///{tmp_path}/plan.sqlite3")
    await store.open()
    for n in range(50):
        rows = [
            ReferenceRow("subject", "Patient", f"p{n % 5}", None),
            TokenRow("code", "s", f"c{n % 3}"),
        ]
        await put(
            store, "Observation", f"o{n}", rows, [SortKey("date", f"2024-{n:02d}", f"2024-{n:02d}")]
        )
    await store.close()
    query = q(
        "Observation",
        Clause(SUBJECT, (ReferenceMatch("Patient", "p1"),)),
        Clause(CODE, (TokenMatch(system="s", code="c1"),)),
        sort=(Sort(DATE, descending=True),),
    )
    conn = sqlite3.connect(tmp_path / "plan.sqlite3")
    sql, params, _ = build_select(Compiler(conn, ParamIds()), query, None, 51)
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    conn.close()
    # scans of the ranked matches (t, top) only: no table or index is scanned
    assert not any(
        step.startswith("SCAN") and step.split()[1] not in ("t", "top") for step in plan
    ), plan
    assert any("idx_reference_match" in step for step in plan), plan


async def test_hostile_search_values_are_only_data(client):
    hostile = ["'; DROP TABLE resource; --", "x' OR '1'='1", "\\", "%", "_", "\x00"]
    for value in hostile:
        for param in ("name", "identifier", "_id", "organization", "birthdate"):
            response = await client.get("Patient", params={param: value})
            assert response.status_code in (200, 400), (param, value, response.text)
    assert (await client.get("metadata")).status_code == 200
    assert (await client.get("Patient/_history")).status_code == 200


async def _all_pages(store: Store, query: SearchQuery, count: int) -> tuple[list[str], list[str]]:
    """Every page forward, then every page back from the last one: the ids in order."""
    forward: list[str] = []
    pages = [await store.search(query, None, count, False)]
    while True:
        forward += [e.id for e in pages[-1].entries]
        if pages[-1].next_cursor is None:
            break
        pages.append(await store.search(query, pages[-1].next_cursor, count, False))
    backward: list[str] = [e.id for e in pages[-1].entries]
    cursor = pages[-1].prev_cursor
    while cursor is not None:
        page = await store.search(query, cursor, count, False)
        backward = [e.id for e in page.entries] + backward
        cursor = page.prev_cursor
    return forward, backward


async def test_broad_sorted_pages_from_index_rows_agree_with_the_resource_rows(store):
    """A sorted search whose matches the index rows decide (SQLite ranks them from the
    index rows and reads the page's resources only) pages exactly as the same search
    that needs the resource rows (an ``_id:not`` condition): each match once although
    its index rows repeat, missing sort values last, deleted and replaced versions out."""
    expected_dated = []
    for n in range(24):
        id_ = f"o{n:02d}"
        rows: list[IndexRow] = [TokenRow("code", "s", "c1")]
        if n % 3 == 0:
            rows.append(TokenRow("code", "s", "c1"))  # the same value twice
        if n % 4 == 0:
            rows.append(TokenRow("code", "s", "c2"))  # both values of the OR
        day = f"2024-01-{(n * 7) % 24 + 1:02d}"  # distinct days, not in id order
        sort = [SortKey("date", day, day)] if n % 5 else []
        await put(store, "Observation", id_, rows, sort)
        if n % 5:
            expected_dated.append((day, id_))
    await put(store, "Observation", "o01", [TokenRow("code", "s", "c2")], [])  # replaced
    expected_dated = [(d, i) for d, i in expected_dated if i != "o01"]
    await store.write(WriteRequest("Observation", "o02", "delete"))
    expected_dated = [(d, i) for d, i in expected_dated if i != "o02"]
    await put(store, "Observation", "other", [TokenRow("code", "s", "c3")], [])

    codes = Clause(CODE, (TokenMatch(system="s", code="c1"), TokenMatch(system="s", code="c2")))
    not_x = IdClause(("no-such-id",), negate=True)
    for descending in (True, False):
        sort = (Sort(DATE, descending=descending),)
        from_index = q("Observation", codes, sort=sort)
        from_rows = q("Observation", codes, not_x, sort=sort)
        for count in (1, 4, 7, 50):
            forward, backward = await _all_pages(store, from_index, count)
            assert forward == backward
            assert (forward, backward) == await _all_pages(store, from_rows, count)
            dated = [i for _, i in sorted(expected_dated, reverse=descending)]
            assert forward[: len(dated)] == dated
            undated = {f"o{n:02d}" for n in range(0, 24, 5)} | {"o01"}
            assert set(forward[len(dated) :]) == undated
            assert len(forward) == len(set(forward)) == len(dated) + len(undated)
        page = await store.search(from_index, None, 5, True)
        assert page.total == len(dated) + len(undated)


async def test_a_cursor_of_another_search_is_refused(store):
    """A cursor carries the sort key of its search: given to a search sorted otherwise it
    is a 400, whether the page comes from the index rows or the resource rows."""
    await put(store, "Observation", "a", [TokenRow("code", "s", "c1")])
    codes = Clause(CODE, (TokenMatch(system="s", code="c1"),))
    unsorted = q("Observation", codes)
    foreign = Cursor(("2024-01-01", "2024-01-02", 1), "next")
    for query in (
        q("Observation", codes, sort=(Sort(DATE, descending=True),)),
        q("Observation", codes, IdClause(("x",), negate=True), sort=(Sort(DATE),)),
        unsorted,
    ):
        with pytest.raises(FhirError) as info:
            await store.search(query, foreign, 5, False)
        assert info.value.status == 400
