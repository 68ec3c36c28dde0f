"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import asyncio

from tests.conftest import JSON


async def put(client, type_: str, id_: str, **fields: object) -> dict:
    import json

    body = json.dumps({"resourceType": type_, "id": id_, **fields})
    response = await client.put(f"{type_}/{id_}", content=body, headers=JSON)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_instance_history_newest_first(client):
    for gender in ("male", "female", "other"):
        await put(client, "Patient", "h1", gender=gender)
    bundle = (await client.get("Patient/h1/_history")).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert bundle["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["3", "2", "1"]
    assert bundle["entry"][2]["request"] == {"method": "PUT", "url": "Patient/h1"}
    assert bundle["entry"][0]["response"]["etag"] == 'W/"3"'


async def test_type_and_system_history(client):
    await put(client, "Patient", "h2")
    await put(client, "Organization", "o2", name="Acme")
    await put(client, "Patient", "h2", active=True)
    patients = (await client.get("Patient/_history")).json()
    assert [e["fullUrl"].rsplit("/", 2)[-2:] for e in patients["entry"]] == [
        ["Patient", "h2"],
        ["Patient", "h2"],
    ]
    system = (await client.get("_history")).json()
    assert [e["resource"]["resourceType"] for e in system["entry"]] == [
        "Patient",
        "Organization",
        "Patient",
    ]


async def test_count_and_next_links_walk_every_version_once(client):
    for n in range(7):
        await put(client, "Patient", "h3", birthDate=f"20{n:02d}")
    seen: list[str] = []
    url = "Patient/h3/_history?_count=3"
    pages = 0
    while url:
        bundle = (await client.get(url)).json()
        assert len(bundle.get("entry", [])) <= 3
        seen += [e["resource"]["meta"]["versionId"] for e in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        url = links.get("next", "")
        pages += 1
    assert seen == [str(v) for v in range(7, 0, -1)]
    assert pages == 3


async def test_paging_is_stable_while_new_versions_are_written(client):
    for n in range(4):
        await put(client, "Patient", "h4", birthDate=f"19{n + 50}")
    first = (await client.get("Patient/h4/_history?_count=2")).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    await put(client, "Patient", "h4", birthDate="2000")
    second = (await client.get(next_url)).json()
    assert [e["resource"]["meta"]["versionId"] for e in second["entry"]] == ["2", "1"]


async def test_since_keeps_versions_created_at_or_after(client):
    await put(client, "Patient", "h5", gender="male")
    await asyncio.sleep(0.01)
    second = await put(client, "Patient", "h5", gender="female")
    since = second["meta"]["lastUpdated"]
    bundle = (await client.get("Patient/h5/_history", params={"_since": since})).json()
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2"]
    assert "_since=" in bundle["link"][0]["url"]


async def test_at_gives_the_version_current_at_that_time(client):
    first = await put(client, "Patient", "h6", gender="male")
    await asyncio.sleep(0.01)
    await put(client, "Patient", "h6", gender="female")
    at = first["meta"]["lastUpdated"]
    bundle = (await client.get("Patient/h6/_history", params={"_at": at})).json()
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["1"]
    whole_year = at[:4]
    bundle = (await client.get("Patient/h6/_history", params={"_at": whole_year})).json()
    assert bundle["total"] == 2


async def test_bad_history_parameters_are_400(client):
    await put(client, "Patient", "h7")
    for params in ({"_count": "0"}, {"_count": "x"}, {"_since": "yesterday"}, {"_at": "2020-13"}):
        response = await client.get("Patient/h7/_history", params=params)
        assert response.status_code == 400, params
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_history_of_unknown_instance_is_404(client):
    response = await client.get("Patient/nobody/_history")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_type_history_with_no_versions_is_an_empty_bundle(client):
    bundle = (await client.get("Practitioner/_history")).json()
    assert bundle["total"] == 0 and "entry" not in bundle
