"""Topic-based Subscriptions of the Subscriptions R5 Backport IG for R4
(https://hl7.org/fhir/uv/subscriptions-backport/) over HTTP on every store, delivered to
a real local HTTP receiver (issue 17): the topics are advertised and readable, a
Subscription is checked strictly, activated by a handshake, notified with history
Bundles whose SubscriptionStatus comes first, sent heartbeats, and the patient's data
reaches only who may read it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.events.topics import CANONICAL_BASE, TOPICS
from tests.conftest import BASE, STORES, storage_url
from tests.hook_receiver import Received, Receiver
from tests.test_subscriptions import (
    bearer,
    hook,
    http,
    seed,
    until_received,
    wait_status,
)

FIXTURES = (hook, http)
"""The fixtures this module shares with ``test_subscriptions`` (the app over HTTP, the
receiver)."""
IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        storage=storage_url(request.param, tmp_path),
        auth="smart",
        outbound_allow="127.0.0.1,localhost",
        delivery_attempts=3,
        delivery_backoff=0.2,
        base_url=BASE,
    )


def topic_subscription(
    endpoint: str,
    topic: str,
    *filters: str,
    content: str = "id-only",
    **channel_extensions: Any,
) -> dict[str, Any]:
    extensions = [
        {"url": IG + name.replace("_", "-"), **value} for name, value in channel_extensions.items()
    ]
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [IG + "backport-subscription"]},
        "status": "requested",
        "reason": "test",
        "criteria": CANONICAL_BASE + topic,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": IG + "backport-payload-content", "valueCode": content}]
            },
            **({"extension": extensions} if extensions else {}),
        },
    }
    if filters:
        body["_criteria"] = {
            "extension": [
                {"url": IG + "backport-filter-criteria", "valueString": f} for f in filters
            ]
        }
    return body


def lab(patient: str, status: str = "final", code: str = "1234-5") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status,
        "category": [LAB],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient},
    }


def status_of(received: Received) -> dict[str, Any]:
    """The SubscriptionStatus parameters of a notification, by name."""
    bundle = received.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    return status_of_bundle(bundle)


def status_of_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the bundle's first entry (a SubscriptionStatus), by name."""
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters"
    out: dict[str, Any] = {}
    for parameter in first["parameter"]:
        value = next(
            (v for k, v in parameter.items() if k.startswith("value")), parameter.get("part")
        )
        out.setdefault(parameter["name"], []).append(value)
    return out


def kinds(received: list[Received]) -> list[str]:
    return [status_of(r)["type"][0] for r in received]


async def subscribe(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], hook: Receiver
) -> str:
    created = await http.post("Subscription", json=body, headers=headers)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    await wait_status(http, sid, headers, "active")
    return sid


