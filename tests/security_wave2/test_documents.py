"""Attacks on documents and Binary by Alice's app and her caregiver: downloading Bob's
document, re-securing his Binary by her own document, uploads of active content, raw
uploads secured by another patient's resource. Each is refused (403/404/415) and gains
nothing."""

from __future__ import annotations

import httpx

from tests.security_wave2.calls import current, transaction


async def test_another_patients_document_cannot_be_downloaded(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for who in (alice, mum):
        for accept in ("application/fhir+json", "text/plain", "*/*", "text/*"):
            response = await http.get("Binary/b-bin", headers={**who, "accept": accept})
            assert response.status_code == 404, (accept, response.status_code)
            assert b"HIV" not in response.content
        for query in (
            "Binary?_id=b-bin",
            "DocumentReference?_id=b-doc",
            "Binary/b-bin/_history/1",
            "Binary/b-bin/_history",
        ):
            response = await http.get(query, headers=who)
            assert response.status_code in (200, 404), (query, response.text)
            assert "SGl2IHJlc3VsdA" not in response.text, query
            if response.status_code == 200:
                assert not response.json().get("entry"), query


async def test_pointing_an_own_document_at_anothers_binary_gains_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    mine = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/alice"},
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/b-bin"}}],
    }
    made = await http.post("DocumentReference", json=mine, headers=alice)
    assert made.status_code in (201, 403), made.text
    # re-securing Bob's Binary by her own document, in one transaction
    hijack = {
        "resourceType": "Binary",
        "id": "b-bin",
        "contentType": "text/plain",
        "securityContext": {"reference": "Patient/alice"},
        "data": "eA==",
    }
    bundle = transaction(
        {"resource": hijack, "request": {"method": "PUT", "url": "Binary/b-bin"}},
        {
            "fullUrl": "urn:uuid:0d7a3c55-8f0b-4a4e-9b3b-2f1f9d6a1c11",
            "resource": mine,
            "request": {"method": "POST", "url": "DocumentReference"},
        },
    )
    response = await http.post("", json=bundle, headers=alice)
    assert response.status_code in (403, 404), response.text
    assert (await http.get("Binary/b-bin", headers=alice)).status_code == 404
    stored = await current(http, admin, "Binary/b-bin")
    assert stored["securityContext"] == {"reference": "DocumentReference/b-doc"}


async def test_uploads_of_active_content_are_refused(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    html = "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="
    for kind in ("text/html", "image/svg+xml", "application/javascript", "text/plain\r\nX-A: b"):
        binary = {
            "resourceType": "Binary",
            "contentType": kind,
            "securityContext": {"reference": "Patient/alice"},
            "data": html,
        }
        response = await http.post("Binary", json=binary, headers=alice)
        assert response.status_code in (400, 415), (kind, response.text)
        document = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "Patient/alice"},
            "content": [{"attachment": {"contentType": kind, "data": html}}],
        }
        response = await http.post("DocumentReference", json=document, headers=alice)
        assert response.status_code in (400, 415), (kind, response.text)
    raw = await http.post(
        "Binary",
        content=b"<script>alert(1)</script>",
        headers={**alice, "content-type": "text/html", "x-security-context": "Patient/alice"},
    )
    assert raw.status_code in (400, 403, 415), raw.text


async def test_raw_upload_secured_by_another_patient_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for who in (alice, mum):
        for context in ("Patient/bob", "DocumentReference/b-doc", "Communication/b-msg"):
            raw = await http.post(
                "Binary",
                content=b"hello",
                headers={**who, "content-type": "text/plain", "x-security-context": context},
            )
            assert raw.status_code in (403, 404), (context, raw.text)
            as_json = {
                "resourceType": "Binary",
                "contentType": "text/plain",
                "securityContext": {"reference": context},
                "data": "aGVsbG8=",
            }
            response = await http.post("Binary", json=as_json, headers=who)
            assert response.status_code in (403, 404), (context, response.text)
