"""``Patient/[id]/$immunization-record``: every immunization of the patient (date,
vaccine, lot, performer, status) as a PDF (issue 20, "Generated documents"), built from
what the caller's token may read.

The PDF is the answer (``application/pdf``); with ``_format=json`` or an ``Accept`` of
FHIR JSON first, the same PDF as a Binary resource.
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
from fhir_server.operations.base import (
    Context,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
    OperationResult,
)

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
    filename = f"immunization-record-{call.id}.pdf"
    return pdf.answer(pdf.render(document), filename, ctx.header("accept"), ctx.param("_format"))


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "immunization-record",
            CANONICAL,
            "instance",
            resource_types=("Patient",),
            parameters=(OperationParameter("return", "Binary", min=1, use="out"),),
            scopes=("patient/*.rs", "user/*.rs", "system/*.rs"),
            documentation=(
                "The patient's immunization record as a PDF: every immunization with date,"
                " vaccine, lot number, performer and status, with the organisation, the"
                " patient's name and birth date and the generation time; _format=json gives"
                " it as a Binary resource. Built from what the token may read."
            ),
        ),
    ),
    handler=handle,
    media=(pdf.PDF,),
)