async def test_the_topics_are_advertised_and_readable_as_basic(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    statement = (await http.get("metadata")).json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    canonicals = [
        e["valueCanonical"]
        for e in entry["extension"]
        if e["url"] == IG + "capabilitystatement-subscriptiontopic-canonical"
    ]
    assert [c.rsplit("/", 1)[1] for c in canonicals] == [
        "new-lab-result",
        "appointment-change",
        "new-message",
        "document-available",
        "encounter-change",
        "patient-data-change",
    ]
    admin = bearer(app, "system/*.cruds")
    await subscribe(http, admin, topic_subscription(hook.url, "new-lab-result"), hook)
    for topic in TOPICS:
        basic = (await http.get(f"Basic/{topic.name}", headers=admin)).json()
        assert basic["code"]["coding"][0]["code"] == "SubscriptionTopic"
        urls = {e["url"].rsplit(".", 1)[1]: e for e in basic["extension"]}
        assert urls["url"]["valueUri"] == topic.canonical
        assert "resourceTrigger" in urls and "canFilterBy" in urls
    found = await http.get(
        "Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic", headers=admin
    )
    assert found.json()["total"] == len(TOPICS)


async def test_handshake_then_a_lab_result_reaching_final_is_notified(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    body = topic_subscription(
        hook.url, "new-lab-result", "Observation?patient=Patient/alice", content="full-resource"
    )
    sid = await subscribe(http, admin, body, hook)
    [handshake] = await until_received(hook, 1)
    assert handshake.method == "POST" and handshake.path == "/hook"
    assert handshake.headers["Content-Type"] == "application/fhir+json"
    shaken = status_of(handshake)
    assert shaken["type"] == ["handshake"] and shaken["status"] == ["requested"]
    assert shaken["topic"] == [CANONICAL_BASE + "new-lab-result"]
    assert shaken["subscription"][0]["reference"].endswith(f"Subscription/{sid}")
    await http.post("Observation", json=lab("Patient/bob"), headers=admin)  # not alice
    draft = await http.post("Observation", json=lab("Patient/alice", "preliminary"), headers=admin)
    oid = draft.json()["id"]
    final = {**lab("Patient/alice"), "id": oid}
    assert (await http.put(f"Observation/{oid}", json=final, headers=admin)).status_code == 200
    corrected = {**final, "valueString": "again"}  # final to final: not "reaching" final
    assert (await http.put(f"Observation/{oid}", json=corrected, headers=admin)).status_code == 200
    received = await until_received(hook, 2)
    await asyncio.sleep(0.6)
    received = hook.snapshot()
    assert kinds(received) == ["handshake", "event-notification"]
    status = status_of(received[1])
    assert status["events-since-subscription-start"] == ["1"]
    [event] = status["notification-event"]
    parts = {p["name"]: p for p in event}
    assert parts["event-number"]["valueString"] == "1"
    assert parts["focus"]["valueReference"]["reference"] == f"{BASE}/Observation/{oid}/_history/2"
    entry = received[1].json()["entry"][1]
    assert entry["resource"]["id"] == oid and entry["resource"]["status"] == "final"
    assert entry["request"] == {"method": "PUT", "url": f"Observation/{oid}"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"criteria": CANONICAL_BASE + "no-such-topic"}, "no-such-topic"),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": IG + "backport-filter-criteria",
                            "valueString": "Observation?flavour=sweet",
                        }
                    ]
                }
            },
            "flavour",
        ),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": IG + "backport-filter-criteria",
                            "valueString": "Observation?status=final",
                        }
                    ]
                }
            },
            "status",
        ),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": IG + "backport-filter-criteria",
                            "valueString": "Appointment?patient=Patient/alice",
                        }
                    ]
                }
            },
            "Appointment",
        ),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": IG + "backport-filter-criteria",
                            "valueString": "Observation?code=a|b|c|d",
                        }
                    ]
                }
            },
            "code",
        ),
    ],
)
async def test_a_bad_topic_subscription_is_400_naming_it_and_stores_nothing(
    app: Any, http: httpx.AsyncClient, hook: Receiver, change: dict[str, Any], named: str
) -> None:
    await refused(app, http, {**topic_subscription(hook.url, "new-lab-result"), **change}, named)


@pytest.mark.parametrize(
    ("channel", "named"),
    [
        ({"content": "everything"}, "everything"),
        ({"backport_heartbeat_period": {"valueUnsignedInt": 0}}, "heartbeat"),
        ({"backport_heartbeat_period": {"valueString": "60"}}, "heartbeat"),
        ({"backport_timeout": {"valueUnsignedInt": 600}}, "timeout"),
        ({"backport_max_count": {"valuePositiveInt": 2_000_000}}, "max-count"),
        ({"backport_max_count": {"valuePositiveInt": 0}}, "valuePositiveInt"),
    ],
)
async def test_bad_channel_settings_are_400(
    app: Any, http: httpx.AsyncClient, hook: Receiver, channel: dict[str, Any], named: str
) -> None:
    await refused(app, http, topic_subscription(hook.url, "new-lab-result", **channel), named)


async def refused(app: Any, client: httpx.AsyncClient, body: dict[str, Any], named: str) -> None:
    """The Subscription is 400 (an OperationOutcome naming ``named``), nothing stored."""
    admin = bearer(app, "system/*.cruds")
    response = await client.post("Subscription", json=body, headers=admin)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] in ("invalid", "value")
    assert named in response.text
    assert (await client.get("Subscription", headers=admin)).json()["total"] == 0


