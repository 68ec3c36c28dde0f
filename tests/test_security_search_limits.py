"""Search limits (``resources.search.limits``): a search asking more than the stores can
compile and run is a 400 ``too-costly`` OperationOutcome naming the limit and the
parameter (https://hl7.org/fhir/R4/search.html#errors), never a 500; repeated
``_include`` / ``_revinclude`` values count once. Driven over HTTP (``GET`` and ``POST
_search``) on every store."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from resources.search.limits import (
    MAX_CHAIN_DEPTH,
    MAX_CODES,
    MAX_HAS,
    MAX_INCLUDES,
    MAX_PARAMETERS,
    MAX_SORT_KEYS,
    MAX_TERMS,
    MAX_VALUES,
)
from resources.search.parameters import search_params
from tests.conftest import JSON

FORM = {"content-type": "application/x-www-form-urlencoded"}
C80 = "http://hl7.org/fhir/ValueSet/c80-doc-typecodes"  # 6,401 codes


async def post_search(client: httpx.AsyncClient, type_: str, items: list[tuple[str, str]]) -> Any:
    return await client.post(f"{type_}/_search", content=urlencode(items), headers=FORM)


def values(prefix: str, count: int) -> str:
    return ",".join(f"{prefix}{n}" for n in range(count))


def assert_too_costly(response: httpx.Response, parameter: str, limit: int) -> None:
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == "too-costly"
    assert f"{limit}" in issue["diagnostics"], issue["diagnostics"]
    assert issue["expression"] == [parameter]


def assert_searchset(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["type"] == "searchset"
    return bundle


# -- what the security review sent (each was a 500 on SQLite) ---------------------------

ISSUE_CASES = {
    "1,000 ORed names": ("Patient", [("name", values("n", 1000))], "name", MAX_VALUES),
    "1,000 names ANDed": ("Patient", [("name", f"n{n}") for n in range(1000)], "name", 50),
    "10,000 codes": (
        "Observation",
        [("code", values("http://loinc.org|", 10_000))],
        "code",
        MAX_VALUES,
    ),
    "10,000 references": (
        "Observation",
        [("subject", values("Patient/p", 10_000))],
        "subject",
        MAX_VALUES,
    ),
    "2,000 _has": (
        "Patient",
        [("_has:Observation:patient:code", f"c{n}") for n in range(2000)],
        "_has:Observation:patient:code",
        MAX_HAS,
    ),
    "300 sort keys": (
        "Patient",
        [("_sort", ",".join(["name", "-birthdate", "gender"] * 100))],
        "_sort",
        MAX_SORT_KEYS,
    ),
}


@pytest.mark.parametrize("case", ISSUE_CASES)
async def test_the_reviewed_searches_are_refused_as_too_costly(
    client: httpx.AsyncClient, case: str
) -> None:
    type_, items, parameter, limit = ISSUE_CASES[case]
    assert_too_costly(await post_search(client, type_, items), parameter, limit)


# -- each limit, at and past it ------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_values_per_parameter(client: httpx.AsyncClient, method: str) -> None:
    async def search(count: int) -> httpx.Response:
        items = [("name", values("n", count))]
        if method == "GET":
            return await client.get("Patient", params=items)
        return await post_search(client, "Patient", items)

    assert_searchset(await search(MAX_VALUES))
    assert_too_costly(await search(MAX_VALUES + 1), "name", MAX_VALUES)


async def test_parameters_per_search(client: httpx.AsyncClient) -> None:
    items = [("name", f"n{n}") for n in range(MAX_PARAMETERS)]
    assert_searchset(await post_search(client, "Patient", items))
    over = [*items, ("gender", "male")]
    assert_too_costly(await post_search(client, "Patient", over), "gender", MAX_PARAMETERS)
    # unknown parameters count too (each costs a parse), whatever the handling
    unknown = [*items, ("no-such-parameter", "x")]
    response = await post_search(client, "Patient", unknown)
    assert_too_costly(response, "no-such-parameter", MAX_PARAMETERS)


async def test_has_per_search(client: httpx.AsyncClient) -> None:
    items = [("_has:Observation:patient:code", f"c{n}") for n in range(MAX_HAS)]
    assert_searchset(await post_search(client, "Patient", items))
    nested = ("_has:Observation:patient:_has:Provenance:target:agent", "Practitioner/1")
    response = await post_search(client, "Patient", [*items[:-1], nested])
    assert_too_costly(response, nested[0], MAX_HAS)


async def test_chain_depth(client: httpx.AsyncClient) -> None:
    deepest = ".".join(["partof"] * MAX_CHAIN_DEPTH) + ".name"
    assert_searchset(await client.get("Organization", params={deepest: "Acme"}))
    deeper = "partof." + deepest
    response = await client.get("Organization", params={deeper: "Acme"})
    assert_too_costly(response, deeper, MAX_CHAIN_DEPTH)
    has = "_has:Organization:partof:" * (MAX_CHAIN_DEPTH + 1) + "name"
    assert_too_costly(await client.get("Organization", params={has: "x"}), has, MAX_CHAIN_DEPTH)


async def test_a_deep_chain_through_any_type_is_parsed_once_per_link(
    client: httpx.AsyncClient,
) -> None:
    """``Basic.subject`` may refer to any type: each link is reached from ~40 types (this
    took seconds to parse at depth 5 when every path was parsed again)."""
    name = ".".join(["subject"] * MAX_CHAIN_DEPTH) + "._id"
    assert_searchset(await client.get("Basic", params={name: "x"}))


def test_each_link_of_a_chain_through_any_type_is_parsed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leaf of ``Basic?subject.subject.subject.subject.name`` is parsed once per
    type that has ``name`` (39), not once per path to it (6,570 before)."""
    from resources.search import parse

    calls: list[str] = []
    real = parse.parse_clause

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].resource_type)
        return real(*args, **kwargs)

    monkeypatch.setattr(parse, "parse_clause", counted)
    name = ".".join(["subject"] * MAX_CHAIN_DEPTH) + ".name"
    query = parse.parse_search(
        ["Basic"],
        [(name, "unmemoized-value")],
        strict=True,
        params_for=search_params,
        max_count=10,
        default_count=10,
    )
    assert query.conditions
    assert len(calls) == len(set(calls)) < 100


