"""The search index entries of the AuditEvents the server writes, without the generic
FHIRPath navigation (https://hl7.org/fhir/R4/auditevent.html#search).

The generic extraction (``fhir_server.interactions.write.index_entries``) evaluates the
18 R4 AuditEvent search parameters on any AuditEvent: ~100 us each, more than a read costs.
The server's own AuditEvents come in the few shapes of :mod:`fhir_server.audit.balp`, so
this module finds the values at the places those shapes have them and hands them to the
same row builders (token, string, reference and date rows; the same sort keys and
compartment memberships). ``tests/test_audit_index.py`` checks that both give the same
entries for every shape. Any other AuditEvent (one a client posts) goes through the
generic extraction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.storage.base import IndexEntries
from resources.compartments import memberships
from resources.search.extract import SORT
from resources.search.index.date import date_rows
from resources.search.index.reference import reference_rows, reference_type
from resources.search.index.string import string_rows
from resources.search.index.token import token_rows
from resources.search.model import IndexRow, SortKey, TokenRow

ACTION_SYSTEM = "http://hl7.org/fhir/audit-event-action"
OUTCOME_SYSTEM = "http://hl7.org/fhir/audit-event-outcome"

_TYPES = {
    "action": "token",
    "address": "string",
    "agent": "reference",
    "altid": "token",
    "date": "date",
    "entity": "reference",
    "entity-role": "token",
    "entity-type": "token",
    "outcome": "token",
    "patient": "reference",
    "subtype": "token",
    "type": "token",
}


def audit_index(event: dict[str, Any]) -> IndexEntries:
    """The index entries of an AuditEvent built by :mod:`fhir_server.audit.balp`."""
    agents = event.get("agent", ())
    entities = event.get("entity", ())
    whos = [(a["who"], "Reference") for a in agents if "who" in a]
    whats = [(e["what"], "Reference") for e in entities if "what" in e]
    found: dict[str, list[IndexRow]] = {
        "action": [TokenRow("action", ACTION_SYSTEM, event["action"])],
        "address": string_rows(
            "address", [(a["network"]["address"], "string") for a in agents if "network" in a]
        ),
        "agent": reference_rows("agent", whos),
        "altid": token_rows("altid", [(a["altId"], "string") for a in agents if "altId" in a]),
        "date": date_rows("date", [(event["recorded"], "instant")]),
        "entity": reference_rows("entity", whats),
        "entity-role": token_rows(
            "entity-role", [(e["role"], "Coding") for e in entities if "role" in e]
        ),
        "entity-type": token_rows(
            "entity-type", [(e["type"], "Coding") for e in entities if "type" in e]
        ),
        "outcome": [TokenRow("outcome", OUTCOME_SYSTEM, event["outcome"])],
        "patient": reference_rows(
            "patient", [item for item in [*whos, *whats] if reference_type(item[0]) == "Patient"]
        ),
        "subtype": token_rows("subtype", [(c, "Coding") for c in event.get("subtype", ())]),
        "type": token_rows("type", [(event["type"], "Coding")]),
    }
    rows: list[IndexRow] = []
    keys: list[SortKey] = []
    for code, found_rows in found.items():
        if not found_rows:
            continue
        unique = _unique(found_rows)
        rows.extend(unique)
        key = SORT[_TYPES[code]](code, unique)
        if key is not None:
            keys.append(key)
    return IndexEntries(rows, keys, memberships("AuditEvent", event["id"], rows, event))


def _unique(rows: Iterable[IndexRow]) -> list[IndexRow]:
    return list(dict.fromkeys(rows))
