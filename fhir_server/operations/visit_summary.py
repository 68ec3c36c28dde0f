"""``Encounter/[id]/$visit-summary``: the summary of one visit as a PDF (reason,
diagnoses, vitals and results, medications ordered, notes, follow-up; issue 20,
"Generated documents"), built from what the caller's token may read
(:mod:`fhir_server.documents.visit`); a Binary with ``_format=json``
(:mod:`.pdf_operation`).
"""

from __future__ import annotations

from fhir_server.documents import visit
from fhir_server.operations.base import Context, Invocation, OperationResult
from fhir_server.operations.pdf_operation import pdf_answer, pdf_operation

CANONICAL = "urn:fhir-server:OperationDefinition:Encounter-visit-summary"


async def handle(ctx: Context, call: Invocation) -> OperationResult:
    assert call.id is not None
    summary = await visit.gather(ctx, call.id)
    return pdf_answer(ctx, summary.pdf, f"visit-summary-{call.id}.pdf")


OPERATION = pdf_operation(
    "visit-summary",
    CANONICAL,
    "Encounter",
    handle,
    "The visit summary of the encounter as a PDF: reason, diagnoses, vital signs and"
    " results, medications ordered, notes and follow-up, with the organisation, the"
    " patient's name and birth date and the generation time; _format=json gives it as a"
    " Binary resource. Built from what the token may read.",
)
