"""The upload size limit (``FHIR_SERVER_UPLOAD_MAX_BYTES``, issue 20): a document larger
than the limit is ``413`` and nothing is written, inline or as a transaction's Binary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, JSON, storage_url
from tests.test_documents.support import b64, bearer, issuer

LIMIT = 1000


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = Settings(
        storage=storage_url("sqlite", tmp_path), auth="smart", upload_max_bytes=LIMIT
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            yield client, issuer(app)


def _document(data: bytes) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/alice"},
        "content": [{"attachment": {"contentType": "text/plain", "data": b64(data)}}],
    }


async def test_at_the_limit_is_accepted_above_is_413(
    limited: tuple[httpx.AsyncClient, Any],
) -> None:
    http, token = limited
    admin = bearer(token("system/*.cruds"))
    patient = {"resourceType": "Patient", "id": "alice"}
    assert (await http.put("Patient/alice", json=patient, headers=admin)).status_code == 201
    alice = {**bearer(token("patient/*.cruds", patient="alice")), **JSON}
    ok = await http.post("DocumentReference", json=_document(b"x" * LIMIT), headers=alice)
    assert ok.status_code == 201, ok.text
    too_big = await http.post(
        "DocumentReference", json=_document(b"x" * (LIMIT + 1)), headers=alice
    )
    assert too_big.status_code == 413, too_big.text
    assert "FHIR_SERVER_UPLOAD_MAX_BYTES" in too_big.text
    binary = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "securityContext": {"reference": "Patient/alice"},
        "data": b64(b"y" * (LIMIT + 1)),
    }
    document = _document(b"")
    document["content"][0]["attachment"] = {"contentType": "text/plain", "url": "urn:uuid:b1"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:b1",
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
            {"resource": document, "request": {"method": "POST", "url": "DocumentReference"}},
        ],
    }
    response = await http.post("", json=bundle, headers=alice)
    assert response.status_code == 413, response.text
    count = await http.get("Binary", params={"_summary": "count"}, headers=admin)
    assert count.json()["total"] == 1  # the one accepted above
    count = await http.get("DocumentReference", params={"_summary": "count"}, headers=admin)
    assert count.json()["total"] == 1
