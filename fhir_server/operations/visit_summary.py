"""``Encounter/[id]/$visit-summary``: the summary of one visit as a PDF (reason,
diagnoses, vitals and results, medications ordered, notes, follow-up; issue 20,
"Generated documents"), built from what the caller's token may read
(:mod:`fhir_server.documents.visit`).

The PDF is the answer (``application/pdf``); with ``_format=json`` or an ``Accept`` of
FHIR JSON first, the same PDF as a Binary resource.
"""

from __future__ import annotations

from fhir_server.documents import visit
from fhir_server.documents.pdf import PDF, answer
from fhir_server.operations.base import (
    Context,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
    OperationResult,
)

CANONICAL = "urn:fhir-server:OperationDefinition:Encounter-visit-summary"


async def handle(ctx: Context, call: Invocation) -> OperationResult:
    assert call.id is not None
    summary = await visit.gather(ctx, call.id)
    filename = f"visit-summary-{call.id}.pdf"
    return answer(summary.pdf, filename, ctx.header("accept"), ctx.param("_format"))


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "visit-summary",
            CANONICAL,
            "instance",
            resource_types=("Encounter",),
            parameters=(OperationParameter("return", "Binary", min=1, use="out"),),
            scopes=("patient/*.rs", "user/*.rs", "system/*.rs"),
            documentation=(
                "The visit summary of the encounter as a PDF: reason, diagnoses, vital signs"
                " and results, medications ordered, notes and follow-up, with the"
                " organisation, the patient's name and birth date and the generation time;"
                " _format=json gives it as a Binary resource. Built from what the token may"
                " read."
            ),
        ),
    ),
    handler=handle,
    media=(PDF,),
)
