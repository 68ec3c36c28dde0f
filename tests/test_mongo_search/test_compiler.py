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

import math
from datetime import datetime, timedelta

import pytest

from fhir_server.storage import mongo_search
from fhir_server.storage.base import IndexEntries
from fhir_server.storage.mongo_index import INDEXES, NO_VALUE_LAST, encode, sort_field
from fhir_server.storage.mongo_search import (
    run_search,
)
from resources.errors import FhirError
from resources.fhir_datetime import format_instant
from resources.search.model import (
    CompositeRow,
    DateRow,
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
    LastUpdatedClause,
    MissingMatch,
    NumberMatch,
    QuantityMatch,
    ReferenceMatch,
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
    ORG_NAME,
    QUANTITY,
    SUBJECT,
    TEXT,
    URL,
    VALUE,
    found,
    ids,
    put,
    q,
)

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
