"""What a response disclosed, found in its bytes: the resource read and the patients
whose data it is (the ``Patient`` it is, and every ``Patient`` it refers to, as
``resources.compartments.patient_references`` counts them), or the patients whose data a
Bundle holds (searches, history, operations: its Patient entries and the Patients its
resources refer to; BALP's query event names the patients and the query, not each
resource).

No parsing into objects: ``bytes.find`` from each occurrence of ``Patient/`` (a few per
resource), checking that it stands in a ``reference`` or a ``fullUrl`` (the server writes
JSON without spaces: orjson, and stored bytes are orjson's too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fhir_server.audit.balp import Touched
from resources import fhir_json
from resources.definitions import RESOURCE_TYPES
from resources.search.index.reference import parse_reference

_PATIENT = "Patient"
_NEEDLE = b"Patient/"
_REFERENCE_KEY = b'"reference":"'
_FULL_URL_KEY = b'"fullUrl":"'


def resource_touched(reference: str, body: bytes | None) -> Touched:
    """A resource that was read (``Type/id`` or ``Type/id/_history/v``) and the patients
    in its content."""
    type_, id_ = reference.split("/")[:2]
    patients: dict[str, None] = {}
    if type_ == _PATIENT:
        patients[f"{_PATIENT}/{id_}"] = None
    if body:
        for _, patient in _patient_references(body):
            patients[patient] = None
    return Touched(reference, tuple(patients))


def bundle_patients(body: bytes | None) -> tuple[str, ...]:
    """The patients whose data a Bundle holds: its Patient entries and every Patient its
    resources refer to (what BALP's query event names; the resources are not listed)."""
    if not body:
        return ()
    found: dict[str, None] = {}
    at = body.find(_NEEDLE)
    while at >= 0:
        quote = body.rfind(b'"', 0, at)
        end = body.find(b'"', at)
        if end < 0:
            break
        if body.startswith(_REFERENCE_KEY, quote - len(_REFERENCE_KEY) + 1):
            patient = _patient(body[quote + 1 : end])
        elif body.startswith(_FULL_URL_KEY, quote - len(_FULL_URL_KEY) + 1):
            entry = _entry(body[quote + 1 : end])
            patient = entry if entry is not None and entry.startswith(_PATIENT + "/") else None
        else:
            patient = None
        if patient is not None:
            found[patient] = None
        at = body.find(_NEEDLE, end)
    return tuple(found)


def _patient_references(body: bytes) -> list[tuple[int, str]]:
    """(position, ``Patient/id``) of every Reference.reference to a Patient: found from
    the occurrences of ``Patient/`` (few) rather than of every reference."""
    found = []
    at = body.find(_NEEDLE)
    while at >= 0:
        quote = body.rfind(b'"', 0, at)
        end = body.find(b'"', at)
        if end < 0:
            break
        key_start = quote - len(_REFERENCE_KEY) + 1
        if key_start >= 0 and body.startswith(_REFERENCE_KEY, key_start):
            patient = _patient(body[quote + 1 : end])
            if patient is not None:
                found.append((key_start, patient))
        at = body.find(_NEEDLE, end)
    return found


def _patient(value: bytes) -> str | None:
    """``Patient/id`` of a reference to a Patient (relative, the usual case, at once)."""
    if value.startswith(_NEEDLE) and value.count(b"/") == 1 and _ID(value, 8):
        return value.decode("ascii")
    type_, id_, _, _ = parse_reference(value.decode("utf-8", "replace"))
    return f"{_PATIENT}/{id_}" if type_ == _PATIENT and id_ else None


def _entry(full_url: bytes) -> str | None:
    """``Type/id`` of an entry's ``fullUrl`` (the server writes ``[base]/Type/id``)."""
    parts = full_url.rsplit(b"/", 2)
    if len(parts) == 3 and parts[1] in _TYPES and _ID(parts[2]):
        return (parts[1] + b"/" + parts[2]).decode("ascii")
    type_, id_, _, _ = parse_reference(full_url.decode("utf-8", "replace"))
    return f"{type_}/{id_}" if type_ is not None and id_ is not None else None


_ID = re.compile(rb"[A-Za-z0-9\-.]{1,64}\Z").match
_TYPES = frozenset(t.encode() for t in RESOURCE_TYPES)


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
