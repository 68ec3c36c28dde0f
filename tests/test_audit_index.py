"""The index entries of the server's own AuditEvents (``fhir_server.audit.index``, built
without FHIRPath) are those the generic extraction gives (every R4 AuditEvent search
parameter, the sort keys, the Patient compartments), for every shape the trail writes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fhir_server.audit import balp
from fhir_server.audit.balp import Touched
from fhir_server.audit.index import audit_index
from fhir_server.audit.record import Activity, Agent
from fhir_server.interactions.write import index_entries
from resources.validation import validate

STAFF = Agent("Practitioner/dr", "ann", "portal", "10.0.0.1")
PATIENT = Agent("Patient/a", "alice", "portal", "::1", "a")
BACKEND = Agent(None, None, "backend", None)
NAMES = balp.Names({"Practitioner/dr": "Ann Who"}, {"portal": "The Portal"})
OBS = Touched("Observation/1/_history/2", ("Patient/a",))
SHARED = Touched("Observation/2", ("Patient/a", "Patient/b"))


TRANSACTION = Activity("rest", "transaction", STAFF, 200)
READ = Activity("rest", "read", STAFF, 200)
MALLORY = Agent(None, "mallory", None, "1.2.3.4")
FAILED_LOGIN = Activity("login", "login", MALLORY, 401, detail={"error": "no"})
EXPORT = Activity("rest", "$export", BACKEND, 202, "GET", "$export", "_type=Observation")
TOKEN = Activity("token", "authorization_code", PATIENT, 200, detail={"scope": "patient/*.rs"})


def _search(agent: Agent) -> Activity:
    return Activity("rest", "search-type", agent, 200, "GET", "Observation", "code=x&_count=5")


def _shapes() -> list[dict[str, Any]]:
    events = [
        *balp.rest_events(_search(STAFF), [OBS, SHARED, Touched("Practitioner/9")], NAMES),
        *balp.rest_events(_search(BACKEND), []),
        *balp.rest_events(Activity("rest", "read", PATIENT, 404, "GET", "Patient/b"), []),
        *balp.rest_events(Activity("rest", "$everything", PATIENT, 500), [], failure="boom"),
        *balp.rest_events(TRANSACTION, [OBS, SHARED], NAMES, write_ids=True),
        balp.grouped_event(READ, "Patient/a", [OBS], [], time.time() - 3, 4, NAMES),
        balp.grouped_event(_search(BACKEND), None, [], [_search(BACKEND)], time.time() - 1, 2),
        balp.auth_event(FAILED_LOGIN),
        balp.auth_event(TOKEN, NAMES),
        balp.admin_event("users create", "--username bob", Agent(None, "root", None, None), True),
        balp.export_event(EXPORT, "job1", "Patient/a", [("Observation", "Observation.ndjson")]),
    ]
    return events


@pytest.mark.parametrize("event", _shapes(), ids=lambda e: e["subtype"][-1]["code"])
def test_the_fast_index_is_the_generic_one(event: dict[str, Any]) -> None:
    fast, generic = audit_index(event), index_entries(event, event["id"])
    assert sorted(map(repr, fast.rows)) == sorted(map(repr, generic.rows))
    assert sorted(map(repr, fast.sort_keys)) == sorted(map(repr, generic.sort_keys))
    assert fast.compartments == generic.compartments


@pytest.mark.parametrize("event", _shapes(), ids=lambda e: e["subtype"][-1]["code"])
def test_the_events_are_valid_r4(event: dict[str, Any]) -> None:
    errors = [i for i in validate(event) if i.severity in ("error", "fatal")]
    assert errors == []


def test_each_event_names_at_most_one_patient() -> None:
    for event in _shapes():
        assert len(audit_index(event).compartments) <= 1
