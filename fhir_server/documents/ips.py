"""The International Patient Summary (https://hl7.org/fhir/uv/ips/): a ``document``
Bundle whose first entry is a Composition (LOINC 60591-5, "Patient summary Document")
with the sections of allergies, problems, medications, immunizations and results, each
with its narrative and its entries, followed by the Patient and every resource the
sections list (https://hl7.org/fhir/R4/documents.html).

The record is read through the caller's store (:mod:`.record`): a section holds what
the token may read, and a section with nothing says so (``emptyReason``).
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.documents import pdf
from fhir_server.documents.record import (
    concept_text,
    day,
    human_name,
    newest_first,
    now_text,
    organization_name,
    quantity_text,
    read,
    read_required,
    reference_text,
    search,
    when,
)
from fhir_server.interactions.context import Context

LOINC = "http://loinc.org"
RESULTS_LISTED = 50
"""The newest laboratory results a summary lists."""


@dataclass
class PatientSummary:
    """What a summary is made of."""

    patient: dict[str, Any]
    organization: str
    organization_resource: dict[str, Any] | None
    allergies: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    medications: list[dict[str, Any]]
    immunizations: list[dict[str, Any]]
    results: list[dict[str, Any]]
    generated: str


async def gather(ctx: Context, patient_id: str) -> PatientSummary:
    """The patient's summary as the caller may read it (``404`` for a patient it may not
    read)."""
    patient = await read_required(ctx, "Patient", patient_id)
    subject = [("patient", f"Patient/{patient_id}")]
    allergies = await search(ctx, "AllergyIntolerance", subject)
    problems = await search(
        ctx, "Condition", [*subject, ("clinical-status", "active,recurrence,relapse")]
    )
    requests = await search(ctx, "MedicationRequest", [*subject, ("status", "active")])
    statements = await search(ctx, "MedicationStatement", [*subject, ("status", "active")])
    immunizations = await search(ctx, "Immunization", subject)
    results = await search(
        ctx,
        "Observation",
        [*subject, ("category", "laboratory"), ("_sort", "-date")],
        count=RESULTS_LISTED,
    )
    managing = (patient.get("managingOrganization") or {}).get("reference", "")
    org = None
    if isinstance(managing, str) and managing.startswith("Organization/"):
        org = await read(ctx, "Organization", managing.split("/", 1)[1])
    return PatientSummary(
        patient=patient,
        organization=await organization_name(ctx, patient),
        organization_resource=org,
        allergies=[a for a in allergies if a.get("verificationStatus") != "entered-in-error"],
        problems=problems,
        medications=requests + statements,
        immunizations=newest_first(immunizations, "occurrenceDateTime"),
        results=results,
        generated=now_text(),
    )


# -- the rows of each section (shared by the narrative and the PDF) ----------------------


def _allergy_rows(s: PatientSummary) -> list[list[str]]:
    return [
        [
            concept_text(a.get("code")),
            ", ".join(a.get("category", [])) if isinstance(a.get("category"), list) else "",
            str(a.get("criticality", "")),
            "; ".join(
                concept_text(m)
                for r in a.get("reaction", [])
                for m in (r.get("manifestation") or [])
            ),
        ]
        for a in s.allergies
    ]


def _problem_rows(s: PatientSummary) -> list[list[str]]:
    return [
        [
            concept_text(c.get("code")),
            concept_text(c.get("clinicalStatus")),
            day(when(c, "onsetDateTime", "onsetPeriod", "recordedDate")),
        ]
        for c in s.problems
    ]


def _medication_rows(s: PatientSummary) -> list[list[str]]:
    rows = []
    for m in s.medications:
        medication = concept_text(m.get("medicationCodeableConcept")) or reference_text(
            m.get("medicationReference")
        )
        dosage = "; ".join(
            str(d.get("text")) for d in m.get("dosageInstruction", m.get("dosage", [])) if d
        )
        rows.append([medication, dosage, day(when(m, "authoredOn", "effectiveDateTime"))])
    return rows


def immunization_rows(immunizations: list[dict[str, Any]]) -> list[list[str]]:
    """Date, vaccine, lot and performer of each immunization."""
    return [
        [
            day(when(i, "occurrenceDateTime")) or str(i.get("occurrenceString", "")),
            concept_text(i.get("vaccineCode")),
            str(i.get("lotNumber", "")),
            ", ".join(reference_text(p.get("actor")) for p in i.get("performer", [])),
            str(i.get("status", "")),
        ]
        for i in immunizations
    ]


def result_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Date, test, value and interpretation of each result."""
    return [
        [
            day(when(o, "effectiveDateTime", "effectivePeriod", "issued")),
            concept_text(o.get("code")),
            quantity_text(o),
            "; ".join(concept_text(i) for i in o.get("interpretation", [])),
        ]
        for o in results
    ]


