"""The MongoDB search compiler (``mongo_index``, ``mongo_match``, ``mongo_search``) on the
in-process stand-in (mongomock 4.3 behind ``mongomock_async``): the scenarios of
``test_store_search`` plus every match type and prefix
(https://hl7.org/fhir/R4/search.html#prefix), ``:missing``, ``:not``, chains, ``_has``,
sorting by the spec's min/max rule with missing values last, keyset paging both ways,
includes with ``:iterate``, totals, and hostile values that must stay data. A grid of
matches is also checked against the SQLite store, the reference implementation.

Documents are written the way the MongoDB store writes them: the version fields plus
``mongo_index.encode`` of the index entries (none on a tombstone).
"""

from __future__ import annotations

import itertools
import math
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson.binary import Binary

from fhir_server.storage import mongo_search
from fhir_server.storage.base import IndexEntries, WriteRequest
from fhir_server.storage.mongo_index import INDEXES, NO_VALUE_LAST, encode, sort_field
from fhir_server.storage.mongo_search import (
    RESOURCES,
    compile_filter,
    page_pipeline,
    run_search,
    sort_plan,
)
from fhir_server.storage.mongomock_async import AsyncMockClient
from fhir_server.storage.open import open_store
from fhir_server.storage.search_page import Cursor
from resources import fhir_json
from resources.errors import FhirError
from resources.fhir_datetime import format_instant
from resources.search.model import (
    CompositeRow,
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    SearchParam,
    SortKey,
    StringRow,
    TokenRow,
    UriRow,
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
    SearchQuery,
    Sort,
    StringMatch,
    TokenMatch,
    UriMatch,
)

CODE = SearchParam("Observation", "code", "token", "Observation.code")
SUBJECT = SearchParam(
    "Observation", "subject", "reference", "Observation.subject", targets=("Patient",)
)
DATE = SearchParam("Observation", "date", "date", "Observation.effective")
VALUE = SearchParam("Observation", "value", "number", "Observation.value")
QUANTITY = SearchParam("Observation", "value-quantity", "quantity", "Observation.value")
COMBO = SearchParam("Observation", "code-value-quantity", "composite", "Observation")
NAME = SearchParam("Patient", "name", "string", "Patient.name")
IDENTIFIER = SearchParam("Patient", "identifier", "token", "Patient.identifier")
ORG = SearchParam("Patient", "organization", "reference", "Patient.managingOrganization")
ORG_NAME = SearchParam("Organization", "name", "string", "Organization.name")
URL = SearchParam("ValueSet", "url", "uri", "ValueSet.url")
TEXT = SearchParam("Patient", "_text", "special", None)

_seq = itertools.count(1)
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


MONGODB_URI = os.environ.get("MONGODB_URI")


