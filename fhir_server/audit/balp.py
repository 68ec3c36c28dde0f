"""R4 ``AuditEvent`` resources (https://hl7.org/fhir/R4/auditevent.html) shaped after the
IHE Basic Audit Log Patterns (BALP, https://profiles.ihe.net/ITI/BALP/):

- ``type`` ``rest`` (audit-event-type) with the RESTful interaction as ``subtype``
  (http://hl7.org/fhir/restful-interaction; an operation adds its name, system
  :data:`OPERATION_SYSTEM`); sign-ins and tokens are DICOM ``110114`` User Authentication,
  administration commands ``110100`` Application Activity;
- ``action`` C, R, U, D or E (searches and operations execute), ``outcome`` 0 (success),
  4 (the request was refused: 4xx) or 8 (the server failed: 5xx), ``recorded`` when;
- ``agent``: the user (``fhirUser`` as ``who``, the token's ``sub`` as ``altId``), the
  client application (``who.identifier`` in :data:`CLIENT_SYSTEM`, its name as display,
  the network address), the server;
- ``entity``: the patient whose data it is (role 1 Patient, BALP's ``entity.what``),
  the resources touched (role 4 Domain Resource, versioned where known) and, for a
  search, the query (role 24, ``query`` base64 with the request line as description).

As BALP asks, a request whose results hold the data of several patients gives one
AuditEvent per patient: each names one patient, so each patient (and caregiver) reads
the events about their own record and no one else's (an AuditEvent is outside the R4
Patient compartment: it is a member of the patients it refers to, see
``resources.compartments.memberships``, and a patient-context token reads such a
resource only when it refers to that patient and no other).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from fhir_server.audit.record import Activity, Agent
from resources.fhir_datetime import format_instant

TYPE = "AuditEvent"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
OPERATION_SYSTEM = "urn:fhir-server:operation"
AUTH_SYSTEM = "urn:fhir-server:auth-event"
ADMIN_SYSTEM = "urn:fhir-server:admin-command"
CLIENT_SYSTEM = "urn:fhir-server:client-id"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
EXPORT_JOB_SYSTEM = "urn:fhir-server:export-job"
SERVER_NAME = "fhir-server"

MAX_ENTITIES = 200
"""Resources named in one AuditEvent (a page of 1,000 matches of one patient is split)."""

_ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
}
"""Action per interaction; the others (searches, operations, bundles) execute: E."""

_REST_TYPE = {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"}
_EXPORT_TYPE = {"system": DCM, "code": "110106", "display": "Export"}
_DISCLOSE = {"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"}
_JOB_ROLE = {"system": OBJECT_ROLE, "code": "20", "display": "Job"}
_REPORT_ROLE = {"system": OBJECT_ROLE, "code": "3", "display": "Report"}
_AUTH_TYPE = {"system": DCM, "code": "110114", "display": "User Authentication"}
_ADMIN_TYPE = {"system": DCM, "code": "110100", "display": "Application Activity"}
_PATIENT_TYPE = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
_OBJECT_TYPE = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}
_PATIENT_ROLE = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
_RESOURCE_ROLE = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
_QUERY_ROLE = {"system": OBJECT_ROLE, "code": "24", "display": "Query"}
_SOURCE = {
    "observer": {"display": SERVER_NAME},
    "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
}


class Touched(NamedTuple):
    """A resource an event touched, with the patients whose data it is."""

    reference: str
    """``Observation/1`` or, where the version is known, ``Observation/1/_history/2``."""
    patients: tuple[str, ...] = ()
    """``Patient/A``, ...: the patients whose data the resource is."""
    action: str | None = None
    """The action on this resource (a bundle entry's), else the request's."""


@dataclass(frozen=True, slots=True)
class Names:
    """Display names the writer looked up (staff and apps), by reference / client id."""

    users: dict[str, str]
    clients: dict[str, str]


NO_NAMES = Names({}, {})


def action_of(code: str) -> str:
    return _ACTIONS.get(code, "E")


def outcome_of(status: int) -> str:
    if status >= 500:
        return "8"
    return "4" if status >= 400 else "0"


def write_event_id(reference: str) -> str:
    """The id of the AuditEvent of a committed version (``Type/id/_history/v``): the same
    in every process, so the outbox sweep (:mod:`fhir_server.audit.sweep`) finds whether
    it was written."""
    return "w-" + hashlib.sha1(reference.encode()).hexdigest()


def rest_events(
    activity: Activity,
    touched: Sequence[Touched],
    names: Names = NO_NAMES,
    *,
    write_ids: bool = False,
    failure: str | None = None,
) -> list[dict[str, Any]]:
    """The AuditEvents of one FHIR interaction or operation: one per patient whose data
    it touched (and one for what belongs to no patient). Writes (``write_ids``) give one
    per version (and patient), with the id :func:`write_event_id`."""
    base = _base(activity, _rest_subtype(activity.code), names, failure)
    base["type"] = _REST_TYPE
    query = _query_entity(activity) if activity.code.startswith("search") else None
    if activity.failed or not touched:
        event = _event(base, action_of(activity.code), None, [], query)
        return [event]
    if write_ids:
        events = []
        for item in touched:
            for n, patient in enumerate(item.patients or (None,)):
                event = _event(base, item.action or action_of(activity.code), patient, [item])
                suffix = f"-{n}" if n else ""
                event["id"] = write_event_id(item.reference) + suffix
                events.append(event)
        return events
    events = []
    for patient, items in per_patient(touched).items():
        for start in range(0, len(items), MAX_ENTITIES):
            chunk = items[start : start + MAX_ENTITIES]
            events.append(_event(base, action_of(activity.code), patient, chunk, query))
    return events


def per_patient(touched: Iterable[Touched]) -> dict[str | None, list[Touched]]:
    """The resources of each patient (None: those of no patient)."""
    groups: dict[str | None, list[Touched]] = {}
    for item in touched:
        for patient in item.patients or (None,):
            groups.setdefault(patient, []).append(item)
    return groups


def grouped_event(
    activity: Activity,
    patient: str | None,
    touched: Sequence[Touched],
    queries: Sequence[Activity],
    first: float,
    count: int,
    names: Names = NO_NAMES,
) -> dict[str, Any]:
    """One AuditEvent for ``count`` interactions like ``activity`` (the same kind, user,
    app, address and patient) from ``first`` to ``activity.recorded``: ``period`` spans
    them, the entities list every resource and query, the patient entity's ``detail``
    says how many there were."""
    base = _base(activity, _rest_subtype(activity.code), names, None)
    base["type"] = _REST_TYPE
    event = _event(base, action_of(activity.code), patient, touched)
    entities = event.setdefault("entity", [])
    entities.extend(_query_entity(q) for q in queries)
    if count > 1:
        event["period"] = {"start": instant(first), "end": instant(activity.recorded)}
        counted = {"type": "interactions", "valueString": str(count)}
        if patient is not None:
            entities[0]["detail"] = [counted]
        else:
            entities.append({"type": _OBJECT_TYPE, "description": "count", "detail": [counted]})
    if not entities:
        del event["entity"]
    return _ordered(event)


def export_event(
    activity: Activity,
    job: str,
    patient: str,
    files: Sequence[tuple[str | None, str]],
    names: Names = NO_NAMES,
) -> dict[str, Any]:
    """The AuditEvent of a bulk export's disclosure of one patient's data (BALP's Privacy
    Disclosure at the source: type DICOM 110106 Export, subtype ISO 21089 ``disclose``,
    https://profiles.ihe.net/ITI/BALP/StructureDefinition-IHE.BasicAudit.PrivacyDisclosure.Source.html):
    the patient, the kick-off request (the query), the job and each output file ((type,
    name); type None: a file of patients' blocks) that holds resources of hers."""
    subtype = [*_rest_subtype(activity.code), _DISCLOSE]
    base = _base(activity, subtype, names, None)
    base["type"] = _EXPORT_TYPE
    event = _event(base, "R", patient, [], _query_entity(activity))
    event["entity"].append(
        {
            "what": {"identifier": {"system": EXPORT_JOB_SYSTEM, "value": job}},
            "type": _OBJECT_TYPE,
            "role": _JOB_ROLE,
            "description": f"{activity.code} job {job}",
        }
    )
    for type_, name in files:
        file: dict[str, Any] = {"type": _OBJECT_TYPE, "role": _REPORT_ROLE, "description": name}
        if type_ is not None:
            file["detail"] = [{"type": "resourceType", "valueString": type_}]
        event["entity"].append(file)
    return event


def auth_event(activity: Activity, names: Names = NO_NAMES) -> dict[str, Any]:
    """The AuditEvent of a sign-in, token request, revocation or consent."""
    subtype = [{"system": AUTH_SYSTEM, "code": activity.kind, "display": activity.kind}]
    if activity.kind == "login":
        subtype.insert(0, {"system": DCM, "code": "110122", "display": "Login"})
    base = _base(activity, subtype, names, activity.detail.get("error"))
    base["type"] = _AUTH_TYPE
    patient = activity.agent.patient
    entities = []
    detail = {k: v for k, v in activity.detail.items() if k != "error" and v}
    if detail:
        entities.append(
            {
                "type": _OBJECT_TYPE,
                "description": activity.code,
                "detail": [{"type": k, "valueString": v} for k, v in sorted(detail.items())],
            }
        )
    event = _event(base, "E", f"Patient/{patient}" if patient else None, [], None)
    if entities:
        event.setdefault("entity", []).extend(entities)
    return _ordered(event)


def admin_event(command: str, arguments: str, agent: Agent, ok: bool) -> dict[str, Any]:
    """The AuditEvent of a ``fhir-server`` administration command."""
    activity = Activity("admin", command, agent, 0 if ok else 400)
    subtype = [{"system": ADMIN_SYSTEM, "code": command, "display": f"fhir-server {command}"}]
    base = _base(activity, subtype, NO_NAMES, None if ok else "the command failed")
    base["type"] = _ADMIN_TYPE
    event = _event(base, "E", None, [], None)
    if arguments:
        event["entity"] = [{"type": _OBJECT_TYPE, "description": arguments}]
    return event


def _rest_subtype(code: str) -> list[dict[str, str]]:
    if code.startswith("$"):
        return [
            {"system": INTERACTION, "code": "operation", "display": "operation"},
            {"system": OPERATION_SYSTEM, "code": code, "display": code},
        ]
    return [{"system": INTERACTION, "code": code, "display": code}]


def _base(
    activity: Activity, subtype: list[dict[str, str]], names: Names, failure: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resourceType": TYPE,
        "subtype": subtype,
        "recorded": instant(activity.recorded),
        "outcome": outcome_of(activity.status),
    }
    if activity.failed:
        event["outcomeDesc"] = failure or f"HTTP {activity.status}"
    event["agent"] = _agents(activity.agent, names)
    event["source"] = _SOURCE
    return event


def _event(
    base: dict[str, Any],
    action: str,
    patient: str | None,
    items: Iterable[Touched],
    query: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event = {"resourceType": TYPE, "id": uuid.uuid4().hex, **base}
    event["action"] = action
    entities: list[dict[str, Any]] = []
    if patient is not None:
        entities.append(
            {"what": {"reference": patient}, "type": _PATIENT_TYPE, "role": _PATIENT_ROLE}
        )
    for item in items:
        if item.reference == patient:
            continue
        entities.append(
            {"what": {"reference": item.reference}, "type": _OBJECT_TYPE, "role": _RESOURCE_ROLE}
        )
    if query is not None:
        entities.append(query)
    if entities:
        event["entity"] = entities
    return _ordered(event)


_ORDER = (
    "resourceType",
    "id",
    "type",
    "subtype",
    "action",
    "period",
    "recorded",
    "outcome",
    "outcomeDesc",
    "agent",
    "source",
    "entity",
)


def _ordered(event: dict[str, Any]) -> dict[str, Any]:
    return {key: event[key] for key in _ORDER if key in event}


def _agents(agent: Agent, names: Names) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = []
    network = {"address": agent.address, "type": "2"} if agent.address else None
    if agent.user or agent.subject:
        user: dict[str, Any] = {
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
        }
        who: dict[str, Any] = {}
        if agent.user:
            who["reference"] = agent.user
            name = names.users.get(agent.user)
            if name:
                who["display"] = name
        if who:
            user["who"] = who
        if agent.subject:
            user["altId"] = agent.subject
        user["requestor"] = True
        agents.append(user)
    if agent.client_id:
        client: dict[str, Any] = {
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {
                "identifier": {"system": CLIENT_SYSTEM, "value": agent.client_id},
                "display": names.clients.get(agent.client_id) or agent.client_id,
            },
            "requestor": not agents,
        }
        if network is not None:
            client["network"] = network
        agents.append(client)
    elif network is not None and agents:
        agents[0]["network"] = network
    server: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": SERVER_NAME},
        "requestor": not agents,
    }
    if not agents and network is not None:
        server["network"] = network
    agents.append(server)
    return agents


def _query_entity(activity: Activity) -> dict[str, Any]:
    query = redacted_query(activity.query)
    line = f"{activity.method} {activity.path}"
    if query:
        line += f"?{query}"
    return {
        "type": _OBJECT_TYPE,
        "role": _QUERY_ROLE,
        "description": line,
        "query": base64.b64encode(query.encode()).decode("ascii"),
    }


_KEPT_VALUES = frozenset(
    {
        "code", "category", "status", "date", "_lastUpdated", "_count", "_sort", "_summary",
        "_elements", "_include", "_revinclude", "_type", "_total", "_format", "intent",
        "clinical-status", "verification-status", "type", "class", "vaccine-code",
    }
)  # fmt: skip
"""Search parameters whose values are kept in the query of an AuditEvent: they name kinds
of data, never people. Every other value (``patient=Patient/bob``, ``name=Smith``, an
identifier, a birth date) becomes ``*``: the event is in each patient's access report,
and one patient's report must not name another person."""


def redacted_query(query: str) -> str:
    """``query`` with the values of identifying parameters replaced by ``*``."""
    if not query:
        return query
    kept = []
    for field in query.split("&"):
        name, sep, value = field.partition("=")
        base = name.split(":", 1)[0].split(".", 1)[0]
        kept.append(field if not sep or base in _KEPT_VALUES else f"{name}=*")
    return "&".join(kept)


def instant(seconds: float) -> str:
    """A FHIR instant (UTC, milliseconds) of a ``time.time()`` value."""
    return format_instant(datetime.fromtimestamp(seconds, UTC))