_SECTIONS = (
    # key, title, LOINC code, LOINC display, columns, rows
    ("allergies", "Allergies and Intolerances", "48765-2", "Allergies and adverse reactions"),
    ("problems", "Problem List", "11450-4", "Problem list - Reported"),
    ("medications", "Medication Summary", "10160-0", "History of Medication use Narrative"),
    ("immunizations", "Immunizations", "11369-6", "History of Immunization Narrative"),
    ("results", "Results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative"),
)
_COLUMNS = {
    "allergies": ("Substance", "Category", "Criticality", "Reactions"),
    "problems": ("Problem", "Status", "Onset"),
    "medications": ("Medication", "Instructions", "Since"),
    "immunizations": ("Date", "Vaccine", "Lot", "Performer", "Status"),
    "results": ("Date", "Test", "Value", "Interpretation"),
}


def _rows(s: PatientSummary, key: str) -> list[list[str]]:
    if key == "allergies":
        return _allergy_rows(s)
    if key == "problems":
        return _problem_rows(s)
    if key == "medications":
        return _medication_rows(s)
    if key == "immunizations":
        return immunization_rows(s.immunizations)
    return result_rows(s.results)


# -- the document Bundle ------------------------------------------------------------------


def _narrative(columns: tuple[str, ...], rows: list[list[str]]) -> dict[str, Any]:
    if not rows:
        div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>None recorded.</p></div>'
    else:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows
        )
        div = (
            '<div xmlns="http://www.w3.org/1999/xhtml"><table>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
    return {"status": "generated", "div": div}


def document_bundle(ctx: Context, s: PatientSummary) -> dict[str, Any]:
    """The IPS ``document`` Bundle of ``s``."""
    patient = s.patient
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    author: dict[str, Any] = {"display": s.organization}
    if s.organization_resource is not None:
        org = s.organization_resource
        author = {"reference": ctx.url("Organization", org["id"]), "display": s.organization}
    sections = []
    listed: list[dict[str, Any]] = []
    for key, title, code, display in _SECTIONS:
        resources: list[dict[str, Any]] = getattr(s, key)
        section: dict[str, Any] = {
            "title": title,
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "text": _narrative(_COLUMNS[key], _rows(s, key)),
        }
        if resources:
            urls = [ctx.url(r["resourceType"], r["id"]) for r in resources]
            section["entry"] = [{"reference": url} for url in urls]
            listed += resources
        else:
            section["emptyReason"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                        "code": "unavailable",
                        "display": "Unavailable",
                    }
                ]
            }
        sections.append(section)
    name = human_name(patient)
    composition_id = str(uuid.uuid4())
    composition = {
        "resourceType": "Composition",
        "id": composition_id,
        "status": "final",
        "type": {
            "coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]
        },
        "subject": {"reference": ctx.url("Patient", patient["id"]), "display": name},
        "date": now,
        "author": [author],
        "title": f"International Patient Summary of {name}".strip(),
        "confidentiality": "N",
        "custodian": author,
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>'
            + html.escape(
                f"Patient summary of {name}, born {patient.get('birthDate', 'unknown')},"
                f" by {s.organization}, generated {s.generated}."
            )
            + "</p></div>",
        },
        "section": sections,
    }
    entries = [composition, patient]
    if s.organization_resource is not None:
        entries.append(s.organization_resource)
    entries += listed
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": now,
        "entry": [
            {
                "fullUrl": ctx.url(r["resourceType"], r["id"])
                if r is not composition
                else f"urn:uuid:{composition_id}",
                "resource": r,
            }
            for r in entries
        ],
    }


def summary_pdf(s: PatientSummary) -> bytes:
    """The summary as a PDF."""
    sections = [pdf.Section(title, _COLUMNS[key], _rows(s, key)) for key, title, _, _ in _SECTIONS]
    document = pdf.Document(
        title="International Patient Summary",
        organization=s.organization,
        patient_name=human_name(s.patient),
        birth_date=str(s.patient.get("birthDate", "")),
        generated=s.generated,
        sections=sections,
    )
    return pdf.render(document)
