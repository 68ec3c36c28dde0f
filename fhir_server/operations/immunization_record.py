"""``Patient/[id]/$immunization-record``: every immunization of the patient (date,
vaccine, lot, performer, status) as a PDF (issue 20, "Generated documents"), built from
what the caller's token may read; a Binary with ``_format=json`` (:mod:`.pdf_operation`).
"""

from __future__ import annotations

from fhir_server.documents import pdf
from fhir_server.documents.ips import immunization_rows
from fhir_server.documents.record import (
    human_name,
    newest_first,
    now_text,
    organization_name,
    read_required,
    search,
)
from fhir_server.operations.base import Context, Invocation, OperationResult
from fhir_server.operations.pdf_operation import pdf_answer, pdf_operation

CANONICAL = "urn:fhir-server:OperationDefinition:Patient-immunization-record"


async def handle(ctx: Context, call: Invocation) -> OperationResult:
    assert call.id is not None
    patient = await read_required(ctx, "Patient", call.id)
    immunizations = await search(ctx, "Immunization", [("patient", f"Patient/{call.id}")])
    rows = immunization_rows(newest_first(immunizations, "occurrenceDateTime"))
    document = pdf.Document(
        title="Immunization Record",
        organization=await organization_name(ctx, patient),
        patient_name=human_name(patient),
        birth_date=str(patient.get("birthDate", "")),
        generated=now_text(),
        sections=[
            pdf.Section(
                "Immunizations",
                ("Date", "Vaccine", "Lot", "Performer", "Status"),
                rows,
                widths=(22, 70, 25, 45, 18),
                empty="No immunizations recorded.",
            )
        ],
    )
    return pdf_answer(ctx, pdf.render(document), f"immunization-record-{call.id}.pdf")


OPERATION = pdf_operation(
    "immunization-record",
    CANONICAL,
    "Patient",
    handle,
    "The patient's immunization record as a PDF: every immunization with date, vaccine, lot"
    " number, performer and status, with the organisation, the patient's name and birth"
    " date and the generation time; _format=json gives it as a Binary resource. Built from"
    " what the token may read.",
)
