"""The server's SubscriptionTopics (Subscriptions R5 Backport IG, STU 1.1,
https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/topics.html): server-defined, so
clients subscribe to them by canonical and never write them.

R4 has no SubscriptionTopic resource. As the IG says for R4, each topic is:

- advertised in the CapabilityStatement, on its ``Subscription`` entry, with the
  extension :data:`CAPABILITY_TOPIC` (``valueCanonical``: the topic's canonical), see
  :func:`advertise`;
- readable as a ``Basic`` resource (``Basic/[name]``, ``Basic.code`` the FHIR type
  ``SubscriptionTopic``) carrying the R5 elements as the cross-version extensions
  ``http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.*``
  (https://hl7.org/fhir/uv/xver-r5.r4/lookup-sd-SubscriptionTopic.html), see
  :func:`basic_resource`. They are written to the store (:func:`install`) when the
  first topic-based Subscription is activated.

Every canonical is :data:`CANONICAL_BASE` + the topic's name: the same on every
deployment of this server (``https://fhir-server.example`` is a reserved name, RFC 2606,
that names no host; a canonical is an identifier, not an address to fetch).

A topic's resource triggers say which writes it notifies: a resource type, the
interactions (create, update, delete; a patch is an update), a search that the new
version must be in (``current``), and for "reaching a state" triggers the state the
previous version must not have been in (``previous_status_not``: a create passes, an
update passes when the version before had another ``status``). ``can_filter_by`` lists
the search parameters a Subscription's filters may use (``backport.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.storage.base import WriteRequest
from resources import fhir_json

log = logging.getLogger("fhir_server.events")

CANONICAL_BASE = "https://fhir-server.example/SubscriptionTopic/"
"""Every topic's canonical is this plus its name."""
CAPABILITY_TOPIC = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "capabilitystatement-subscriptiontopic-canonical"
)
XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
"""The prefix of the cross-version extensions of the R5 SubscriptionTopic elements."""
TYPES_SYSTEM = "http://hl7.org/fhir/fhir-types"
SD = "http://hl7.org/fhir/StructureDefinition/"
PUBLISHED = "2026-12-06"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
LAB_REPORT = "http://terminology.hl7.org/CodeSystem/v2-0074|LAB"


@dataclass(frozen=True)
class Trigger:
    """``SubscriptionTopic.resourceTrigger``."""

    resource: str
    interactions: tuple[str, ...]
    current: str = ""
    """Search parameters (``status=final``) the new version must meet."""
    previous_status_not: tuple[str, ...] = ()
    """An update notifies only when the version before had none of these statuses."""
    filters: tuple[str, ...] = ("patient",)
    """``canFilterBy``: the search parameters of this resource a filter may use."""
    aliases: tuple[tuple[str, str], ...] = ()
    """A filter parameter given without a resource type, as this resource names it
    (``patient`` is ``_id`` on Patient)."""
    description: str = ""

    def alias(self, name: str) -> str:
        return dict(self.aliases).get(name, name)


@dataclass(frozen=True)
class Topic:
    name: str
    title: str
    description: str
    triggers: tuple[Trigger, ...]

    @property
    def canonical(self) -> str:
        return CANONICAL_BASE + self.name

    def trigger(self, type_: str) -> Trigger | None:
        return next((t for t in self.triggers if t.resource == type_), None)


_CHANGES = ("create", "update", "delete")
_PATIENT_DATA = (
    "AllergyIntolerance",
    "Appointment",
    "CarePlan",
    "Communication",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Immunization",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Procedure",
)

TOPICS: tuple[Topic, ...] = (
    Topic(
        "new-lab-result",
        "New lab result",
        "A laboratory Observation or DiagnosticReport becomes final (created final, or"
        " updated to final from another status).",
        (
            Trigger(
                "Observation",
                ("create", "update"),
                f"category={LAB}&status=final",
                ("final",),
                ("patient", "code", "category"),
                description="A laboratory Observation reaches status final",
            ),
            Trigger(
                "DiagnosticReport",
                ("create", "update"),
                f"category={LAB_REPORT}&status=final",
                ("final",),
                ("patient", "code", "category"),
                description="A laboratory DiagnosticReport reaches status final",
            ),
        ),
    ),
    Topic(
        "appointment-change",
        "Appointment change",
        "An Appointment is booked, changed (rescheduled, cancelled...) or deleted.",
        (
            Trigger(
                "Appointment",
                _CHANGES,
                filters=("patient", "actor", "practitioner", "location", "status"),
                description="An Appointment is created, updated or deleted",
            ),
        ),
    ),
    Topic(
        "new-message",
        "New message",
        "A Communication (a message) is created.",
        (
            Trigger(
                "Communication",
                ("create",),
                filters=("patient", "recipient", "sender", "category"),
                description="A Communication is created",
            ),
        ),
    ),
    Topic(
        "document-available",
        "Document available",
        "A DocumentReference becomes current (created current, or updated to current).",
        (
            Trigger(
                "DocumentReference",
                ("create", "update"),
                "status=current",
                ("current",),
                ("patient", "type", "category"),
                description="A DocumentReference reaches status current",
            ),
        ),
    ),
    Topic(
        "encounter-change",
        "Encounter change",
        "An Encounter is created, changed (arrived, in progress, finished...) or deleted.",
        (
            Trigger(
                "Encounter",
                _CHANGES,
                filters=("patient", "status", "class", "practitioner", "location"),
                description="An Encounter is created, updated or deleted",
            ),
        ),
    ),
    Topic(
        "patient-data-change",
        "Patient data change",
        "Anything of a patient's record is created, changed or deleted: the Patient and"
        " the clinical, scheduling and document resources that refer to the patient.",
        (
            Trigger(
                "Patient",
                _CHANGES,
                filters=("_id",),
                aliases=(("patient", "_id"),),
                description="The Patient is created, updated or deleted",
            ),
            *(
                Trigger(type_, _CHANGES, description=f"A {type_} is created, updated or deleted")
                for type_ in _PATIENT_DATA
            ),
        ),
    ),
)
"""Every topic the server offers."""

