"""The R4 resource types the fhir.resources R4B models lack (``MedicinalProduct*``,
``Substance*``, ``Evidence``, ``EffectEvidenceSynthesis`` ...) are served like every other
type: written (https://hl7.org/fhir/R4/http.html#update), read, and found by every one of
their R4 search parameters (https://hl7.org/fhir/R4/search.html), ``_include`` and
``_revinclude`` among them, on every store.

Each type has a resource ``a`` that every query of the type finds, and a resource ``b``
that none does (but ``_lastUpdated``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resources.search.parameters import search_params
from tests.conftest import JSON
from tests.test_r4_examples import R4_ONLY_TYPES

EX = "http://example.org"
SCT = "http://snomed.info/sct"
USAGE = "http://terminology.hl7.org/CodeSystem/usage-context-type"
COUNTRY = {"coding": [{"system": "urn:iso:std:iso:3166", "code": "EU"}]}
IDS = {"identifier": [{"system": f"{EX}/ids", "value": "a-1"}]}
ID_QUERY = f"identifier={EX}/ids|a-1"
META = {
    "tag": [{"system": f"{EX}/tags", "code": "r4-only"}],
    "profile": [f"{EX}/StructureDefinition/p"],
    "security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
    ],
    "source": f"{EX}/source",
}
COMMON_QUERIES = [
    "_id=a",
    "_lastUpdated=ge2000-01-01",  # finds b too
    f"_tag={EX}/tags|r4-only",
    f"_profile={EX}/StructureDefinition/p",
    "_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N",
    f"_source={EX}/source",
]
RELATIONS = ("composed-of", "depends-on", "derived-from", "predecessor", "successor")


def _ref(target: str) -> dict[str, str]:
    return {"reference": target}


def _metadata(type_: str, required: dict[str, Any]) -> tuple[dict, dict, list[str]]:
    """(a, b, queries) of a type with the metadata-resource search parameters."""
    a = {
        "url": f"{EX}/fhir/{type_}/a",
        **IDS,
        "version": "1.0",
        "name": "RichOne",
        "title": "Rich one",
        "status": "active",
        "date": "2020-05-01",
        "publisher": "Acme Research",
        "description": "Pooled estimate",
        "useContext": [
            {
                "code": {"system": USAGE, "code": "focus"},
                "valueCodeableConcept": {"coding": [{"system": SCT, "code": "1234"}]},
            },
            {
                "code": {"system": USAGE, "code": "age"},
                "valueQuantity": {"value": 5, "system": "http://unitsofmeasure.org", "code": "a"},
            },
        ],
        "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "US"}]}],
        "effectivePeriod": {"start": "2020-01-01", "end": "2020-12-31"},
        **required,
    }
    queries = [
        f"url={EX}/fhir/{type_}/a",
        ID_QUERY,
        "version=1.0",
        "name=rich",
        "title=rich",
        "status=active",
        "date=2020-05-01",
        "publisher=acme",
        "description=pooled",
        f"context={SCT}|1234",
        "context-type=focus",
        "context-quantity=5",
        f"context-type-value=focus${SCT}|1234",
        "context-type-quantity=age$5",
        "jurisdiction=US",
        "effective=2020",
    ]
    return a, {"status": "draft", **required}, queries


def _evidence(type_: str, required: dict[str, Any]) -> tuple[dict, dict, list[str]]:
    a, b, queries = _metadata(type_, required)
    a["relatedArtifact"] = [{"type": t, "resource": f"{EX}/fhir/Library/{t}"} for t in RELATIONS]
    a["topic"] = [{"coding": [{"system": f"{EX}/topics", "code": "t1"}]}]
    queries += [f"{t}={EX}/fhir/Library/{t}" for t in RELATIONS]
    return a, b, [*queries, f"topic={EX}/topics|t1"]


def _subject(many: bool = True) -> tuple[dict, dict, list[str]]:
    subject = _ref("MedicinalProduct/a")
    return {"subject": [subject] if many else subject}, {}, ["subject=MedicinalProduct/a"]


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = {
    "EffectEvidenceSynthesis": _metadata(
        "EffectEvidenceSynthesis",
        {
            "population": _ref("EvidenceVariable/p"),
            "exposure": _ref("EvidenceVariable/e"),
            "exposureAlternative": _ref("EvidenceVariable/x"),
            "outcome": _ref("EvidenceVariable/o"),
        },
    ),
    "RiskEvidenceSynthesis": _metadata(
        "RiskEvidenceSynthesis",
        {"population": _ref("EvidenceVariable/p"), "outcome": _ref("EvidenceVariable/o")},
    ),
    "Evidence": _evidence("Evidence", {"exposureBackground": _ref("EvidenceVariable/p")}),
    "EvidenceVariable": _evidence(
        "EvidenceVariable", {"characteristic": [{"definitionCodeableConcept": {"text": "adults"}}]}
    ),
    "MedicinalProduct": (
        {
            **IDS,
            "name": [
                {
                    "productName": "Acme 10 mg tablets",
                    "countryLanguage": [
                        {
                            "country": COUNTRY,
                            "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]},
                        }
                    ],
                }
            ],
        },
        {"name": [{"productName": "Other"}]},
        [ID_QUERY, "name=acme", "name-language=en"],
    ),
    "MedicinalProductAuthorization": (
        {
            **IDS,
            "subject": _ref("MedicinalProduct/a"),
            "country": [COUNTRY],
            "status": {"coding": [{"system": f"{EX}/authorization-status", "code": "valid"}]},
            "holder": _ref("Organization/acme"),
        },
        {},
        [
            ID_QUERY,
            "subject=MedicinalProduct/a",
            "country=EU",
            "status=valid",
            "holder=Organization/acme",
        ],
    ),
    "MedicinalProductContraindication": _subject(),
    "MedicinalProductIndication": _subject(),
    "MedicinalProductInteraction": _subject(),
    "MedicinalProductUndesirableEffect": _subject(),
    "MedicinalProductIngredient": ({"role": {"text": "active"}}, {"role": {"text": "x"}}, []),
    "MedicinalProductManufactured": (
        {"manufacturedDoseForm": {"text": "tablet"}, "quantity": {"value": 10}},
        {"manufacturedDoseForm": {"text": "capsule"}, "quantity": {"value": 1}},
        [],
    ),
    "MedicinalProductPackaged": (
        {
            **IDS,
            "subject": [_ref("MedicinalProduct/a")],
            "packageItem": [{"type": {"text": "blister"}, "quantity": {"value": 10}}],
        },
        {"packageItem": [{"type": {"text": "box"}, "quantity": {"value": 1}}]},
        [ID_QUERY, "subject=MedicinalProduct/a"],
    ),
    "MedicinalProductPharmaceutical": (
        {
            **IDS,
            "administrableDoseForm": {"text": "tablet"},
            "routeOfAdministration": [
                {
                    "code": {"coding": [{"system": f"{EX}/routes", "code": "oral"}]},
                    "targetSpecies": [
                        {"code": {"coding": [{"system": f"{EX}/species", "code": "dog"}]}}
                    ],
                }
            ],
        },
        {
            "administrableDoseForm": {"text": "x"},
            "routeOfAdministration": [{"code": {"text": "x"}}],
        },
        [ID_QUERY, "route=oral", "target-species=dog"],
    ),
    "SubstanceSpecification": (
        {"code": [{"code": {"coding": [{"system": f"{EX}/substances", "code": "s1"}]}}]},
        {},
        [f"code={EX}/substances|s1"],
    ),
    "SubstanceNucleicAcid": ({"numberOfSubunits": 1}, {}, []),
    "SubstancePolymer": ({"class": {"text": "polymer"}}, {}, []),
    "SubstanceProtein": ({"numberOfSubunits": 1}, {}, []),
    "SubstanceReferenceInformation": ({"comment": "reference"}, {}, []),
    "SubstanceSourceMaterial": ({"sourceMaterialClass": {"text": "plant"}}, {}, []),
}


def _queries(type_: str) -> list[str]:
    return [*COMMON_QUERIES, *CASES[type_][2]]


async def _put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    path = f"{resource['resourceType']}/{resource['id']}"
    response = await client.put(path, json=resource, headers=JSON)
    assert response.status_code == 201, response.text


async def _found(client: httpx.AsyncClient, type_: str, query: str) -> set[str]:
    response = await client.get(f"{type_}?{query}", headers={"prefer": "handling=strict"})
    assert response.status_code == 200, (query, response.text)
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def test_the_cases_are_the_r4_only_types_and_use_every_search_parameter() -> None:
    assert set(CASES) == set(R4_ONLY_TYPES)
    for type_ in CASES:
        used = {query.split("=")[0] for query in _queries(type_)}
        assert used == set(search_params(type_)), type_


@pytest.mark.parametrize("type_", sorted(R4_ONLY_TYPES))
async def test_found_by_every_search_parameter(client: httpx.AsyncClient, type_: str) -> None:
    a, b, _ = CASES[type_]
    await _put(client, {"resourceType": type_, "id": "a", "meta": META, **a})
    await _put(client, {"resourceType": type_, "id": "b", **b})
    read = await client.get(f"{type_}/a")
    assert read.status_code == 200 and read.json()["meta"]["tag"] == META["tag"]
    for query in _queries(type_):
        expected = {"a", "b"} if query.startswith("_lastUpdated") else {"a"}
        assert await _found(client, type_, query) == expected, query


async def test_include_and_revinclude_between_the_new_types(client: httpx.AsyncClient) -> None:
    a, _, _ = CASES["MedicinalProduct"]
    await _put(client, {"resourceType": "MedicinalProduct", "id": "a", **a})
    authorization, _, _ = CASES["MedicinalProductAuthorization"]
    await _put(
        client, {"resourceType": "MedicinalProductAuthorization", "id": "m1", **authorization}
    )
    response = await client.get(
        "MedicinalProduct?_id=a&_revinclude=MedicinalProductAuthorization:subject"
    )
    entries = {
        (e["resource"]["resourceType"], e["search"]["mode"]) for e in response.json()["entry"]
    }
    assert entries == {("MedicinalProduct", "match"), ("MedicinalProductAuthorization", "include")}
    response = await client.get(
        "MedicinalProductAuthorization?_include=MedicinalProductAuthorization:subject"
    )
    types = [e["resource"]["resourceType"] for e in response.json()["entry"]]
    assert sorted(types) == ["MedicinalProduct", "MedicinalProductAuthorization"]


async def test_history_and_delete(client: httpx.AsyncClient) -> None:
    a, _, _ = CASES["SubstanceSpecification"]
    resource = {"resourceType": "SubstanceSpecification", "id": "a", **a}
    await _put(client, resource)
    updated = await client.put(
        "SubstanceSpecification/a", json={**resource, "comment": "v2"}, headers=JSON
    )
    assert updated.status_code == 200
    history = (await client.get("SubstanceSpecification/a/_history")).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert (await client.delete("SubstanceSpecification/a")).status_code in (200, 204)
    assert (await client.get("SubstanceSpecification/a")).status_code == 410