async def test_a_refused_handshake_puts_the_subscription_in_error(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    hook.status = 500
    created = await http.post(
        "Subscription", json=topic_subscription(hook.url, "encounter-change"), headers=admin
    )
    found = await wait_status(http, created.json()["id"], admin, "error")
    assert "handshake" in found["error"]
    assert kinds(hook.snapshot()) == ["handshake"]


async def test_heartbeats_are_sent_when_nothing_happens(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    body = topic_subscription(
        hook.url, "encounter-change", backport_heartbeat_period={"valueUnsignedInt": 1}
    )
    await subscribe(http, admin, body, hook)
    received = await until_received(hook, 3, timeout=10)
    assert kinds(received[:3]) == ["handshake", "heartbeat", "heartbeat"]
    beat = status_of(received[1])
    assert beat["status"] == ["active"] and beat["events-since-subscription-start"] == ["0"]
    assert len(received[1].json()["entry"]) == 1


async def test_a_deletion_is_notified_id_only_and_empty_has_no_focus(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    await subscribe(http, admin, topic_subscription(hook.url, "appointment-change"), hook)
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "participant": [{"actor": {"reference": "Patient/alice"}, "status": "accepted"}],
    }
    created = await http.post("Appointment", json=appointment, headers=admin)
    assert created.status_code == 201, created.text
    aid = created.json()["id"]
    assert (await http.delete(f"Appointment/{aid}", headers=admin)).status_code in (200, 204)
    received = await until_received(hook, 3)
    assert kinds(received) == ["handshake", "event-notification", "event-notification"]
    made, gone = (r.json()["entry"][1] for r in received[1:])
    assert made["request"] == {"method": "POST", "url": "Appointment"} and "resource" not in made
    assert gone["request"] == {"method": "DELETE", "url": f"Appointment/{aid}"}
    assert [status_of(r)["events-since-subscription-start"] for r in received[1:]] == [["1"], ["2"]]


async def test_a_failing_endpoint_is_retried_with_the_same_number_then_error(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    sid = await subscribe(http, admin, topic_subscription(hook.url, "new-message"), hook)
    hook.status = 503
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/alice"},
    }
    await http.post("Communication", json=message, headers=admin)
    found = await wait_status(http, sid, admin, "error")
    assert "failed 3 times" in found["error"]
    tries = hook.snapshot()[1:]
    assert len(tries) == 3
    assert {status_of(r)["notification-event"][0][0]["valueString"] for r in tries} == {"1"}


async def test_a_patients_topic_subscription_hears_only_of_her_data(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    bob = bearer(app, "patient/*.cruds", patient="bob")
    body = topic_subscription(hook.url, "patient-data-change", content="full-resource")
    sid = await subscribe(http, alice, body, hook)
    await http.post("Observation", json=lab("Patient/bob"), headers=admin)
    await http.post(
        "Condition",
        json={"resourceType": "Condition", "subject": {"reference": "Patient/bob"}},
        headers=admin,
    )
    mine = await http.post("Observation", json=lab("Patient/alice"), headers=admin)
    received = await until_received(hook, 2)
    await asyncio.sleep(0.6)
    received = hook.snapshot()
    assert kinds(received) == ["handshake", "event-notification"]
    assert "Patient/bob" not in received[1].body.decode()
    assert received[1].json()["entry"][1]["resource"]["id"] == mine.json()["id"]
    # $status and $events: Alice's, never Bob's
    for path in (
        f"Subscription/{sid}/$status",
        f"Subscription/$status?id={sid}",
        f"Subscription/{sid}/$events",
    ):
        assert (await http.get(path, headers=bob)).status_code == 404, path
    events = await events_of(http, sid, alice, 1)
    assert events["type"] == "history"
    assert status_of_bundle(events)["type"] == ["query-event"]
    assert [e["resource"]["id"] for e in events["entry"][1:]] == [mine.json()["id"]]
    assert "Patient/bob" not in str(events)


async def events_of(
    http: httpx.AsyncClient, sid: str, headers: dict[str, str], count: int, query: str = ""
) -> dict[str, Any]:
    """``$events`` once it has ``count`` events (the endpoint's answer reaches the
    receiver before the server records the delivery)."""
    deadline = time.monotonic() + 10
    while True:
        url = f"Subscription/{sid}/$events{query}"
        bundle = (await http.get(url, headers=headers)).json()
        if len(bundle.get("entry", [])) > count or time.monotonic() > deadline:
            return bundle
        await asyncio.sleep(0.1)


async def test_a_patients_filter_on_another_patient_hears_nothing(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    body = topic_subscription(
        hook.url, "new-lab-result", "patient=Patient/bob", content="full-resource"
    )
    await subscribe(http, alice, body, hook)
    await http.post("Observation", json=lab("Patient/bob"), headers=admin)
    await http.post("Observation", json=lab("Patient/alice"), headers=admin)
    staff = topic_subscription(hook.url, "new-lab-result", "patient=Patient/alice")
    await subscribe(http, admin, staff, hook)  # a later write is heard by staff's only
    await http.post("Observation", json=lab("Patient/alice"), headers=admin)
    await until_received(hook, 3)
    await asyncio.sleep(0.6)
    assert kinds(hook.snapshot()) == ["handshake", "handshake", "event-notification"]
    assert "Patient/bob" not in str([r.body for r in hook.snapshot()])
