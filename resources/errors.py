"""FHIR errors and their OperationOutcome form.

Every error the server reports is an OperationOutcome with an HTTP status and an issue
type code: https://hl7.org/fhir/R4/operationoutcome.html and
https://hl7.org/fhir/R4/valueset-issue-type.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """Build an OperationOutcome resource from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error with an HTTP status that becomes an OperationOutcome."""

    status: int
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)
        if not self.issues:
            self.issues = [Issue(self.code, self.diagnostics, expression=self.expression)]

    @classmethod
    def from_issues(cls, status: int, issues: list[Issue]) -> FhirError:
        first = issues[0]
        return cls(status, first.code, first.diagnostics, first.expression, list(issues))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def invalid(diagnostics: str, *expression: str) -> FhirError:
    """400 with issue type `invalid` (bad syntax or content)."""
    return FhirError(400, "invalid", diagnostics, tuple(expression))


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, "not-found", diagnostics)


def gone(diagnostics: str) -> FhirError:
    return FhirError(410, "deleted", diagnostics)


def conflict(diagnostics: str) -> FhirError:
    return FhirError(409, "conflict", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return FhirError(412, "conflict", diagnostics)


def not_supported(diagnostics: str, status: int = 400) -> FhirError:
    return FhirError(status, "not-supported", diagnostics)