@pytest.fixture(params=["mongomock", "mongodb"])
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A database of its own: on the stand-in, or on ``MONGODB_URI`` when it is set."""
    name = f"fhir_test_search_{uuid.uuid4().hex}"
    if request.param == "mongodb":
        if not MONGODB_URI:
            pytest.skip("set MONGODB_URI to run against a real MongoDB")
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(MONGODB_URI)
    else:
        client = AsyncMockClient(name)
    database = client[name]
    await database[RESOURCES].create_indexes(INDEXES)
    yield database
    await client.drop_database(name)
    await client.close()


async def put(
    db: Any,
    type_: str,
    id_: str,
    rows: Sequence[IndexRow] = (),
    sort: Sequence[SortKey] = (),
    method: str = "update",
) -> None:
    """Write the current version of a resource as the MongoDB store does."""
    seq = next(_seq)
    doc: dict[str, Any] = {
        "_id": f"{type_}/{id_}",
        "type": type_,
        "id": id_,
        "version": 1,
        "last_updated": format_instant(_EPOCH + timedelta(milliseconds=seq)),
        "method": method,
        "content": None
        if method == "delete"
        else Binary(fhir_json.dumps({"resourceType": type_, "id": id_})),
        "seq": seq,
    }
    if method != "delete":
        doc |= encode(IndexEntries(rows, sort))
    await db[RESOURCES].replace_one({"_id": doc["_id"]}, doc, upsert=True)


def q(types: str, *conditions: Any, **kwargs: Any) -> SearchQuery:
    return SearchQuery(types=tuple(types.split(",")), conditions=list(conditions), **kwargs)


async def ids(db: Any, query: SearchQuery, count: int = 100) -> list[str]:
    page = await run_search(db, query, None, count, False)
    return [e.id for e in page.entries]


async def found(db: Any, param: SearchParam, *values: Match, negate: bool = False) -> list[str]:
    return await ids(db, q(param.resource_type, Clause(param, values, negate)))


# -- the document layout ----------------------------------------------------------------


def test_encode_is_compact_and_codes_are_values():
    fields = encode(
        IndexEntries(
            [
                TokenRow("code", None, "x"),
                StringRow("name", "eve", "Eve"),
                ReferenceRow("subject", "Patient", "p1", None, identifier_system="urn:s"),
                NumberRow("value", 1, 0.5, 1.5),
                CompositeRow("combo", (TokenRow("code", "s", "c"), DateRow("date", "a", "b"))),
            ],
            [SortKey("name", "eve", "eve"), SortKey("a.b$c", 1, 2)],
        )
    )
    assert fields["i"]["tok"] == [{"p": "code", "v": "x"}]
    assert fields["i"]["str"] == [{"p": "name", "n": "eve", "e": "Eve"}]
    assert fields["i"]["ref"] == [{"p": "subject", "t": "Patient", "id": "p1", "is": "urn:s"}]
    assert fields["i"]["num"] == [{"p": "value", "lo": 0.5, "hi": 1.5}]
    assert fields["i"]["cmp"] == [{"p": "combo", "s1": "s", "v1": "c", "l2": "a", "h2": "b"}]
    assert fields["s"]["name"] == {"lo": "eve", "hi": "eve"}
    assert fields["s"][sort_field("a.b$c")] == {"lo": 1.0, "hi": 2.0}
    assert fields["s"]["date"] == {"lo": NO_VALUE_LAST, "hi": ""}  # stored sort: no value
    assert encode(IndexEntries()) == {"i": {}, "s": {"date": {"lo": NO_VALUE_LAST, "hi": ""}}}


@pytest.mark.parametrize("code", ["a.b", "$where", "x~y", "~", "", "ä", "a\x00b", "0"])
def test_sort_field_names_are_safe_and_distinct(code):
    name = sort_field(code)
    assert name and "." not in name and not name.startswith("$") and "\x00" not in name
    assert sort_field(code + "x") != name


def test_indexes_have_distinct_names():
    names = [model.document["name"] for model in INDEXES]
    assert len(names) == len(set(names))


# -- the scenarios of test_store_search ---------------------------------------------------


async def test_token_system_and_code(db):
    await put(db, "Observation", "a", [TokenRow("code", "http://loinc.org", "1234-5")])
    await put(db, "Observation", "b", [TokenRow("code", "http://other", "1234-5")])
    await put(db, "Observation", "c", [TokenRow("code", None, "1234-5")])
    assert await found(db, CODE, TokenMatch(system="http://loinc.org", code="1234-5")) == ["a"]
    assert await found(db, CODE, TokenMatch(code="1234-5")) == ["a", "b", "c"]
    assert await found(db, CODE, TokenMatch(system="", code="1234-5")) == ["c"]
    assert await found(db, CODE, TokenMatch(system="http://other")) == ["b"]


async def test_comma_is_or_and_repeat_is_and(db):
    await put(db, "Observation", "a", [TokenRow("code", None, "x"), TokenRow("code", None, "y")])
    await put(db, "Observation", "b", [TokenRow("code", None, "x")])
    assert await found(db, CODE, TokenMatch(code="x"), TokenMatch(code="y")) == ["a", "b"]
    x, y = Clause(CODE, (TokenMatch(code="x"),)), Clause(CODE, (TokenMatch(code="y"),))
    assert await ids(db, q("Observation", x, y)) == ["a"]


async def test_values_of_one_element_must_match_together(db):
    await put(db, "Observation", "a", [TokenRow("code", "s1", "x"), TokenRow("code", "s2", "y")])
    assert await found(db, CODE, TokenMatch(system="s1", code="y")) == []
    other = SearchParam("Observation", "category", "token", "Observation.category")
    assert await found(db, other, TokenMatch(code="x")) == []


async def test_not_includes_resources_without_a_value(db):
    await put(db, "Observation", "a", [TokenRow("code", None, "x")])
    await put(db, "Observation", "b", [TokenRow("code", None, "y")])
    await put(db, "Observation", "c")
    assert await found(db, CODE, TokenMatch(code="x"), negate=True) == ["b", "c"]
    assert await found(db, CODE, TokenMatch(code="x"), TokenMatch(code="y"), negate=True) == ["c"]


async def test_missing(db):
    await put(db, "Observation", "a", [TokenRow("code", None, "x")])
    await put(db, "Observation", "b", [TokenRow("category", None, "x")])
    assert await found(db, CODE, MissingMatch(True)) == ["b"]
    assert await found(db, CODE, MissingMatch(False)) == ["a"]


@pytest.mark.parametrize(
    ("param", "row"),
    [
        (NAME, StringRow("name", "eve", "Eve")),
        (DATE, DateRow("date", "2024", "2025")),
        (VALUE, NumberRow("value", 1.0, 1.0, 1.0)),
        (QUANTITY, QuantityRow("value-quantity", 1.0, 1.0, 1.0, None, None, None)),
        (SUBJECT, ReferenceRow("subject", "Patient", "p", None)),
        (URL, UriRow("url", "http://x")),
        (COMBO, CompositeRow("code-value-quantity", (TokenRow("code", None, "c"),))),
    ],
)
async def test_missing_on_every_type(db, param, row):
    await put(db, param.resource_type, "with", [row])
    await put(db, param.resource_type, "without")
    assert await found(db, param, MissingMatch(True)) == ["without"]
    assert await found(db, param, MissingMatch(False)) == ["with"]


async def test_string_prefix_contains_exact(db):
    await put(db, "Patient", "a", [StringRow("name", "eve", "Eve")])
    await put(db, "Patient", "b", [StringRow("name", "evelyn", "Evelyn")])
    await put(db, "Patient", "c", [StringRow("name", "steve", "Steve")])
    assert await found(db, NAME, StringMatch("eve")) == ["a", "b"]
    assert await found(db, NAME, StringMatch("eve", "contains")) == ["a", "b", "c"]
    assert await found(db, NAME, StringMatch("Eve", "exact")) == ["a"]
    assert await found(db, NAME, StringMatch("eve", "exact")) == []


DAY = ("2024-03-05T00:00:00.000Z", "2024-03-06T00:00:00.000Z")


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
        ("ap", ["day", "span"]),
    ],
)
async def test_date_prefixes_compare_ranges(db, prefix, expected):
    await put(db, "Observation", "before", [DateRow("date", "2024-03-01", "2024-03-02")])
    await put(
        db,
        "Observation",
        "day",
        [DateRow("date", "2024-03-05T10:00:00.000Z", "2024-03-05T10:00:01.000Z")],
    )
    await put(db, "Observation", "after", [DateRow("date", "2024-03-09", "2024-03-10")])
    await put(db, "Observation", "span", [DateRow("date", "2024-03-01", "2024-03-09")])
    result = await found(db, DATE, DateMatch(prefix, *DAY))
    assert sorted(result) == sorted(expected)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", ["b", "c", "d"]),
        ("ne", ["a", "e"]),
        ("gt", ["d", "e"]),
        ("lt", ["a", "b"]),
        ("ge", ["c", "d", "e"]),
        ("le", ["a", "b", "c"]),
        ("sa", ["d", "e"]),
        ("eb", ["a", "b"]),
        ("ap", ["a", "b", "c", "d", "e"]),
    ],
)
async def test_number_precision_and_prefixes(db, prefix, expected):
    for id_, value in (("a", 99.4), ("b", 99.5), ("c", 100.0), ("d", 100.49), ("e", 100.5)):
        await put(db, "Observation", id_, [NumberRow("value", value, value, value)])
    low, high = (90.0, 110.0) if prefix == "ap" else (99.5, 100.5)
    assert await found(db, VALUE, NumberMatch(prefix, 100.0, low, high)) == expected


async def test_number_ranges_with_open_ends_use_infinity(db):
    await put(db, "Observation", "from2", [NumberRow("value", 2.0, 2.0, math.inf)])
    await put(db, "Observation", "upto3", [NumberRow("value", 3.0, -math.inf, 3.0)])
    await put(db, "Observation", "range", [NumberRow("value", 0.1, 0.1, 0.3)])
    await put(db, "Observation", "big", [NumberRow("value", 1e300, 1e300, 1e300)])

    async def search(prefix: str, value: float, low: float, high: float) -> list[str]:
        return await found(db, VALUE, NumberMatch(prefix, value, low, high))

    assert await search("gt", 100.0, 99.5, 100.5) == ["big", "from2"]
    assert await search("lt", 0.0, -0.5, 0.5) == ["upto3"]
    assert await search("eq", 0.2, 0.15, 0.25) == []
    assert await search("ap", 0.2, 0.15, 0.25) == ["range", "upto3"]
    assert await search("sa", 1.0, 0.5, 1.5) == ["big", "from2"]
    assert await search("eb", 1.0, 0.5, 1.5) == ["range"]
    assert await search("ap", 0.0, -math.inf, math.inf) == ["big", "from2", "range", "upto3"]


async def test_quantity_units(db):
    mg = QuantityRow("value-quantity", 5.0, 5.0, 5.0, "http://unitsofmeasure.org", "mg", "mg")
    await put(db, "Observation", "ucum", [mg])
    text = QuantityRow("value-quantity", 5.0, 5.0, 5.0, None, None, "milligram")
    await put(db, "Observation", "text", [text])
    other = QuantityRow("value-quantity", 5.0, 5.0, 5.0, "http://other", "mg", None)
    await put(db, "Observation", "other", [other])
    await put(
        db, "Observation", "ten", [QuantityRow("value-quantity", 10.0, 10, 10, None, "mg", None)]
    )

    def match(prefix: str = "eq", system: str | None = None, code: str | None = None):
        return QuantityMatch(prefix, 5.0, 4.5, 5.5, system, code)

    assert await found(db, QUANTITY, match(system="http://unitsofmeasure.org", code="mg")) == [
        "ucum"
    ]
    assert await found(db, QUANTITY, match(code="mg")) == ["other", "ucum"]
    assert await found(db, QUANTITY, match(code="milligram")) == ["text"]
    assert await found(db, QUANTITY, match(system="http://other")) == ["other"]
    assert await found(db, QUANTITY, match()) == ["other", "text", "ucum"]
    assert await found(db, QUANTITY, match("gt", code="mg")) == ["ten"]


async def test_token_text_of_type_and_in(db):
    rows = [TokenRow("identifier", "urn:mrn", "123", "medical record", "http://v2", "MR")]
    await put(db, "Patient", "a", rows)
    await put(db, "Patient", "b", [TokenRow("identifier", "urn:ssn", "9", "social security")])
    await put(db, "Patient", "c", [TokenRow("identifier", None, "7", "record keeper")])
    # :text is a string search on the text: equal or starts with (not any word)
    text = TokenMatch(mode="text", text="rec")
    assert await found(db, IDENTIFIER, text) == ["c"]
    assert await found(db, IDENTIFIER, TokenMatch(mode="text", text="medical r")) == ["a"]
    assert await found(db, IDENTIFIER, TokenMatch(mode="text", text="soc")) == ["b"]
    assert await found(db, IDENTIFIER, TokenMatch(mode="text", text="ecord")) == []
    of_type = TokenMatch(system="http://v2", code="MR", mode="of-type", text="123")
    assert await found(db, IDENTIFIER, of_type) == ["a"]
    wrong = TokenMatch(system="http://v2", code="MR", mode="of-type", text="9")
    assert await found(db, IDENTIFIER, wrong) == []
    value_set = TokenMatch(mode="in", codes=frozenset({("urn:ssn", "9"), (None, "7")}))
    assert await found(db, IDENTIFIER, value_set) == ["b", "c"]
    assert await found(db, IDENTIFIER, value_set, negate=True) == ["a"]
    assert await found(db, IDENTIFIER, TokenMatch(mode="in")) == []


async def test_reference_forms(db):
    await put(db, "Observation", "rel", [ReferenceRow("subject", "Patient", "p1", None)])
    await put(
        db,
        "Observation",
        "ver",
        [ReferenceRow("subject", "Patient", "p1", None, version="2")],
    )
    canonical = ReferenceRow("subject", None, None, "http://x/Q", version="1.0")
    await put(db, "Observation", "url", [canonical])
    ident = ReferenceRow("subject", None, None, None, None, "urn:ids", "42")
    await put(db, "Observation", "ident", [ident])
    await put(db, "Observation", "group", [ReferenceRow("subject", "Group", "p1", None)])
    assert await found(db, SUBJECT, ReferenceMatch(target_id="p1")) == ["group", "rel", "ver"]
    assert await found(db, SUBJECT, ReferenceMatch("Patient", "p1")) == ["rel", "ver"]
    assert await found(db, SUBJECT, ReferenceMatch("Patient", "p1", version="2")) == ["ver"]
    assert await found(db, SUBJECT, ReferenceMatch(url="http://x/Q")) == ["url"]
    assert await found(db, SUBJECT, ReferenceMatch(url="http://x/Q", version="1.0")) == ["url"]
    assert await found(db, SUBJECT, ReferenceMatch(url="http://x/Q", version="2")) == []
    by_identifier = ReferenceMatch(identifier_system="urn:ids", identifier_value="42")
    assert await found(db, SUBJECT, by_identifier) == ["ident"]
    no_system = ReferenceMatch(identifier_system="", identifier_value="42")
    assert await found(db, SUBJECT, no_system) == []


async def test_uri_above_below(db):
    for id_, value in (("root", "http://a.org"), ("vs", "http://a.org/vs"), ("b", "http://b")):
        await put(db, "ValueSet", id_, [UriRow("url", value)])
    assert await found(db, URL, UriMatch("http://a.org/vs")) == ["vs"]
    assert await found(db, URL, UriMatch("http://a.org", "below")) == ["root", "vs"]
    assert await found(db, URL, UriMatch("http://a.org/vs/1", "above")) == ["root", "vs"]


async def test_composite_components_match_the_same_element(db):
    def combo(code: str, value: float) -> CompositeRow:
        quantity = QuantityRow("value-quantity", value, value, value, "u", "mmHg", None)
        return CompositeRow("code-value-quantity", (TokenRow("code", "l", code), quantity))

    await put(db, "Observation", "a", [combo("sys", 150.0), combo("dia", 80.0)])
    await put(db, "Observation", "b", [combo("sys", 90.0), combo("dia", 150.0)])

    def match(code: str, prefix: str, value: float) -> CompositeMatch:
        quantity = QuantityMatch(prefix, value, value - 0.5, value + 0.5, None, "mmHg")
        return CompositeMatch((TokenMatch(system="l", code=code), quantity))

    assert await found(db, COMBO, match("sys", "gt", 140.0)) == ["a"]
    assert await found(db, COMBO, match("dia", "gt", 140.0)) == ["b"]
    assert await found(db, COMBO, match("sys", "gt", 140), match("dia", "gt", 140)) == ["a", "b"]
    assert await found(db, COMBO, match("sys", "ne", 150.0)) == ["b"]


async def test_parameters_without_an_index_match_nothing(db):
    await put(db, "Patient", "a")
    assert await found(db, TEXT, StringMatch("x")) == []
    assert await found(db, TEXT, StringMatch("x"), negate=True) == []


async def test_reference_and_chain(db):
    await put(db, "Organization", "o1", [StringRow("name", "acme", "Acme")])
    await put(db, "Organization", "o2", [StringRow("name", "other", "Other")])
    await put(db, "Patient", "p1", [ReferenceRow("organization", "Organization", "o1", None)])
    await put(db, "Patient", "p2")
    await put(db, "Patient", "p3", [ReferenceRow("organization", "Organization", "o2", None)])
    await put(db, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    await put(db, "Observation", "x2", [ReferenceRow("subject", "Patient", "p2", None)])
    await put(db, "Observation", "x3", [ReferenceRow("subject", "Patient", "p3", None)])
    assert await found(db, SUBJECT, ReferenceMatch("Patient", "p2")) == ["x2"]
    inner = ChainClause(ORG, ("Organization",), Clause(ORG_NAME, (StringMatch("acm"),)))
    chain = ChainClause(SUBJECT, ("Patient",), inner)
    assert await ids(db, q("Observation", chain)) == ["x1"]
    nowhere = ChainClause(ORG, ("Organization",), Clause(ORG_NAME, (StringMatch("zz"),)))
    assert await ids(db, q("Observation", ChainClause(SUBJECT, ("Patient",), nowhere))) == []


async def test_chain_ignores_deleted_targets(db):
    await put(db, "Patient", "p1", [StringRow("name", "eve", "Eve")])
    await put(db, "Observation", "x1", [ReferenceRow("subject", "Patient", "p1", None)])
    chain = ChainClause(SUBJECT, ("Patient",), Clause(NAME, (StringMatch("eve"),)))
    assert await ids(db, q("Observation", chain)) == ["x1"]
    await put(db, "Patient", "p1", method="delete")
    assert await ids(db, q("Observation", chain)) == []


async def test_has(db):
    await put(db, "Patient", "p1")
    await put(db, "Patient", "p2")
    await put(db, "Patient", "p3")
    rows1 = [ReferenceRow("subject", "Patient", "p1", None), TokenRow("code", None, "bp")]
    await put(db, "Observation", "x1", rows1)
    rows2 = [ReferenceRow("subject", "Patient", "p2", None), TokenRow("code", None, "hr")]
    await put(db, "Observation", "x2", rows2)
    has = HasClause("Observation", SUBJECT, Clause(CODE, (TokenMatch(code="bp"),)))
    assert await ids(db, q("Patient", has)) == ["p1"]
    await put(db, "Observation", "x1", method="delete")
    assert await ids(db, q("Patient", has)) == []


async def test_nested_has(db):
    await put(db, "Organization", "o1")
    await put(db, "Organization", "o2")
    await put(db, "Patient", "p1", [ReferenceRow("organization", "Organization", "o1", None)])
    await put(db, "Patient", "p2", [ReferenceRow("organization", "Organization", "o2", None)])
    rows = [ReferenceRow("subject", "Patient", "p2", None), TokenRow("code", None, "bp")]
    await put(db, "Observation", "x1", rows)
    observed = HasClause("Observation", SUBJECT, Clause(CODE, (TokenMatch(code="bp"),)))
    assert await ids(db, q("Organization", HasClause("Patient", ORG, observed))) == ["o2"]


async def test_chains_that_match_too_much_are_refused(db, monkeypatch):
    monkeypatch.setattr(mongo_search, "MAX_JOIN_KEYS", 2)
    for n in range(3):
        await put(db, "Patient", f"p{n}", [StringRow("name", "eve", "Eve")])
    chain = ChainClause(SUBJECT, ("Patient",), Clause(NAME, (StringMatch("eve"),)))
    with pytest.raises(FhirError) as error:
        await ids(db, q("Observation", chain))
    assert error.value.code == "too-costly"


async def test_any_of_id_and_last_updated(db):
    await put(db, "Patient", "a", [StringRow("name", "eve", "Eve")])
    await put(db, "Patient", "b", [StringRow("name", "bob", "Bob")])
    await put(db, "Patient", "c")
    either = AnyOf((Clause(NAME, (StringMatch("bo"),)), IdClause(("c",))))
    assert await ids(db, q("Patient", either)) == ["b", "c"]
    assert await ids(db, q("Patient", AnyOf(()))) == []
    assert await ids(db, q("Patient", IdClause(("a", "c"), negate=True))) == ["b"]
    stamp = (await run_search(db, q("Patient", IdClause(("b",))), None, 1, False)).entries[0]
    start = datetime.fromisoformat(stamp.last_updated.replace("Z", "+00:00"))
    end = format_instant(start + timedelta(milliseconds=1))
    for prefix, expected in (("eq", ["b"]), ("ne", ["a", "c"]), ("gt", ["c"]), ("le", ["a", "b"])):
        clause = LastUpdatedClause((DateMatch(prefix, stamp.last_updated, end),))
        assert await ids(db, q("Patient", clause)) == expected, prefix


async def test_deleted_resources_are_not_found(db):
    await put(db, "Observation", "a", [TokenRow("code", None, "x")])
    await put(db, "Observation", "a", method="delete")
    assert await found(db, CODE, TokenMatch(code="x")) == []
    assert await found(db, CODE, TokenMatch(code="x"), negate=True) == []
    assert await ids(db, q("Observation")) == []


async def test_update_replaces_index_rows(db):
    await put(db, "Observation", "a", [TokenRow("code", None, "x")])
    await put(db, "Observation", "a", [TokenRow("code", None, "y")])
    assert await found(db, CODE, TokenMatch(code="x")) == []
    assert await found(db, CODE, TokenMatch(code="y")) == ["a"]


async def test_system_search_over_several_types(db):
    await put(db, "Patient", "a", [TokenRow("_tag", None, "t")])
    await put(db, "Observation", "a", [TokenRow("_tag", None, "t")])
    await put(db, "Device", "a", [TokenRow("_tag", None, "t")])
    tag = SearchParam("Resource", "_tag", "token", "Resource.meta.tag")
    page = await run_search(
        db, q("Observation,Patient", Clause(tag, (TokenMatch(code="t"),))), None, 10, True
    )
    assert [(e.type, e.id) for e in page.entries] == [("Observation", "a"), ("Patient", "a")]
    assert page.total == 2


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
