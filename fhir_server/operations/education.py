"""``Patient/[id]/$education``: educational resources tailored to the patient's
conditions (issue 20, "Education"): a ``collection`` Bundle of the patient-education
DocumentReferences (:mod:`fhir_server.documents.catalogue`) whose codes (SNOMED CT,
ICD-10-CM, RxNorm) match the patient's active Conditions and current medications (an
active or on-hold MedicationRequest, an active or intended MedicationStatement). No
match is an empty Bundle.

The patient's Conditions and medications are read through the caller's store (what the
token may read; another patient is ``404``). The catalogue is public reading material,
not patient data: it is read from the store under the access checks, so a patient token
gets the entries although it may not search DocumentReferences that are nobody's.
"""

from __future__ import annotations

from typing import Any

from fhir_server.access import GuardedStore
from fhir_server.documents.catalogue import MAX_ENTRIES, catalogue_query, matching
from fhir_server.documents.record import read, read_required, search
from fhir_server.interactions.context import bundle_id
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
)
from fhir_server.storage.base import now_instant
from resources import fhir_json

CANONICAL = "urn:fhir-server:OperationDefinition:Patient-education"


def _codes(concept: Any) -> set[tuple[str, str]]:
    if not isinstance(concept, dict):
        return set()
    codings = [c for c in concept.get("coding", []) if isinstance(c, dict)]
    return {
        (c["system"], c["code"])
        for c in codings
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
    }


async def patient_codes(ctx: Context, patient_id: str) -> set[tuple[str, str]]:
    """The codes of the patient's active Conditions and current medications."""
    subject = [("patient", f"Patient/{patient_id}")]
    codes: set[tuple[str, str]] = set()
    conditions = await search(
        ctx, "Condition", [*subject, ("clinical-status", "active,recurrence,relapse")]
    )
    for condition in conditions:
        codes |= _codes(condition.get("code"))
    medications = await search(ctx, "MedicationRequest", [*subject, ("status", "active,on-hold")])
    medications += await search(
        ctx, "MedicationStatement", [*subject, ("status", "active,intended")]
    )
    for medication in medications:
        codes |= _codes(medication.get("medicationCodeableConcept"))
        reference = (medication.get("medicationReference") or {}).get("reference", "")
        if isinstance(reference, str) and reference.startswith("Medication/"):
            found = await read(ctx, "Medication", reference.split("/", 1)[1])
            codes |= _codes((found or {}).get("code"))
    return codes


async def catalogue(ctx: Context) -> list[dict[str, Any]]:
    """Every catalogue entry (see the module on why unguarded)."""
    store: Any = ctx.store
    while isinstance(store, GuardedStore):
        store = store.inner
    page = await store.search(catalogue_query(), None, MAX_ENTRIES, False)
    return [fhir_json.loads(s.content) for s in page.entries if s.content is not None]


async def handle(ctx: Context, call: Invocation) -> FhirResponse:
    assert call.id is not None
    await read_required(ctx, "Patient", call.id)
    codes = await patient_codes(ctx, call.id)
    found = matching(await catalogue(ctx), codes) if codes else []
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "collection",
    }
    if found:
        bundle["entry"] = [
            {"fullUrl": ctx.url("DocumentReference", r["id"]), "resource": r} for r in found
        ]
    return FhirResponse(200, bundle)


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "education",
            CANONICAL,
            "instance",
            resource_types=("Patient",),
            parameters=(OperationParameter("return", "Bundle", min=1, use="out"),),
            scopes=("patient/*.rs", "user/*.rs", "system/*.rs"),
            documentation=(
                "Educational resources tailored to the patient: a collection Bundle of the"
                " patient-education DocumentReferences (category SNOMED CT 311401005; title,"
                " short text, link) whose codes (SNOMED CT, ICD-10-CM with its subcodes,"
                " RxNorm) match the patient's active Conditions and current medications;"
                " empty when nothing matches."
            ),
        ),
    ),
    handler=handle,
)
