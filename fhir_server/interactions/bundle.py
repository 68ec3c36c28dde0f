"""batch and transaction: ``POST [base]`` with a Bundle,
https://hl7.org/fhir/R4/http.html#transaction and https://hl7.org/fhir/R4/bundle.html

The Bundle's ``type`` picks the interaction: ``batch`` (entries independent, see
``bundle_batch``) or ``transaction`` (all or nothing, see ``bundle_transaction``). The
answer is a ``batch-response`` or ``transaction-response`` Bundle with one entry per
request entry, in the same order.
"""

from __future__ import annotations

from capability.support import support_table
from fhir_server.interactions.bundle_batch import batch
from fhir_server.interactions.bundle_entries import parse_bundle, response_bundle
from fhir_server.interactions.bundle_transaction import transaction
from fhir_server.interactions.context import Context, FhirResponse
from resources.errors import FhirError


async def batch_or_transaction(ctx: Context, body: bytes) -> FhirResponse:
    kind, entries = parse_bundle(body)
    if kind not in support_table().system_interactions:
        raise FhirError(405, "not-supported", f"{kind} is not supported by this server")
    if kind == "batch":
        out = await batch(ctx, entries)
    else:
        out = await transaction(ctx, entries, body)
    return FhirResponse(200, response_bundle(kind, out))
