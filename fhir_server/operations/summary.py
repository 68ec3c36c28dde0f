"""``Patient/[id]/$summary``: the International Patient Summary
(https://hl7.org/fhir/uv/ips/OperationDefinition-summary.html), as a ``document`` Bundle
(:mod:`fhir_server.documents.ips`), or as a PDF with ``Accept: application/pdf`` or
``_format=pdf`` (issue 20, "Generated documents").

Built from what the caller's token may read (``ctx.store`` is its guarded store): a
patient-context token summarises its own patient only (another patient is ``404``).
"""

from __future__ import annotations

from fhir_server.documents import ips
from fhir_server.documents.pdf import PDF, pdf_response, wants_pdf
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
    OperationResult,
)

CANONICAL = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"


async def handle(ctx: Context, call: Invocation) -> OperationResult:
    assert call.id is not None
    summary = await ips.gather(ctx, call.id)
    if wants_pdf(ctx.header("accept"), ctx.param("_format")):
        return pdf_response(ips.summary_pdf(summary), f"patient-summary-{call.id}.pdf")
    return FhirResponse(200, ips.document_bundle(ctx, summary))


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "summary",
            CANONICAL,
            "instance",
            resource_types=("Patient",),
            parameters=(
                OperationParameter(
                    "_format", "string", documentation="pdf: the summary rendered as a PDF"
                ),
                OperationParameter("return", "Bundle", min=1, use="out"),
            ),
            scopes=("patient/*.rs", "user/*.rs", "system/*.rs"),
            documentation=(
                "The International Patient Summary of the patient: a document Bundle whose"
                " Composition has the sections allergies, problems, medications,"
                " immunizations and results, each with narrative; Accept: application/pdf"
                " or _format=pdf renders it as a PDF. Built from what the token may read."
            ),
        ),
    ),
    handler=handle,
    media=(PDF,),
)
