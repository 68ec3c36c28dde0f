"""Generated documents (issue 20) through the HTTP API with SMART tokens, on every store:
``Patient/[id]/$summary`` (an IPS document Bundle, or a PDF), ``$immunization-record``
and ``Encounter/[id]/$visit-summary`` (PDFs, checked by their extracted text); a patient
cannot generate another patient's documents, and a document holds only what the token
may read."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import BASE
from tests.test_documents.support import Token, bearer, pdf_text

PDF = "application/pdf"


async def test_summary_is_an_ips_document_bundle(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await http.get("Patient/alice/$summary", headers=alice)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "document"
    assert bundle["timestamp"] and bundle["identifier"]["value"].startswith("urn:uuid:")
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    assert composition["type"]["coding"][0]["code"] == "60591-5"
    assert composition["subject"]["reference"] == f"{BASE}/Patient/alice"
    sections = {s["code"]["coding"][0]["code"]: s for s in composition["section"]}
    assert set(sections) == {"48765-2", "11450-4", "10160-0", "11369-6", "30954-2"}
    assert sections["11450-4"]["entry"] == [{"reference": f"{BASE}/Condition/a-htn"}]
    assert "Hypertensive disorder" in sections["11450-4"]["text"]["div"]
    assert "Penicillin G" in sections["48765-2"]["text"]["div"]
    assert "lisinopril" in sections["10160-0"]["text"]["div"]
    assert "LOT-A-77" in sections["11369-6"]["text"]["div"]
    assert "Hemoglobin A1c" in sections["30954-2"]["text"]["div"]
    ids = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"][1:]}
    assert ("Patient", "alice") in ids and ("Organization", "clinic") in ids
    assert not any(id_.startswith("b-") or id_ == "bob" for _, id_ in ids)
    assert composition["author"][0]["display"] == "Riverside Family Clinic"


@pytest.mark.parametrize("how", [{"_format": "pdf"}, {}])
async def test_summary_as_pdf(
    http: httpx.AsyncClient, alice: dict[str, str], how: dict[str, str]
) -> None:
    headers = alice if how else {**alice, "accept": PDF}
    response = await http.get("Patient/alice/$summary", params=how, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PDF
    text = pdf_text(response.content)
    for expected in (
        "Riverside Family Clinic",
        "International Patient Summary",
        "Alice Smith",
        "1970-05-17",
        "Generated:",
        "Penicillin G",
        "Hypertensive disorder",
        "lisinopril",
        "Hemoglobin A1c",
    ):
        assert expected in text, (expected, text)
    assert "Bob" not in text and "LOT-B-77" not in text


async def test_immunization_record_pdf(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    response = await http.get("Patient/bob/$immunization-record", headers=bob)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PDF
    text = pdf_text(response.content)
    for expected in ("Immunization Record", "Bob Jones", "1965-11-02", "Influenza", "LOT-B-77"):
        assert expected in text, (expected, text)
    assert "Dr. Grey" in text and "2024-10-01" in text
    assert "FHIR Server" in text  # no managingOrganization: FHIR_SERVER_ORGANIZATION_NAME
    as_fhir = await http.post(
        "Patient/bob/$immunization-record",
        headers={**bob, "accept": "application/fhir+json"},
    )
    assert as_fhir.status_code == 200, as_fhir.text
    assert as_fhir.json()["resourceType"] == "Binary"
    assert as_fhir.json()["contentType"] == PDF


async def test_visit_summary_pdf(http: httpx.AsyncClient, alice: dict[str, str]) -> None:
    response = await http.post("Encounter/a-visit/$visit-summary", headers=alice)
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    for expected in (
        "Visit Summary",
        "Riverside Family Clinic",
        "Alice Smith",
        "Encounter for check up",  # reason
        "Hypertensive disorder",  # diagnosis
        "Heart rate",  # vitals
        "72 /min",
        "Hemoglobin A1c",  # results
        "lisinopril",  # medications ordered
        "Follow-up",
    ):
        assert expected in text, (expected, text)


@pytest.mark.parametrize(
    "path",
    [
        "Patient/bob/$summary",
        "Patient/bob/$summary?_format=pdf",
        "Patient/bob/$immunization-record",
        "Encounter/b-visit/$visit-summary",
    ],
)
async def test_a_patient_cannot_generate_another_patients_documents(
    http: httpx.AsyncClient, alice: dict[str, str], path: str
) -> None:
    for method in ("GET", "POST"):
        response = await http.request(method, path, headers=alice)
        assert response.status_code == 404, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
        assert b"Bob" not in response.content


async def test_a_document_holds_only_what_the_token_may_read(
    http: httpx.AsyncClient, token: Token
) -> None:
    narrow = bearer(token("patient/Patient.r patient/Condition.rs", patient="alice"))
    response = await http.get("Patient/alice/$summary", headers=narrow)
    assert response.status_code == 200, response.text
    types = {e["resource"]["resourceType"] for e in response.json()["entry"]}
    assert types == {"Composition", "Patient", "Condition"}
    pdf = await http.get("Patient/alice/$summary", params={"_format": "pdf"}, headers=narrow)
    text = pdf_text(pdf.content)
    assert "Hypertensive disorder" in text and "Penicillin" not in text