async def test_sort_keys(client: httpx.AsyncClient) -> None:
    keys = ["name", "-birthdate", "gender", "family", "given", "address", "-_lastUpdated", "_id"]
    assert len(keys) == MAX_SORT_KEYS
    assert_searchset(await client.get("Patient", params={"_sort": ",".join(keys)}))
    over = ",".join([*keys, "telecom"])
    assert_too_costly(await client.get("Patient", params={"_sort": over}), "_sort", MAX_SORT_KEYS)


async def test_values_in_all(client: httpx.AsyncClient) -> None:
    per = MAX_VALUES
    fits = [("name", values(f"n{p}-", per)) for p in range(MAX_TERMS // per)]
    assert_searchset(await post_search(client, "Patient", fits))
    over = [*fits, ("family", "one-too-many")]
    assert_too_costly(await post_search(client, "Patient", over), "family", MAX_TERMS)


async def test_a_chain_counts_its_values_once_per_group_of_target_types(
    client: httpx.AsyncClient,
) -> None:
    """``Basic?subject.name``: ``name`` is a string on some subject types and a token or
    other on others, so the chain compiles its values once per group."""
    items = [("subject.subject.name", values("n", MAX_VALUES))]
    assert_too_costly(await post_search(client, "Basic", items), items[0][0], MAX_TERMS)


async def test_value_set_codes_in_all(client: httpx.AsyncClient) -> None:
    assert_searchset(await client.get("DocumentReference", params={"type:in": C80}))
    twice = [("type:in", C80), ("type:not-in", C80)]
    response = await post_search(client, "DocumentReference", twice)
    assert_too_costly(response, "type:not-in", MAX_CODES)


# -- includes --------------------------------------------------------------------------------


@pytest.fixture
async def chart(client: httpx.AsyncClient) -> httpx.AsyncClient:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Chalmers"}]}
    assert (await client.put("Patient/p1", json=patient, headers=JSON)).status_code == 201
    for n in range(3):
        observation = {
            "resourceType": "Observation",
            "id": f"o{n}",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/p1"},
        }
        response = await client.put(f"Observation/o{n}", json=observation, headers=JSON)
        assert response.status_code == 201
    return client


def self_link_params(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    (url,) = [link["url"] for link in bundle["link"] if link["relation"] == "self"]
    return parse_qsl(urlsplit(url).query)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_repeated_include_counts_once(chart: httpx.AsyncClient, method: str) -> None:
    items = [("_include", "Observation:subject")] * 250
    items += [("_revinclude", "Provenance:target")] * 250
    if method == "GET":
        response = await chart.get("Observation", params=items)
    else:
        response = await post_search(chart, "Observation", items)
    bundle = assert_searchset(response)
    modes = [(e["search"]["mode"], e["resource"]["id"]) for e in bundle["entry"]]
    assert sorted(modes) == [("include", "p1"), ("match", "o0"), ("match", "o1"), ("match", "o2")]
    applied = [(k, v) for k, v in self_link_params(bundle) if k.endswith("include")]
    assert applied == [("_include", "Observation:subject"), ("_revinclude", "Provenance:target")]


async def test_distinct_includes_are_capped(chart: httpx.AsyncClient) -> None:
    references = [
        "subject",
        "patient",
        "performer",
        "encounter",
        "based-on",
        "derived-from",
        "device",
        "focus",
        "has-member",
        "part-of",
        "specimen",
        "subject:Patient",
    ]
    includes = [("_include", f"Observation:{code}") for code in references]
    includes += [("_include:iterate", "Observation:subject"), ("_include", "Observation:*")]
    includes += [("_revinclude", "Provenance:target"), ("_revinclude", "AuditEvent:entity")]
    assert len(includes) == MAX_INCLUDES
    bundle = assert_searchset(await post_search(chart, "Observation", includes))
    assert [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"] == []
    assert {e["resource"]["id"] for e in bundle["entry"]} == {"o0", "o1", "o2", "p1"}
    over = [*includes, ("_revinclude", "DocumentReference:related")]
    response = await post_search(chart, "Observation", over)
    assert_too_costly(response, "_revinclude", MAX_INCLUDES)
