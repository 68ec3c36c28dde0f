"""Message attachments (issue 19): a Binary uploaded as raw bytes or as FHIR JSON with
``securityContext`` = the patient, checked at upload (content type allow-list: 415;
FHIR_SERVER_ATTACHMENT_MAX_BYTES on the decoded bytes: 413), sent as
``payload.contentAttachment.url``, readable by the patient, their caregiver and staff and
never by another patient."""

from __future__ import annotations

import base64

import httpx

from tests.test_messaging.conftest import ATTACHMENT_LIMIT
from tests.test_messaging.support import People, message, send

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _raw(content_type: str, patient: str = "Patient/alice") -> dict[str, str]:
    return {"content-type": content_type, "x-security-context": patient}


async def _binaries(http: httpx.AsyncClient, people: People) -> int:
    response = await http.get("Binary?_summary=count", headers=people.admin)
    return int(response.json()["total"])


async def test_an_attachment_as_raw_bytes(http: httpx.AsyncClient, people: People) -> None:
    upload = await http.post("Binary", content=PNG, headers={**people.alice, **_raw("image/png")})
    assert upload.status_code == 201, upload.text
    binary = upload.json()
    assert binary["contentType"] == "image/png"
    assert binary["securityContext"] == {"reference": "Patient/alice"}
    assert base64.b64decode(binary["data"]) == PNG
    body = message("Patient/alice", ["Practitioner/dr"], "Here is the photo")
    body["payload"].append(
        {"contentAttachment": {"contentType": "image/png", "url": f"Binary/{binary['id']}"}}
    )
    await send(http, people.alice, body)
    path = f"Binary/{binary['id']}"
    for who in (people.alice, people.mum, people.dr):
        assert (await http.get(path, headers=who)).status_code == 200
    assert (await http.get(path, headers=people.bob)).status_code == 404
    found = await http.get("Binary", headers=people.bob)
    assert found.json().get("entry") is None
    # the file of a sent message does not change
    headers = {**people.alice, **_raw("image/png")}
    assert (await http.put(path, content=b"\x89PNG other", headers=headers)).status_code == 403
    assert (await http.delete(path, headers=people.alice)).status_code == 403
    unchanged = (await http.get(path, headers=people.dr)).json()
    assert base64.b64decode(unchanged["data"]) == PNG


async def test_an_attachment_as_fhir_json(http: httpx.AsyncClient, people: People) -> None:
    binary = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": "Patient/alice"},
        "data": base64.b64encode(b"%PDF-1.4 letter").decode(),
    }
    response = await http.post("Binary", json=binary, headers=people.mum)
    assert response.status_code == 201, response.text
    # not into another patient's record
    bobs = {**binary, "securityContext": {"reference": "Patient/bob"}}
    assert (await http.post("Binary", json=bobs, headers=people.alice)).status_code == 403


async def test_what_is_not_accepted(http: httpx.AsyncClient, people: People) -> None:
    for content_type in ("application/zip", "text/html", "application/x-msdownload"):
        headers = {**people.alice, **_raw(content_type)}
        response = await http.post("Binary", content=b"MZ...", headers=headers)
        assert response.status_code == 415, (content_type, response.text)
    limit = ATTACHMENT_LIMIT
    at_limit = await http.post(
        "Binary", content=b"a" * limit, headers={**people.alice, **_raw("text/plain")}
    )
    assert at_limit.status_code == 201
    too_big = await http.post(
        "Binary", content=b"a" * (limit + 1), headers={**people.alice, **_raw("text/plain")}
    )
    assert too_big.status_code == 413
    assert "FHIR_SERVER_ATTACHMENT_MAX_BYTES" in too_big.text
    as_json = {
        "resourceType": "Binary",
        "contentType": "image/jpeg",
        "securityContext": {"reference": "Patient/alice"},
        "data": base64.b64encode(b"j" * (limit + 1)).decode(),
    }
    assert (await http.post("Binary", json=as_json, headers=people.dr)).status_code == 413
    assert await _binaries(http, people) == 1
