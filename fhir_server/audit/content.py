"""What a response disclosed, found by scanning its bytes: the resources of a Bundle (by
``fullUrl``) or the resource read, each with the patients whose data it is (the
``Patient`` it is, and every ``Patient`` it refers to, as
``resources.compartments.patient_references`` counts them).

A scan with one regular expression over the bytes the server sent (no parsing into
objects): ~1 us a KB, so auditing what a search returned costs little next to the search.
A search's ``fullUrl`` comes first in each entry (``fhir_server.interactions.search``
builds entries that way), so the references after it until the next ``fullUrl`` are that
entry's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fhir_server.audit.balp import Touched
from resources import fhir_json
from resources.search.index.reference import parse_reference

_KEYS = re.compile(rb'"(fullUrl|reference)":"([^"]*)"')
"""The server writes JSON without spaces (orjson, and stored bytes as sent by orjson)."""
_PATIENT = "Patient"


def resource_touched(reference: str, body: bytes | None) -> Touched:
    """A resource that was read (``Type/id`` or ``Type/id/_history/v``) and the patients
    in its content."""
    type_, id_ = reference.split("/")[:2]
    patients: dict[str, None] = {}
    if type_ == _PATIENT:
        patients[f"{_PATIENT}/{id_}"] = None
    if body:
        for kind, value in _KEYS.findall(body):
            if kind == b"reference":
                _add_patient(patients, value)
    return Touched(reference, tuple(patients))


def bundle_touched(body: bytes | None) -> list[Touched]:
    """The resources of a Bundle's entries (those with a RESTful ``fullUrl``) and the
    patients of each."""
    if not body:
        return []
    found: list[Touched] = []
    current: str | None = None
    patients: dict[str, None] = {}
    for kind, value in _KEYS.findall(body):
        if kind == b"fullUrl":
            if current is not None:
                found.append(Touched(current, tuple(patients)))
            current, patients = _entry(value), {}
            if current is not None and current.startswith(_PATIENT + "/"):
                patients[current] = None
        elif current is not None:
            _add_patient(patients, value)
    if current is not None:
        found.append(Touched(current, tuple(patients)))
    return found


def _entry(full_url: bytes) -> str | None:
    type_, id_, _, _ = parse_reference(full_url.decode("utf-8", "replace"))
    return f"{type_}/{id_}" if type_ is not None and id_ is not None else None


def _add_patient(patients: dict[str, None], value: bytes) -> None:
    if b"Patient" not in value:
        return
    type_, id_, _, _ = parse_reference(value.decode("utf-8", "replace"))
    if type_ == _PATIENT and id_:
        patients[f"{_PATIENT}/{id_}"] = None


def patients_in(type_: str, id_: str, content: bytes | None) -> tuple[str, ...]:
    """The patients whose data a stored version is (itself for a Patient, and the
    patients it refers to)."""
    return resource_touched(f"{type_}/{id_}", content).patients


def failure_text(body: bytes | None) -> str | None:
    """The first diagnostics of an OperationOutcome body (what the caller was told)."""
    if not body:
        return None
    try:
        outcome = fhir_json.loads(body)
    except Exception:
        return None
    if not isinstance(outcome, dict):
        return None
    issues: Iterable[object] = outcome.get("issue") or ()
    for issue in issues:
        if isinstance(issue, dict) and isinstance(issue.get("diagnostics"), str):
            return issue["diagnostics"][:1000]
    return None
