"""The visit summary of one Encounter (issue 20, "Generated documents"): reason,
diagnoses, vitals and results, medications ordered, notes and follow-up, as a PDF.

Read through the caller's store (:mod:`.record`): what the token may not read is not in
it. Also filed automatically as a DocumentReference when an Encounter is finished
(``FHIR_SERVER_AUTO_VISIT_SUMMARY=on``, :mod:`fhir_server.documents.auto_visit`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from fhir_server.documents import pdf
from fhir_server.documents.record import (
    concept_text,
    day,
    human_name,
    now_text,
    organization_name,
    quantity_text,
    read,
    read_required,
    reference_text,
    search,
    when,
)
from fhir_server.documents.uploads import media_type
from fhir_server.interactions.context import Context

VISIT_SUMMARY_TYPE = {
    "coding": [
        {"system": "http://loinc.org", "code": "34133-9", "display": "Summary of episode note"}
    ],
    "text": "Visit summary",
}
"""``DocumentReference.type`` of a filed visit summary (left out of the notes of the
next one)."""
_NOTE_CHARS = 4000


@dataclass
class Visit:
    encounter: dict[str, Any]
    patient: dict[str, Any]
    pdf: bytes


def _category(resource: dict[str, Any]) -> set[str]:
    return {
        str(coding.get("code"))
        for concept in resource.get("category", [])
        if isinstance(concept, dict)
        for coding in concept.get("coding", [])
        if isinstance(coding, dict)
    }


async def _diagnoses(ctx: Context, encounter: dict[str, Any], by_encounter: list) -> list[str]:
    found: dict[str, str] = {}
    for diagnosis in encounter.get("diagnosis", []):
        reference = (diagnosis.get("condition") or {}).get("reference", "")
        if isinstance(reference, str) and reference.startswith("Condition/"):
            condition = await read(ctx, "Condition", reference.split("/", 1)[1])
            text = concept_text((condition or {}).get("code"))
            found[reference] = text or reference_text(diagnosis.get("condition"))
    for condition in by_encounter:
        found.setdefault(f"Condition/{condition['id']}", concept_text(condition.get("code")))
    return [text for text in found.values() if text]


async def _note_text(ctx: Context, document: dict[str, Any]) -> str:
    texts = [str(document["description"])] if document.get("description") else []
    for content in document.get("content", []):
        attachment = content.get("attachment") or {}
        if media_type(attachment.get("contentType")) != "text/plain":
            continue
        data = attachment.get("data")
        url = attachment.get("url")
        if data is None and isinstance(url, str) and url.startswith("Binary/"):
            data = (await read(ctx, "Binary", url.split("/", 1)[1]) or {}).get("data")
        if isinstance(data, str):
            try:
                texts.append(base64.b64decode(data).decode("utf-8", "replace")[:_NOTE_CHARS])
            except (binascii.Error, ValueError):
                continue
    return "\n".join(texts)


async def gather(ctx: Context, encounter_id: str) -> Visit:
    """The visit summary of ``Encounter/encounter_id`` as the caller may read it."""
    encounter = await read_required(ctx, "Encounter", encounter_id)
    subject = (encounter.get("subject") or {}).get("reference", "")
    patient: dict[str, Any] = {}
    if isinstance(subject, str) and subject.startswith("Patient/"):
        patient = await read(ctx, "Patient", subject.split("/", 1)[1]) or {}
    here = [("encounter", f"Encounter/{encounter_id}")]
    conditions = await search(ctx, "Condition", here)
    observations = await search(ctx, "Observation", here)
    orders = await search(ctx, "MedicationRequest", here)
    documents = await search(ctx, "DocumentReference", here)
    referrals = await search(ctx, "ServiceRequest", here)
    end = when(encounter.get("period") or {}, "end", "start")
    follow_ups: list[dict[str, Any]] = []
    if patient and end:
        follow_ups = await search(
            ctx,
            "Appointment",
            [
                ("patient", f"Patient/{patient['id']}"),
                ("date", f"ge{end}"),
                ("status", "proposed,pending,booked"),
                ("_sort", "date"),
            ],
            count=20,
        )
    reasons = [concept_text(c) for c in encounter.get("reasonCode", [])]
    reasons += [reference_text(r) for r in encounter.get("reasonReference", [])]
    vitals = [o for o in observations if "vital-signs" in _category(o)]
    results = [o for o in observations if "vital-signs" not in _category(o)]
    notes = [
        await _note_text(ctx, d)
        for d in documents
        if d.get("type", {}).get("coding") != VISIT_SUMMARY_TYPE["coding"]
    ]
    period = encounter.get("period") or {}
    visit_line = f"Visit: {day(when(period, 'start'))}"
    if encounter.get("status"):
        visit_line += f" ({encounter['status']})"

    def observation_rows(items: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                concept_text(o.get("code")),
                quantity_text(o),
                day(when(o, "effectiveDateTime", "effectivePeriod", "issued")),
            ]
            for o in sorted(items, key=lambda o: concept_text(o.get("code")))
        ]

    sections = [
        pdf.Section("Reason for visit", paragraphs=[r for r in reasons if r]),
        pdf.Section("Diagnoses", paragraphs=await _diagnoses(ctx, encounter, conditions)),
        pdf.Section("Vital signs", ("Measurement", "Value", "Date"), observation_rows(vitals)),
        pdf.Section("Results", ("Test", "Value", "Date"), observation_rows(results)),
        pdf.Section(
            "Medications ordered",
            ("Medication", "Instructions", "Status"),
            [
                [
                    concept_text(m.get("medicationCodeableConcept"))
                    or reference_text(m.get("medicationReference")),
                    "; ".join(str(d.get("text", "")) for d in m.get("dosageInstruction", [])),
                    str(m.get("status", "")),
                ]
                for m in orders
            ],
        ),
        pdf.Section("Notes", paragraphs=[n for n in notes if n]),
        pdf.Section(
            "Follow-up",
            paragraphs=[
                f"Appointment {when(a, 'start')[:16].replace('T', ' ')}"
                f" {a.get('description') or concept_text((a.get('serviceType') or [{}])[0])}"
                f" ({a.get('status')})".replace("  ", " ")
                for a in follow_ups
            ]
            + [
                f"Referral: {concept_text(r.get('code'))} ({r.get('status', '')})"
                for r in referrals
            ],
            empty="No follow-up recorded.",
        ),
    ]
    document = pdf.Document(
        title="Visit Summary",
        organization=await organization_name(ctx, patient),
        patient_name=human_name(patient),
        birth_date=str(patient.get("birthDate", "")),
        generated=now_text(),
        sections=sections,
        subtitle=visit_line,
    )
    return Visit(encounter, patient, pdf.render(document))
