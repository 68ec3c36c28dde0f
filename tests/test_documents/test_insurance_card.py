"""Photos of the insurance card (issue 20, "Insurance"): the patient uploads the front and
the back as DocumentReferences of type LOINC 64290-0 (health insurance card) with the
image inline; they are found by type, downloadable as images by the patient, and never
by another patient. Over HTTP with SMART tokens, on every store."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import JSON
from tests.test_documents.support import b64

CARD = {"system": "http://loinc.org", "code": "64290-0", "display": "Health insurance card"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"\xff\xd9"


def _card(side: str, content_type: str, data: bytes) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [CARD]},
        "subject": {"reference": "Patient/alice"},
        "description": f"Insurance card, {side}",
        "content": [{"attachment": {"contentType": content_type, "data": b64(data)}}],
    }


async def test_the_card_photos_are_the_patients_own(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    urls = {}
    for side, content_type, data in (("front", "image/png", PNG), ("back", "image/jpeg", JPEG)):
        created = await http.post(
            "DocumentReference", json=_card(side, content_type, data), headers={**alice, **JSON}
        )
        assert created.status_code == 201, created.text
        urls[side] = (created.json()["content"][0]["attachment"]["url"], content_type, data)
    found = await http.get(
        "DocumentReference",
        params={"patient": "alice", "type": "http://loinc.org|64290-0"},
        headers=alice,
    )
    assert found.status_code == 200
    assert sorted(e["resource"]["description"] for e in found.json()["entry"]) == [
        "Insurance card, back",
        "Insurance card, front",
    ]
    for url, content_type, data in urls.values():
        image = await http.get(url, headers={**alice, "accept": content_type})
        assert image.status_code == 200 and image.content == data
        assert (await http.get(url, headers={**bob, "accept": content_type})).status_code == 404
    theirs = await http.get(
        "DocumentReference", params={"type": "http://loinc.org|64290-0"}, headers=bob
    )
    assert theirs.json().get("entry", []) == []