BY_CANONICAL = {topic.canonical: topic for topic in TOPICS}


def topic_of(canonical: str) -> Topic | None:
    """The topic of a canonical (a ``|version`` suffix is ignored)."""
    return BY_CANONICAL.get(canonical.split("|", 1)[0])


def advertise(statement: dict[str, Any]) -> dict[str, Any]:
    """The CapabilityStatement with every topic's canonical on its Subscription entry."""
    for rest in statement.get("rest") or []:
        for entry in rest.get("resource") or []:
            if entry.get("type") == "Subscription":
                entry["extension"] = [
                    *(entry.get("extension") or []),
                    *({"url": CAPABILITY_TOPIC, "valueCanonical": t.canonical} for t in TOPICS),
                ]
                entry["supportedProfile"] = [
                    *(entry.get("supportedProfile") or []),
                    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                    "backport-subscription",
                ]
    return statement


def basic_resource(topic: Topic) -> dict[str, Any]:
    """The topic as a ``Basic`` with the cross-version extensions."""
    return {
        "resourceType": "Basic",
        "id": topic.name,
        "extension": [
            {"url": XVER + "url", "valueUri": topic.canonical},
            {"url": XVER + "version", "valueString": "1"},
            {"url": XVER + "name", "valueString": topic.title.title().replace(" ", "")},
            {"url": XVER + "title", "valueString": topic.title},
            {"url": XVER + "status", "valueCode": "active"},
            {"url": XVER + "date", "valueDateTime": PUBLISHED},
            {"url": XVER + "description", "valueMarkdown": topic.description},
            *(_trigger(t) for t in topic.triggers),
            *(_filter(t, name) for t in topic.triggers for name in t.filters),
            *(
                {
                    "url": XVER + "notificationShape",
                    "extension": [{"url": "resource", "valueUri": SD + t.resource}],
                }
                for t in topic.triggers
            ),
        ],
        "code": {
            "coding": [{"system": TYPES_SYSTEM, "code": "SubscriptionTopic"}],
            "text": "SubscriptionTopic",
        },
    }


def _trigger(trigger: Trigger) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "description", "valueMarkdown": trigger.description},
        {"url": "resource", "valueUri": SD + trigger.resource},
        *({"url": "supportedInteraction", "valueCode": i} for i in trigger.interactions),
    ]
    if trigger.current:
        criteria = [
            {"url": "current", "valueString": trigger.current},
            {"url": "resultForCreate", "valueCode": "test-passes"},
            {"url": "resultForDelete", "valueCode": "test-fails"},
        ]
        if trigger.previous_status_not:
            status = ",".join(trigger.previous_status_not)
            criteria.insert(0, {"url": "previous", "valueString": f"status:not={status}"})
            criteria.append({"url": "requireBoth", "valueBoolean": True})
        parts.append({"url": "queryCriteria", "extension": criteria})
    if trigger.previous_status_not:
        states = " and ".join(f"%previous.status != '{s}'" for s in trigger.previous_status_not)
        parts.append(
            {
                "url": "fhirPathCriteria",
                "valueString": f"%previous.empty() or ({states})",
            }
        )
    return {"url": XVER + "resourceTrigger", "extension": parts}


def _filter(trigger: Trigger, name: str) -> dict[str, Any]:
    return {
        "url": XVER + "canFilterBy",
        "extension": [
            {"url": "description", "valueMarkdown": f"{trigger.resource} search parameter {name}"},
            {"url": "resource", "valueUri": SD + trigger.resource},
            {"url": "filterParameter", "valueString": name},
        ],
    }


async def install(store: Any) -> None:
    """Write each topic's ``Basic`` that is missing or differs (the raw store: no
    access rules; a compare-and-set, so concurrent processes write it once)."""
    for topic in TOPICS:
        wanted = basic_resource(topic)
        stored = await store.read("Basic", topic.name)
        if stored is not None and stored.content is not None:
            current = fhir_json.loads(stored.content)
            current.pop("meta", None)
            if current == wanted:
                continue
        request = WriteRequest(
            "Basic",
            topic.name,
            "update",
            content_builder(wanted, topic.name),
            if_match=stored.version if stored is not None else None,
            must_not_exist=stored is None,
            index=index_entries(wanted, topic.name),
        )
        try:
            await store.write(request)
        except Exception as error:  # another process wrote it meanwhile
            log.info("SubscriptionTopic %s not written: %s", topic.name, error)
