"""The MongoDB search compiler on the stand-in, continued: sorting by the spec's min/max
rule with missing values last, keyset paging both ways, and includes with ``:iterate``
(https://hl7.org/fhir/R4/search.html#sort, #include).
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.storage.mongo_index import INDEXES
from fhir_server.storage.mongo_search import (
    page_pipeline,
    run_search,
    sort_plan,
)
from fhir_server.storage.search_page import Cursor
from resources.errors import FhirError
from resources.search.model import (
    ReferenceRow,
    SearchParam,
    SortKey,
    TokenRow,
)
from resources.search.query import (
    Clause,
    IdClause,
    Include,
    Sort,
    TokenMatch,
)
from tests.test_mongo_search.support import (
    CODE,
    DATE,
    NAME,
    ORG,
    SUBJECT,
    VALUE,
    ids,
    put,
    q,
)

# -- sorting and paging ---------------------------------------------------------------


async def test_sort_on_repeating_values_uses_min_ascending_and_max_descending(db):
    await put(db, "Patient", "a", sort=[SortKey("name", "b", "y")])
    await put(db, "Patient", "b", sort=[SortKey("name", "c", "d")])
    await put(db, "Patient", "c", sort=[SortKey("name", "a", "z")])
    await put(db, "Patient", "none")
    assert await ids(db, q("Patient", sort=(Sort(NAME),))) == ["c", "a", "b", "none"]
    descending = q("Patient", sort=(Sort(NAME, descending=True),))
    assert await ids(db, descending) == ["c", "a", "b", "none"]


async def test_numeric_sort_with_missing_values_last_both_ways(db):
    for id_, value in (("a", 2.0), ("b", -1.0), ("c", 10.0)):
        await put(db, "Observation", id_, sort=[SortKey("value", value, value)])
    await put(db, "Observation", "none")
    assert await ids(db, q("Observation", sort=(Sort(VALUE),))) == ["b", "a", "c", "none"]
    descending = q("Observation", sort=(Sort(VALUE, descending=True),))
    assert await ids(db, descending) == ["c", "a", "b", "none"]


async def test_sort_on_several_keys_and_specials(db):
    await put(db, "Observation", "a", sort=[SortKey("code", "x", "x"), SortKey("date", "1", "1")])
    await put(db, "Observation", "b", sort=[SortKey("code", "x", "x"), SortKey("date", "2", "2")])
    await put(db, "Observation", "c", sort=[SortKey("code", "w", "w")])
    await put(db, "Observation", "d", sort=[SortKey("code", "x", "x")])
    by_code_then_newest = (Sort(CODE), Sort(DATE, descending=True))
    assert await ids(db, q("Observation", sort=by_code_then_newest)) == ["c", "b", "a", "d"]
    by_id = (Sort(None, descending=True, special="_id"),)
    assert await ids(db, q("Observation", sort=by_id)) == ["d", "c", "b", "a"]
    by_updated = (Sort(None, special="_lastUpdated"), Sort(None, special="_lastUpdated"))
    assert await ids(db, q("Observation", sort=by_updated)) == ["a", "b", "c", "d"]


async def test_keyset_paging_forward_and_back(db):
    for n in range(7):
        await put(db, "Patient", f"p{n}", sort=[SortKey("name", f"n{6 - n}", f"n{6 - n}")])
    query = q("Patient", sort=(Sort(NAME),))
    first = await run_search(db, query, None, 3, True)
    assert [e.id for e in first.entries] == ["p6", "p5", "p4"] and first.total == 7
    assert first.prev_cursor is None
    second = await run_search(db, query, first.next_cursor, 3, False)
    assert [e.id for e in second.entries] == ["p3", "p2", "p1"]
    third = await run_search(db, query, second.next_cursor, 3, False)
    assert [e.id for e in third.entries] == ["p0"] and third.next_cursor is None
    back = await run_search(db, query, third.prev_cursor, 3, False)
    assert [e.id for e in back.entries] == ["p3", "p2", "p1"]
    assert back.prev_cursor is not None and back.next_cursor is not None
    assert Cursor.decode(back.next_cursor.encode()) == back.next_cursor
    start = await run_search(db, query, back.prev_cursor, 3, False)
    assert [e.id for e in start.entries] == ["p6", "p5", "p4"] and start.prev_cursor is None


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize(
    "param",
    [
        NAME,
        SearchParam("Patient", "n", "number", "Patient.n"),
        SearchParam("Patient", "date", "date", "Patient.date"),  # a stored sort key
    ],
)
async def test_paging_walks_repeats_and_missing_values_in_order(db, descending, param):
    values: list[Any] = ["b", "a", None, "b", None, "c", "a", "b"]
    for n, value in enumerate(values):
        if value is not None and param.type == "number":
            value = float(ord(value))
        elif value is not None and param.type == "date":
            value = f"2024-01-0{ord(value) - ord('a') + 1}"
        keys = [] if value is None else [SortKey(param.code, value, value)]
        await put(db, "Patient", f"r{n}", sort=keys)
    query = q("Patient", sort=(Sort(param, descending=descending),))
    everything = await ids(db, query)
    present = [f"r{n}" for n, v in enumerate(values) if v is not None]
    # ties by id, descending when the sort is (the whole order reversed, as an index walks)
    present.sort(key=lambda id_: (values[int(id_[1:])], id_), reverse=descending)
    missing = ["r4", "r2"] if descending else ["r2", "r4"]
    assert everything == [*present, *missing]
    walked: list[str] = []
    pages = []
    page = await run_search(db, query, None, 3, False)
    while True:
        pages.append(page)
        walked += [e.id for e in page.entries]
        if page.next_cursor is None:
            break
        page = await run_search(db, query, Cursor.decode(page.next_cursor.encode()), 3, False)
    assert walked == everything
    back: list[str] = []
    page = pages[-1]
    while page.prev_cursor is not None:
        page = await run_search(db, query, page.prev_cursor, 3, False)
        back = [e.id for e in page.entries] + back
    assert back + [e.id for e in pages[-1].entries] == everything


@pytest.mark.parametrize(
    "sort",
    [
        (Sort(DATE),),
        (Sort(DATE, descending=True),),
        (Sort(None, special="_lastUpdated"),),
        (Sort(None, descending=True, special="_lastUpdated"),),
    ],
)
def test_common_sorts_are_the_order_of_an_index(sort):
    """``_sort=date``, ``-date``, ``_lastUpdated`` and ``-_lastUpdated`` sort on stored
    fields, in the order of one of the indexes or its exact reverse (ties by ``_id`` in
    the same direction), and a next page starts with a bound on the first key: so MongoDB
    can walk the index from the cursor and stop after a page rather than sort every
    match. (The plan is checked here; that MongoDB's planner picks the index only with
    ``explain`` on a real server, e.g. ``bench/search_bench.py --storage mongodb://``.)"""
    plan = sort_plan(sort)
    assert not plan.computed
    spec = plan.spec()
    assert len(set(spec.values())) == 1
    order = (("type", 1), *((name, 1) for name in spec))
    assert order in {tuple(m.document["key"].items()) for m in INDEXES}
    cursor = Cursor(("2024-01-01", "Observation/a"), "next")
    pipeline = page_pipeline({"type": "Observation"}, plan, cursor, 10, {})
    assert [next(iter(stage)) for stage in pipeline] == ["$match", "$sort", "$limit", "$project"]
    first, after = pipeline[0]["$match"]["$and"]
    bound = after["$and"][0]
    assert bound == {plan.fields[0]: {"$lte" if sort[0].descending else "$gte": "2024-01-01"}}


async def test_a_date_sort_pages_resources_of_every_kind(db):
    """Sorting on the stored ``date`` key: values, missing values (the stored sentinel)
    and several types at once, forwards and back."""
    for n, when in enumerate(["2024-03-01", None, "2024-01-01", "2024-02-01", None]):
        keys = [] if when is None else [SortKey("date", when, when)]
        await put(db, "Observation" if n % 2 else "Encounter", f"r{n}", sort=keys)
    # ties by _id ("Encounter/r4" < "Observation/r1"), in the direction of the sort
    cases = {False: ["r2", "r3", "r0", "r4", "r1"], True: ["r0", "r3", "r2", "r1", "r4"]}
    for descending, expected in cases.items():
        query = q("Observation,Encounter", sort=(Sort(DATE, descending=descending),))
        pages = [await run_search(db, query, None, 2, False)]
        while pages[-1].next_cursor is not None:
            pages.append(await run_search(db, query, pages[-1].next_cursor, 2, False))
        assert [e.id for page in pages for e in page.entries] == expected
        back = pages[-1]
        walked_back = [e.id for e in back.entries]
        while back.prev_cursor is not None:
            back = await run_search(db, query, back.prev_cursor, 2, False)
            walked_back = [e.id for e in back.entries] + walked_back
        assert walked_back == expected


async def test_paging_without_sort_follows_resource_keys(db):
    for id_ in ("c", "a", "b", "d"):
        await put(db, "Patient", id_)
    first = await run_search(db, q("Patient"), None, 2, False)
    assert [e.id for e in first.entries] == ["a", "b"]
    second = await run_search(db, q("Patient"), first.next_cursor, 2, False)
    assert [e.id for e in second.entries] == ["c", "d"] and second.next_cursor is None


@pytest.mark.parametrize(
    "key",
    [("x",), ({"$gt": ""}, "Patient/a"), (None, "Patient/a"), (True, "Patient/a"), (b"x", "y")],
)
async def test_foreign_or_forged_cursors_are_rejected(db, key):
    await put(db, "Patient", "a", sort=[SortKey("name", "a", "a")])
    query = q("Patient", sort=(Sort(NAME),))
    with pytest.raises(FhirError) as error:
        await run_search(db, query, Cursor(key), 10, False)
    assert error.value.status == 400


async def test_count_zero_gives_only_the_total(db):
    await put(db, "Observation", "a", [TokenRow("code", None, "x")])
    await put(db, "Observation", "b")
    page = await run_search(db, q("Observation"), None, 0, True)
    assert page.entries == [] and page.total == 2
    negated = q("Observation", Clause(CODE, (TokenMatch(code="x"),), negate=True))
    assert (await run_search(db, negated, None, 10, True)).total == 1


# -- includes -------------------------------------------------------------------------


async def test_include_and_revinclude_with_iterate(db):
    await put(db, "Organization", "o1")
    await put(db, "Patient", "p1", [ReferenceRow("organization", "Organization", "o1", None)])
    await put(db, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    include = Include("Observation", SUBJECT)
    iterate = Include("Patient", ORG, iterate=True)
    page = await run_search(db, q("Observation", includes=(include, iterate)), None, 10, False)
    assert [e.id for e in page.included] == ["p1", "o1"]
    assert page.entries[0].content is not None
    rev = Include("Observation", SUBJECT, reverse=True)
    page = await run_search(db, q("Patient", includes=(rev,)), None, 10, False)
    assert [e.id for e in page.entries] == ["p1"]
    assert [e.id for e in page.included] == ["x1"]


async def test_include_without_iterate_stops_after_one_round(db):
    await put(db, "Organization", "o1")
    await put(db, "Patient", "p1", [ReferenceRow("organization", "Organization", "o1", None)])
    await put(db, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    query = q("Observation", includes=(Include("Observation", SUBJECT), Include("Patient", ORG)))
    assert [e.id for e in (await run_search(db, query, None, 10, False)).included] == ["p1"]


async def test_include_star_target_type_and_deleted_targets(db):
    await put(db, "Patient", "p1")
    await put(db, "Group", "g1")
    await put(db, "Patient", "gone", method="delete")
    rows = [
        ReferenceRow("subject", "Patient", "p1", None),
        ReferenceRow("performer", "Group", "g1", None),
        ReferenceRow("focus", "Patient", "gone", None),
        ReferenceRow("derived-from", None, None, "http://elsewhere/x"),
    ]
    await put(db, "Observation", "x1", rows)
    star = q("Observation", includes=(Include("Observation", None),))
    page = await run_search(db, star, None, 10, False)
    assert sorted(e.id for e in page.included) == ["g1", "p1"]
    typed = q("Observation", includes=(Include("Observation", None, target_type="Group"),))
    assert [e.id for e in (await run_search(db, typed, None, 10, False)).included] == ["g1"]


async def test_revinclude_iterate_and_matches_are_not_repeated(db):
    await put(db, "Patient", "p1")
    await put(db, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    await put(db, "Observation", "x2", [ReferenceRow("subject", "Patient", "p1", None)])
    derived = SearchParam("Observation", "derived-from", "reference", "Observation.derivedFrom")
    await put(db, "Observation", "x3", [ReferenceRow("derived-from", "Observation", "x1", None)])
    await put(
        db, "Observation", "x4", [ReferenceRow("subject", "Patient", "p1", None)], method="delete"
    )
    includes = (
        Include("Observation", SUBJECT, reverse=True),
        Include("Observation", derived, reverse=True, iterate=True),
    )
    page = await run_search(db, q("Patient", includes=includes), None, 10, False)
    assert [e.id for e in page.included] == ["x1", "x2", "x3"]
    page = await run_search(
        db, q("Observation", IdClause(("x1",)), includes=includes), None, 10, False
    )
    assert [e.id for e in page.included] == ["x3"]


async def test_revinclude_star_takes_referring_resources_of_any_type(db):
    await put(db, "Patient", "p1")
    await put(db, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    await put(db, "Encounter", "e1", [ReferenceRow("subject", "Patient", "p1", None)])
    await put(db, "Encounter", "e2", [ReferenceRow("subject", "Patient", "p2", None)])
    star = Include("*", None, reverse=True)
    page = await run_search(db, q("Patient", includes=(star,)), None, 10, False)
    assert [(e.type, e.id) for e in page.included] == [("Encounter", "e1"), ("Observation", "x1")]
