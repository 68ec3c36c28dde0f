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
from bisect import bisect_right
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


def bundle_touched(body: bytes | None) -> list[Touched]:
    """The resources of a Bundle's entries (those with a RESTful ``fullUrl``) and the
    patients of each."""
    if not body:
        return []
    entries = [(at, _entry(value)) for at, value in _values(body, _FULL_URL_KEY)]
    if not entries:
        return []
    starts = [at for at, _ in entries]
    patients: list[dict[str, None]] = [{} for _ in entries]
    for n, (_, reference) in enumerate(entries):
        if reference is not None and reference.startswith(_PATIENT + "/"):
            patients[n][reference] = None
    for at, patient in _patient_references(body):
        entry = bisect_right(starts, at) - 1
        if entry >= 0:
            patients[entry][patient] = None
    return [
        Touched(reference, tuple(patients[n]))
        for n, (_, reference) in enumerate(entries)
        if reference is not None
    ]


def _values(body: bytes, key: bytes) -> list[tuple[int, bytes]]:
    """(position, value) of every ``"key":"value"`` in ``body`` (``bytes.find``: a few
    GB/s, where a regular expression scans ~0.3 GB/s)."""
    found = []
    at = body.find(key)
    while at >= 0:
        start = at + len(key)
        end = body.find(b'"', start)
        if end < 0:
            break
        found.append((at, body[start:end]))
        at = body.find(key, end)
    return found


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
