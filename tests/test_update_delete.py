"""update, delete and optimistic locking (https://hl7.org/fhir/R4/http.html#update,
#delete, #concurrency)."""

from __future__ import annotations

import asyncio

from tests.conftest import JSON


def patient(id_: str, **fields: str) -> bytes:
    extra = "".join(f',"{k}":"{v}"' for k, v in fields.items())
    return f'{{"resourceType":"Patient","id":"{id_}"{extra}}}'.encode()


async def test_update_as_create_with_client_id_is_201(client):
    response = await client.put("Patient/pat-1", content=patient("pat-1"), headers=JSON)
    assert response.status_code == 201
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith("/Patient/pat-1/_history/1")


async def test_update_makes_a_new_version(client):
    await client.put("Patient/pat-2", content=patient("pat-2"), headers=JSON)
    response = await client.put(
        "Patient/pat-2", content=patient("pat-2", gender="female"), headers=JSON
    )
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.json()["gender"] == "female"


async def test_update_id_must_match_url(client):
    response = await client.put("Patient/pat-3", content=patient("other"), headers=JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["id"]
    assert (await client.get("Patient/pat-3")).status_code == 404


async def test_update_body_without_id_is_400(client):
    response = await client.put(
        "Patient/pat-4", content=b'{"resourceType":"Patient"}', headers=JSON
    )
    assert response.status_code == 400


async def test_update_with_invalid_id_is_400(client):
    long_id = "a" * 65
    response = await client.put(f"Patient/{long_id}", content=patient(long_id), headers=JSON)
    assert response.status_code == 400


async def test_if_match_stale_version_is_412_and_changes_nothing(client):
    await client.put("Patient/pat-5", content=patient("pat-5"), headers=JSON)
    await client.put("Patient/pat-5", content=patient("pat-5", gender="male"), headers=JSON)
    response = await client.put(
        "Patient/pat-5",
        content=patient("pat-5", gender="female"),
        headers={**JSON, "If-Match": 'W/"1"'},
    )
    assert response.status_code == 412
    current = (await client.get("Patient/pat-5")).json()
    assert current["gender"] == "male" and current["meta"]["versionId"] == "2"


async def test_if_match_current_version_succeeds(client):
    await client.put("Patient/pat-6", content=patient("pat-6"), headers=JSON)
    response = await client.put(
        "Patient/pat-6",
        content=patient("pat-6", gender="other"),
        headers={**JSON, "If-Match": 'W/"1"'},
    )
    assert response.status_code == 200


async def test_concurrent_updates_with_same_if_match_exactly_one_wins(client):
    await client.put("Patient/pat-7", content=patient("pat-7"), headers=JSON)

    async def attempt(n: int) -> int:
        body = patient("pat-7", birthDate=f"19{n + 10}-01-01")
        response = await client.put(
            "Patient/pat-7", content=body, headers={**JSON, "If-Match": 'W/"1"'}
        )
        return response.status_code

    statuses = await asyncio.gather(*(attempt(n) for n in range(10)))
    assert sorted(statuses) == [200] + [412] * 9
    assert (await client.get("Patient/pat-7")).json()["meta"]["versionId"] == "2"


async def test_delete_then_read_is_410_and_history_keeps_it(client):
    await client.put("Patient/pat-8", content=patient("pat-8"), headers=JSON)
    deleted = await client.delete("Patient/pat-8")
    assert deleted.status_code == 200
    assert deleted.headers["etag"] == 'W/"2"'
    gone = await client.get("Patient/pat-8")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = (await client.get("Patient/pat-8/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT"]
    assert "resource" not in history["entry"][0]
    assert (await client.get("Patient/pat-8/_history/1")).status_code == 200
    assert (await client.get("Patient/pat-8/_history/2")).status_code == 410


async def test_delete_is_idempotent_and_of_unknown_is_ok(client):
    await client.put("Patient/pat-9", content=patient("pat-9"), headers=JSON)
    assert (await client.delete("Patient/pat-9")).status_code == 200
    again = await client.delete("Patient/pat-9")
    assert again.status_code == 200
    history = (await client.get("Patient/pat-9/_history")).json()
    assert history["total"] == 2
    assert (await client.delete("Patient/never-was")).status_code == 200


async def test_delete_with_prefer_minimal_is_204(client):
    await client.put("Patient/pat-10", content=patient("pat-10"), headers=JSON)
    response = await client.delete("Patient/pat-10", headers={"Prefer": "return=minimal"})
    assert response.status_code == 204 and response.content == b""


async def test_update_after_delete_recreates_with_next_version(client):
    await client.put("Patient/pat-11", content=patient("pat-11"), headers=JSON)
    await client.delete("Patient/pat-11")
    response = await client.put("Patient/pat-11", content=patient("pat-11"), headers=JSON)
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"


async def test_delete_with_stale_if_match_is_412(client):
    await client.put("Patient/pat-12", content=patient("pat-12"), headers=JSON)
    await client.put("Patient/pat-12", content=patient("pat-12", gender="male"), headers=JSON)
    response = await client.delete("Patient/pat-12", headers={"If-Match": 'W/"1"'})
    assert response.status_code == 412
    assert (await client.get("Patient/pat-12")).status_code == 200
