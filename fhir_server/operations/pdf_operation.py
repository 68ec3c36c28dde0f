"""What the instance operations that answer a generated PDF share
(``Patient/[id]/$immunization-record``, ``Encounter/[id]/$visit-summary``; issue 20,
"Generated documents"): the declaration and the answer.

The PDF is the answer (``application/pdf``); with ``_format=json`` or an ``Accept`` of
FHIR JSON first, the same PDF as a Binary resource. The document is built from what the
caller's token may read (``ctx.store``), so any token that reads may ask.
"""

from __future__ import annotations

from fhir_server.documents.pdf import PDF, answer
from fhir_server.operations.base import (
    Context,
    Operation,
    OperationDefinition,
    OperationHandler,
    OperationParameter,
    OperationResult,
)

READ_SCOPES = ("patient/*.rs", "user/*.rs", "system/*.rs")


def pdf_answer(ctx: Context, data: bytes, filename: str) -> OperationResult:
    """The PDF ``data`` as the answer, or as a Binary resource when FHIR JSON is asked."""
    return answer(data, filename, ctx.header("accept"), ctx.param("_format"))


def pdf_operation(
    name: str, canonical: str, resource_type: str, handler: OperationHandler, documentation: str
) -> Operation:
    """The declaration of ``[resource_type]/[id]/$name``, which answers a PDF (a Binary
    with ``_format=json``)."""
    return Operation(
        definitions=(
            OperationDefinition(
                name,
                canonical,
                "instance",
                resource_types=(resource_type,),
                parameters=(OperationParameter("return", "Binary", min=1, use="out"),),
                scopes=READ_SCOPES,
                documentation=documentation,
            ),
        ),
        handler=handler,
        media=(PDF,),
    )
