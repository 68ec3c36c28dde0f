"""Document uploads and downloads (issue 20, "Documents") through the HTTP API with SMART
tokens, on every store: a DocumentReference with its bytes inline, or a transaction of
Binary + DocumentReference; media types and size limits; the Binary secured by the
DocumentReference and downloadable as FHIR JSON or as its bytes, by whoever may read the
DocumentReference and nobody else."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import BASE, JSON
from tests.test_documents.support import b64

PDF_BYTES = b"%PDF-1.4\n% a tiny test document\n%%EOF\n"


def _document(patient: str, content_type: str, data: bytes) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient}"},
        "description": "Referral letter",
        "content": [{"attachment": {"contentType": content_type, "data": b64(data)}}],
    }


async def _count(http: httpx.AsyncClient, type_: str, admin: dict[str, str]) -> int:
    response = await http.get(type_, params={"_summary": "count"}, headers=admin)
    return int(response.json()["total"])


async def test_inline_bytes_move_into_a_binary_the_patient_can_download(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    created = await http.post(
        "DocumentReference",
        json=_document("alice", "application/pdf", PDF_BYTES),
        headers={**alice, **JSON},
    )
    assert created.status_code == 201, created.text
    document = created.json()
    attachment = document["content"][0]["attachment"]
    assert "data" not in attachment
    assert attachment["url"].startswith("Binary/")
    assert attachment["size"] == len(PDF_BYTES)
    binary = await http.get(attachment["url"], headers=alice)
    assert binary.status_code == 200, binary.text
    assert binary.json()["securityContext"] == {"reference": f"DocumentReference/{document['id']}"}
    raw = await http.get(attachment["url"], headers={**alice, "accept": "application/pdf"})
    assert raw.status_code == 200, raw.text
    assert raw.content == PDF_BYTES
    assert raw.headers["content-type"].startswith("application/pdf")
    other = await http.get(attachment["url"], headers={**alice, "accept": "image/png"})
    assert other.status_code == 406


async def test_another_patient_cannot_download_it(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    created = await http.post(
        "DocumentReference",
        json=_document("alice", "text/plain", b"my notes"),
        headers={**alice, **JSON},
    )
    url = created.json()["content"][0]["attachment"]["url"]
    for accept in ("application/fhir+json", "text/plain"):
        response = await http.get(url, headers={**bob, "accept": accept})
        assert response.status_code == 404, response.text
        assert b"my notes" not in response.content
    document = await http.get(f"DocumentReference/{created.json()['id']}", headers=bob)
    assert document.status_code == 404


async def test_a_transaction_of_binary_and_document(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    binary_urn, document_urn = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    document = _document("alice", "image/png", b"")
    document["content"][0]["attachment"] = {"contentType": "image/png", "url": binary_urn}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": binary_urn,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "image/png",
                    "securityContext": {"reference": "Patient/alice"},
                    "data": b64(b"\x89PNG\r\n\x1a\nfake"),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": document_urn,
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    response = await http.post("", json=bundle, headers={**alice, **JSON})
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    binary_ref, document_ref = (
        "/".join(url.removeprefix(BASE + "/").split("/")[:2]) for url in locations
    )
    binary = await http.get(binary_ref, headers=alice)
    assert binary.status_code == 200, binary.text
    assert binary.json()["securityContext"] == {"reference": document_ref}
    raw = await http.get(binary_ref, headers={**alice, "accept": "image/*"})
    assert raw.content == b"\x89PNG\r\n\x1a\nfake"
    assert (await http.get(binary_ref, headers=bob)).status_code == 404


async def test_other_types_are_415_and_nothing_is_written(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    before = await _count(http, "DocumentReference", admin)
    for content_type in ("application/zip", "text/html", "image/svg+xml"):
        document = _document("alice", "text/plain", b"<x/>")
        document["content"][0]["attachment"]["contentType"] = content_type
        response = await http.post("DocumentReference", json=document, headers={**alice, **JSON})
        assert response.status_code == 415, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert await _count(http, "DocumentReference", admin) == before
    assert await _count(http, "Binary", admin) == 0
