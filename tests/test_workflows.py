"""The workflow-rule framework (``fhir_server.workflows``) through the HTTP API, on every
store: a rule registered here for Flag claims a Basic "token" (free -> taken), refuses,
or rewrites what is stored; the tests check that refusals change nothing, that added
writes commit with the request, and that concurrent requests depending on the same
resource cannot both win (the compare-and-set and re-evaluation of the rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.bulk_import import import_resources
from fhir_server.workflows import Change, Transaction, rule
from fhir_server.workflows.base import unregister
from resources import fhir_json
from resources.errors import FhirError
from tests.conftest import BASE, JSON
from tests.store_support import put, sqlite_store


async def _flag_rule(tx: Transaction, change: Change) -> None:
    resource = change.resource
    if resource is None:
        return
    text = (resource.get("code") or {}).get("text", "")
    if text == "refuse":
        raise FhirError(422, "business-rule", "refused by the rule")
    if text == "stamp":
        change.set({**resource, "status": "inactive"})
    if text.startswith("claim:"):
        token_id = text.removeprefix("claim:")
        claimed = tx.state.setdefault("claimed", set())
        if token_id in claimed:
            raise FhirError(409, "conflict", f"Basic/{token_id} is claimed twice")
        claimed.add(token_id)
        token, version = await tx.current("Basic", token_id)
        if token is None:
            raise FhirError(422, "business-rule", f"Basic/{token_id} does not exist")
        if token["code"]["text"] != "free":
            raise FhirError(409, "conflict", f"Basic/{token_id} is taken")
        tx.update({**token, "code": {"text": "taken"}}, if_match=version)
    if text.startswith("unique:"):
        query = tx.query("Flag", [("identifier", text)])
        tx.exclusive(change, query, FhirError(409, "duplicate", f"a Flag {text} exists"))


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    rule("Flag")(_flag_rule)
    yield
    unregister(_flag_rule)


def _flag(text: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "identifier": [{"value": text}],
        "status": "active",
        "code": {"text": text},
        "subject": {"reference": "Patient/p1"},
    }


async def _token(client: httpx.AsyncClient, id_: str = "t1") -> None:
    body = {"resourceType": "Basic", "id": id_, "code": {"text": "free"}}
    response = await client.put(f"{BASE}/Basic/{id_}", json=body, headers=JSON)
    assert response.status_code == 201, response.text


async def _count(client: httpx.AsyncClient, type_: str) -> int:
    response = await client.get(f"{BASE}/{type_}", params={"_summary": "count"})
    return int(response.json()["total"])


async def test_a_refusal_writes_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/Flag", json=_flag("refuse"), headers=JSON)
    assert response.status_code == 422
    assert "refused by the rule" in response.text
    assert await _count(client, "Flag") == 0


async def test_a_rule_rewrites_what_is_stored(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/Flag", json=_flag("stamp"), headers=JSON)
    assert response.status_code == 201
    assert response.json()["status"] == "inactive"
    read = await client.get(f"{BASE}/Flag/{response.json()['id']}")
    assert read.json()["status"] == "inactive"


async def test_an_added_write_commits_with_the_request(client: httpx.AsyncClient) -> None:
    await _token(client)
    response = await client.post(f"{BASE}/Flag", json=_flag("claim:t1"), headers=JSON)
    assert response.status_code == 201, response.text
    token = (await client.get(f"{BASE}/Basic/t1")).json()
    assert token["code"]["text"] == "taken"
    assert token["meta"]["versionId"] == "2"
    again = await client.post(f"{BASE}/Flag", json=_flag("claim:t1"), headers=JSON)
    assert again.status_code == 409
    assert "Basic/t1 is taken" in again.text
    assert await _count(client, "Flag") == 1


async def test_rules_run_on_updates_and_transaction_entries(client: httpx.AsyncClient) -> None:
    await _token(client, "t2")
    await _token(client, "t3")
    created = await client.post(f"{BASE}/Flag", json=_flag("stamp"), headers=JSON)
    flag_id = created.json()["id"]
    update = await client.put(
        f"{BASE}/Flag/{flag_id}", json={**_flag("claim:t2"), "id": flag_id}, headers=JSON
    )
    assert update.status_code == 200
    assert (await client.get(f"{BASE}/Basic/t2")).json()["code"]["text"] == "taken"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _flag("claim:t3"), "request": {"method": "POST", "url": "Flag"}},
            {"resource": _flag("refuse"), "request": {"method": "POST", "url": "Flag"}},
        ],
    }
    refused = await client.post(BASE, json=bundle, headers=JSON)
    assert refused.status_code == 422
    assert (await client.get(f"{BASE}/Basic/t3")).json()["code"]["text"] == "free"
    assert await _count(client, "Flag") == 1


async def test_one_transaction_cannot_claim_twice(client: httpx.AsyncClient) -> None:
    await _token(client)
    entry = {"resource": _flag("claim:t1"), "request": {"method": "POST", "url": "Flag"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    response = await client.post(BASE, json=bundle, headers=JSON)
    assert response.status_code == 409
    assert (await client.get(f"{BASE}/Basic/t1")).json()["code"]["text"] == "free"
    assert await _count(client, "Flag") == 0


async def test_of_concurrent_claims_exactly_one_wins(client: httpx.AsyncClient) -> None:
    await _token(client)
    responses = await asyncio.gather(
        *(client.post(f"{BASE}/Flag", json=_flag("claim:t1"), headers=JSON) for _ in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, codes
    assert all("Basic/t1" in r.text for r in responses if r.status_code == 409)
    token = (await client.get(f"{BASE}/Basic/t1")).json()
    assert token["meta"]["versionId"] == "2"
    assert await _count(client, "Flag") == 1


async def test_an_exclusive_create_refuses_a_duplicate(client: httpx.AsyncClient) -> None:
    first = await client.post(f"{BASE}/Flag", json=_flag("unique:a"), headers=JSON)
    assert first.status_code == 201
    second = await client.post(f"{BASE}/Flag", json=_flag("unique:a"), headers=JSON)
    assert second.status_code == 409
    assert "a Flag unique:a exists" in second.text
    concurrent = await asyncio.gather(
        *(client.post(f"{BASE}/Flag", json=_flag("unique:b"), headers=JSON) for _ in range(10))
    )
    assert sorted(r.status_code for r in concurrent) == [201] + [409] * 9


async def test_rules_see_bulk_import(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path / "fhir.sqlite3") as store:
        await import_resources(store, [{**_flag("stamp"), "id": "f1"}])
        stored = await store.read("Flag", "f1")
        assert stored is not None and stored.content is not None
        assert fhir_json.loads(stored.content)["status"] == "inactive"


class _CountedReads:
    """The real store, its reads counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[tuple[str, str]] = []

    async def read(self, type_: str, id_: str) -> Any:
        self.reads.append((type_, id_))
        return await self.inner.read(type_, id_)


async def test_a_create_of_a_new_id_replaces_nothing_without_a_read(tmp_path: Path) -> None:
    """``POST`` (``must_not_exist``): the store refuses the write if the id exists, so the
    rules are told "nothing replaced" without reading it; an update still reads and pins."""
    async with sqlite_store(tmp_path / "fhir.sqlite3") as store:
        await store.write(put({**_flag("old"), "id": "old"}))
        counted = _CountedReads(store)
        new = {**_flag("new"), "id": "new"}
        create = Change(replace(put(new), method="create", must_not_exist=True), new)
        update = Change(put({**_flag("old"), "id": "old"}), _flag("old"))
        nobody: Any = None
        tx = Transaction(counted, nobody, nobody, [create, update])
        assert await tx.previous(create) is None
        assert counted.reads == []
        previous = await tx.previous(update)
        assert previous is not None and previous["code"]["text"] == "old"
        assert counted.reads == [("Flag", "old")]
        assert tx.pins == {("Flag", "old"): 1}
