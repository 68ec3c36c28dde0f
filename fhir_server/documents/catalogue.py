"""The patient-education catalogue (issue 20, "Education"): DocumentReferences with the
category "patient education" (SNOMED CT 311401005), each with a title
(``content.attachment.title``), a short text (``description``, and the narrative), a
link (``content.attachment.url``) and the codes it covers (``context.event``: SNOMED
CT, ICD-10-CM, RxNorm).

The starter content (:mod:`.catalogue_data`) is loaded into every new store by
:func:`load_catalogue` (``fhir-server serve`` does it at start-up): an entry is written
only if its id (``education-<key>``) has never existed, so a restart changes nothing,
and entries staff edited or deleted stay as they made them. Staff keep the catalogue
through the API like any resource (``DocumentReference?category=...|311401005``).

:func:`matching` picks the entries for a patient's codes: the same system and code,
where an ICD-10-CM code of the catalogue also covers its subcodes (``E11`` covers
``E11.9``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from fhir_server.documents.catalogue_data import CONDITIONS, MEDICINES, MEDLINEPLUS, Topic
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.storage.base import AlreadyExists, WriteRequest
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
EDUCATION_CODE = "311401005"
"""SNOMED CT "Patient education (procedure)": the category of a catalogue entry."""
EDUCATION_CATEGORY = {
    "coding": [{"system": SNOMED, "code": EDUCATION_CODE, "display": "Patient education"}],
    "text": "Patient education",
}
ID_PREFIX = "education-"
MAX_ENTRIES = 1000
"""The most catalogue entries read for one patient."""


def entry(topic: Topic) -> dict[str, Any]:
    """The DocumentReference of a catalogue topic."""
    codings = [
        *({"system": SNOMED, "code": code} for code in topic.snomed),
        *({"system": ICD10CM, "code": code} for code in topic.icd10),
        *({"system": RXNORM, "code": code} for code in topic.rxnorm),
    ]
    link = MEDLINEPLUS + topic.page
    div = (
        f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{html.escape(topic.title)}</b></p>'
        f"<p>{html.escape(topic.text)}</p>"
        f'<p><a href="{html.escape(link)}">Read more on MedlinePlus</a></p></div>'
    )
    return {
        "resourceType": "DocumentReference",
        "id": ID_PREFIX + topic.key,
        "text": {"status": "generated", "div": div},
        "status": "current",
        "type": {"text": "Patient education"},
        "category": [EDUCATION_CATEGORY],
        "description": topic.text,
        "content": [
            {
                "attachment": {
                    "contentType": "text/html",
                    "language": "en",
                    "url": link,
                    "title": topic.title,
                }
            }
        ],
        "context": {"event": [{"coding": codings}]},
    }


def starter_entries() -> list[dict[str, Any]]:
    return [entry(topic) for topic in (*CONDITIONS, *MEDICINES)]


async def load_catalogue(store: Any) -> int:
    """Write the starter entries that were never in ``store`` (a raw store, no access
    checks); returns how many were written."""
    missing: list[WriteRequest] = []
    for resource in starter_entries():
        if await store.read("DocumentReference", resource["id"]) is None:
            id_ = resource["id"]
            missing.append(
                WriteRequest(
                    "DocumentReference",
                    id_,
                    "update",
                    content_builder(resource, id_),
                    must_not_exist=True,
                    index=index_entries(resource, id_),
                )
            )
    if not missing:
        return 0
    try:
        await store.write_batch(missing)
    except AlreadyExists:  # another process of the server loaded it at the same time
        return 0
    return len(missing)


def catalogue_query() -> SearchQuery:
    """The current catalogue entries: ``DocumentReference?category=SNOMED|311401005``."""
    return parse_search(
        ("DocumentReference",),
        [("category", f"{SNOMED}|{EDUCATION_CODE}")],
        strict=True,
        params_for=search_params,
        max_count=MAX_ENTRIES,
        default_count=MAX_ENTRIES,
    )


def _covered(resource: dict[str, Any]) -> Iterable[tuple[str, str]]:
    context = resource.get("context")
    events = context.get("event", []) if isinstance(context, dict) else []
    for concept in events if isinstance(events, list) else []:
        for coding in concept.get("coding", []) if isinstance(concept, dict) else []:
            if isinstance(coding, dict):
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    yield system, code


def matching(
    catalogue: Iterable[dict[str, Any]], codes: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The current entries of ``catalogue`` that cover one of ``codes`` ((system, code)),
    by title. A DocumentReference that refers to a Patient or a RelatedPerson anywhere
    (a ``subject``, an ``author``...) is in a patient's compartment, written by a patient
    or about one, never an entry: the catalogue is read without the caller's access
    limits, and a patient must not publish into every patient's ``$education``."""
    icd = {code for system, code in codes if system == ICD10CM}
    found = []
    for resource in catalogue:
        if resource.get("status") != "current" or _personal(resource):
            continue  # a patient's own document is no catalogue entry, whatever its category
        for system, code in _covered(resource):
            if (system, code) in codes or (
                system == ICD10CM and any(c.startswith(code) for c in icd)
            ):
                found.append(resource)
                break
    return sorted(found, key=_title)


def _personal(value: Any) -> bool:
    """Whether ``value`` refers to a Patient or a RelatedPerson anywhere inside."""
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and any(
            kind in reference for kind in ("Patient/", "RelatedPerson/", "Person/")
        ):
            return True
        return any(_personal(v) for k, v in value.items() if k != "reference")
    if isinstance(value, list):
        return any(_personal(v) for v in value)
    return False


def _title(resource: dict[str, Any]) -> str:
    for content in resource.get("content", []):
        title = (content.get("attachment") or {}).get("title")
        if isinstance(title, str):
            return title
    return str(resource.get("description", ""))
