"""Helpers of the write validator's tests (tests/test_validation*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resources.errors import Issue
from resources.fhir_json import loads
from resources.validation import validate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / ".cache" / "r4-examples" / "package"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ISSUE_CODES = {"structure", "value", "required", "code-invalid", "invalid"}

PORTAL_TYPES = [
    "Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Appointment",
    "Slot", "Schedule", "Encounter", "Observation", "DiagnosticReport", "Condition",
    "AllergyIntolerance", "Immunization", "Procedure", "CarePlan", "MedicationRequest",
    "Medication", "Communication", "Invoice", "Account", "Coverage", "DocumentReference",
    "RelatedPerson", "Consent", "Task",
]  # fmt: skip

# Official R4 examples that are genuinely invalid, with the reason: KNOWN_INVALID. None of
# them is of a PORTAL_TYPES or R4_ONLY_TYPES type: every example of those types is valid.


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def observation(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **elements}


def parsed(text: str) -> dict[str, Any]:
    return loads(text)


def only(resource: Any) -> Issue:
    issues = validate(resource)
    assert len(issues) == 1, issues
    return issues[0]


def problem(resource: Any) -> tuple[str, str]:
    """(code, expression) of the only issue of a resource."""
    issue = only(resource)
    return issue.code, issue.expression[0] if issue.expression else ""


def ext(**value: Any) -> dict[str, Any]:
    return {"url": "http://example.org/ext", **value}
