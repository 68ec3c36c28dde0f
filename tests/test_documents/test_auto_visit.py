"""Visit summaries filed automatically (``FHIR_SERVER_AUTO_VISIT_SUMMARY=on``, issue 20),
on every store: an Encounter updated (or created) ``finished`` gets one DocumentReference with the
visit summary PDF (a Binary the patient may download), from the outbox, not inside the
Encounter's write; finishing it again files no second one; off (the default) files
none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.test_documents.support import SEED, bearer, issuer, pdf_text

SUMMARIES = {"encounter": "Encounter/a-new", "type": "http://loinc.org|34133-9"}


async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            token = issuer(app)
            admin = bearer(token("system/*.cruds"))
            for resource in SEED:
                path = f"{resource['resourceType']}/{resource['id']}"
                assert (await client.put(path, json=resource, headers=admin)).status_code < 300
            yield client, token


@pytest.fixture(params=STORES)
async def auto(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = Settings(
        storage=storage_url(request.param, tmp_path), auth="smart", auto_visit_summary="on"
    )
    async for pair in _client(settings):
        yield pair


async def _filed(http: httpx.AsyncClient, headers: dict[str, str], wait: float) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = await http.get("DocumentReference", params=SUMMARIES, headers=headers)
        entries = found.json().get("entry", [])
        if entries or asyncio.get_running_loop().time() > deadline:
            return entries
        await asyncio.sleep(0.1)


async def _finish(http: httpx.AsyncClient, admin: dict[str, str], status: str) -> None:
    encounter = next(r for r in SEED if r["id"] == "a-visit")
    response = await http.put(
        "Encounter/a-new", json={**encounter, "id": "a-new", "status": status}, headers=admin
    )
    assert response.status_code in (200, 201), response.text


async def test_a_finished_encounter_gets_its_visit_summary(
    auto: tuple[httpx.AsyncClient, Any],
) -> None:
    http, token = auto
    admin = bearer(token("system/*.cruds"))
    alice = bearer(token("patient/*.rs", patient="alice"))
    await _finish(http, admin, "in-progress")
    assert await _filed(http, admin, 0.5) == []
    await _finish(http, admin, "finished")
    entries = await _filed(http, alice, 10.0)
    assert len(entries) == 1
    document = entries[0]["resource"]
    assert document["subject"] == {"reference": "Patient/alice"}
    url = document["content"][0]["attachment"]["url"]
    raw = await http.get(url, headers={**alice, "accept": "application/pdf"})
    assert raw.status_code == 200, raw.text
    text = pdf_text(raw.content)
    assert "Visit Summary" in text and "Alice Smith" in text and "Encounter for check up" in text
    bob = bearer(token("patient/*.rs", patient="bob"))
    assert (await http.get(url, headers=bob)).status_code == 404
    await _finish(http, admin, "finished")  # finished again: no second summary
    await asyncio.sleep(1.5)
    assert len(await _filed(http, admin, 0)) == 1


async def test_off_by_default(tmp_path: Path) -> None:
    settings = Settings(storage=storage_url("sqlite", tmp_path), auth="smart")
    async for http, token in _client(settings):
        admin = bearer(token("system/*.cruds"))
        await _finish(http, admin, "in-progress")
        await _finish(http, admin, "finished")
        assert await _filed(http, admin, 1.5) == []
