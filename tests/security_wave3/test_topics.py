"""Attacks on topic-based Subscriptions (``fhir_server.events.backport``, ``topics``,
``notification_log``, ``operations.subscription_status``): ``Subscription/$status``
without ids listing another patient's Subscriptions, ``$events`` of another patient's,
``patient-data-change`` with an ``_id`` filter naming another patient or hearing the
deletion of another patient's data, a patient rewriting the server's topic ``Basic``.
A real hook receiver (``tests.hook_receiver``), on every store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from fhir_server.events.topics import TOPICS
from tests.hook_receiver import Receiver
from tests.test_subscriptions import bearer, hook, http, seed, until_received
from tests.test_subscriptions_backport import (
    kinds,
    lab,
    settings,
    subscribe,
    topic_subscription,
)

FIXTURES = (hook, http, settings)
"""The app over HTTP, its hook receiver and settings (outbound to localhost allowed)."""


async def test_status_without_ids_lists_only_the_callers_subscriptions(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    bob = bearer(app, "patient/*.cruds", patient="bob")
    mine = await subscribe(http, alice, topic_subscription(hook.url, "new-lab-result"), hook)
    theirs = await subscribe(http, bob, topic_subscription(hook.url, "new-lab-result"), hook)
    staffs = await subscribe(
        http, admin, topic_subscription(hook.url, "new-lab-result", "patient=Patient/bob"), hook
    )
    for query in ("", "?status=active", "?status=active,requested,error,off"):
        listed = await http.get(f"Subscription/$status{query}", headers=alice)
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 1, listed.text
        assert mine in listed.text
        assert theirs not in listed.text and staffs not in listed.text
        assert "Patient/bob" not in listed.text
    for path in (
        f"Subscription/$status?id={mine},{theirs}",
        f"Subscription/$status?id={mine}&id=Subscription/{theirs}",
        f"Subscription/{staffs}/$status",
        f"Subscription/{theirs}/$events?content=full-resource",
        f"Subscription/{staffs}/$events?content=full-resource",
    ):
        refused = await http.get(path, headers=alice)
        assert refused.status_code == 404, (path, refused.text)
        assert "Patient/bob" not in refused.text


async def test_patient_data_change_by_id_of_another_patient_hears_nothing(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    for filter_ in ("_id=bob", "patient=Patient/bob", "_id=Patient/bob"):
        body = topic_subscription(hook.url, "patient-data-change", filter_, content="full-resource")
        created = await http.post("Subscription", json=body, headers=alice)
        # refused, or accepted and never notified of Bob
        assert created.status_code in (201, 400, 403), created.text
    await asyncio.sleep(0.5)
    before = len(hook.snapshot())
    changed = {"resourceType": "Patient", "id": "bob", "name": [{"family": "SECRET-bob"}]}
    assert (await http.put("Patient/bob", json=changed, headers=admin)).is_success
    assert (await http.post("Observation", json=lab("Patient/bob"), headers=admin)).is_success
    await asyncio.sleep(1.5)
    later = hook.snapshot()[before:]
    assert kinds(later) in ([], ["handshake"] * len(later)), kinds(later)
    assert "SECRET-bob" not in str([r.body for r in hook.snapshot()])


async def test_the_deletion_of_another_patients_data_is_not_notified(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    made = await http.post("Observation", json=lab("Patient/bob"), headers=admin)
    bobs = made.json()["id"]
    alice = bearer(app, "patient/*.cruds", patient="alice")
    body = topic_subscription(hook.url, "patient-data-change", content="id-only")
    sid = await subscribe(http, alice, body, hook)
    assert (await http.delete(f"Observation/{bobs}", headers=admin)).is_success
    mine = await http.post("Observation", json=lab("Patient/alice"), headers=admin)
    await until_received(hook, 2)
    await asyncio.sleep(0.8)
    received = hook.snapshot()
    assert kinds(received) == ["handshake", "event-notification"], kinds(received)
    assert bobs not in str([r.body for r in received])
    assert mine.json()["id"] in received[1].body.decode()
    events = (await http.get(f"Subscription/{sid}/$events", headers=alice)).text
    assert bobs not in events


async def test_a_patient_cannot_rewrite_or_delete_a_topic(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    await subscribe(http, admin, topic_subscription(hook.url, "new-lab-result"), hook)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    for topic in TOPICS:
        before = (await http.get(f"Basic/{topic.name}", headers=admin)).json()
        forged = {
            **before,
            "subject": {"reference": "Patient/alice"},
            "extension": before["extension"][:1],
        }
        written = await http.put(f"Basic/{topic.name}", json=forged, headers=alice)
        assert written.status_code in (403, 404), written.text
        deleted = await http.delete(f"Basic/{topic.name}", headers=alice)
        # an invisible resource's delete is answered like one that does not exist
        assert deleted.status_code in (200, 204, 403, 404), deleted.text
        read = await http.get(f"Basic/{topic.name}", headers=admin)
        assert read.status_code == 200, read.text
        after = read.json()
        assert after["meta"]["versionId"] == before["meta"]["versionId"]


async def test_a_deleted_subscriptions_id_taken_over_shows_none_of_its_events(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    """Bob's topic Subscription heard of his lab result, then was deleted; Alice creates
    a Subscription under the same id (update as create) and asks ``$events``: the
    notifications Bob was sent (kept by ``events.notification_log`` by Subscription id)
    must not be hers to read, not even as ids."""
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    bob = bearer(app, "patient/*.cruds", patient="bob")
    body = topic_subscription(hook.url, "new-lab-result", content="full-resource")
    sid = await subscribe(http, bob, body, hook)
    made = await http.post("Observation", json=lab("Patient/bob"), headers=admin)
    secret = made.json()["id"]
    await until_received(hook, 2)
    deadline = asyncio.get_running_loop().time() + 10
    while secret not in (await http.get(f"Subscription/{sid}/$events", headers=bob)).text:
        assert asyncio.get_running_loop().time() < deadline, "Bob's $events never had it"
        await asyncio.sleep(0.2)
    assert (await http.delete(f"Subscription/{sid}", headers=bob)).is_success
    alice = bearer(app, "patient/*.cruds", patient="alice")
    taken = await http.put(
        f"Subscription/{sid}",
        json={**topic_subscription(hook.url, "new-lab-result"), "id": sid},
        headers=alice,
    )
    assert taken.status_code in (200, 201, 403, 404, 405, 409, 410), taken.text
    if taken.status_code not in (200, 201):
        return  # refused (as now: 404): nothing to read
    await asyncio.sleep(0.5)
    for content in ("id-only", "full-resource", "empty"):
        events = await http.get(f"Subscription/{sid}/$events?content={content}", headers=alice)
        assert events.status_code in (200, 404), events.text
        assert secret not in events.text, content
    status = await http.get(f"Subscription/{sid}/$status", headers=alice)
    if status.status_code == 200:
        assert '"events-since-subscription-start"' not in status.text or all(
            p.get("valueString") in (None, "0")
            for e in status.json()["entry"]
            for p in e["resource"]["parameter"]
            if p["name"] == "events-since-subscription-start"
        ), status.text


async def test_a_caregivers_filters_on_another_patient_hear_nothing(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    mum = bearer(app, "user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum")
    for topic, filter_ in (
        ("new-message", "recipient=Patient/bob"),
        ("new-message", "patient=Patient/bob"),
        ("encounter-change", "patient=Patient/bob"),
        ("patient-data-change", "_id=bob"),
    ):
        body = topic_subscription(hook.url, topic, filter_, content="full-resource")
        created = await http.post("Subscription", json=body, headers=mum)
        assert created.status_code in (201, 400, 403), created.text
    await asyncio.sleep(0.5)
    before = len(hook.snapshot())
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/bob"},
        "recipient": [{"reference": "Patient/bob"}],
        "payload": [{"contentString": "SECRET-bob"}],
    }
    visit = {
        "resourceType": "Encounter",
        "status": "arrived",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/bob"},
        "reasonCode": [{"text": "SECRET-bob"}],
    }
    for resource in (message, visit):
        made = await http.post(resource["resourceType"], json=resource, headers=admin)
        assert made.status_code == 201, made.text
    await asyncio.sleep(1.5)
    later = hook.snapshot()[before:]
    assert "event-notification" not in kinds(later), kinds(later)
    assert "SECRET-bob" not in str([r.body for r in hook.snapshot()])
    # the control: her filter on Alice does hear Alice's message
    control = topic_subscription(hook.url, "new-message", "patient=Patient/alice")
    await subscribe(http, mum, control, hook)
    hers = {
        **message,
        "subject": {"reference": "Patient/alice"},
        "recipient": [{"reference": "Patient/alice"}],
    }
    assert (await http.post("Communication", json=hers, headers=admin)).status_code == 201
    deadline = asyncio.get_running_loop().time() + 10
    while "event-notification" not in kinds(hook.snapshot()[before:]):
        assert asyncio.get_running_loop().time() < deadline, kinds(hook.snapshot())
        await asyncio.sleep(0.1)
    assert "SECRET-bob" not in str([r.body for r in hook.snapshot()])


async def _alices_secret_subscription(app: Any, http: httpx.AsyncClient, hook: Receiver) -> str:
    """Alice's app's Subscription with a secret in its channel headers (status off)."""
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice", subject="u-alice")
    body = {**topic_subscription(hook.url, "new-lab-result"), "status": "off"}
    body["channel"]["header"] = ["Authorization: Bearer ALICE-HOOK-SECRET"]
    created = await http.post("Subscription", json=body, headers=alice)
    assert created.status_code == 201, created.text
    sid = str(created.json()["id"])
    assert "ALICE-HOOK-SECRET" in (await http.get(f"Subscription/{sid}", headers=alice)).text
    return sid


def _paths(sid: str) -> tuple[str, ...]:
    return (
        f"Subscription/{sid}",
        f"Subscription/{sid}/_history",
        "Subscription?_count=100",
        "Subscription/_history",
        f"Subscription/{sid}/$status",
        "Subscription/$status",
    )


async def test_another_patient_does_not_read_her_subscription_or_its_secrets(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    sid = await _alices_secret_subscription(app, http, hook)
    bob = bearer(app, "patient/*.cruds", patient="bob", subject="u-bob")
    for path in _paths(sid):
        answer = await http.get(path, headers=bob)
        assert "ALICE-HOOK-SECRET" not in answer.text, path
        assert answer.status_code == 404 or sid not in answer.text, path


async def test_her_caregiver_does_not_read_her_apps_subscription_secrets(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    sid = await _alices_secret_subscription(app, http, hook)
    mum = bearer(
        app, "user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum", subject="u-mum"
    )
    for path in _paths(sid):
        answer = await http.get(path, headers=mum)
        assert "ALICE-HOOK-SECRET" not in answer.text, path


async def test_another_app_or_user_for_alice_neither_reads_nor_redirects_her_subscription(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    from tests.conftest import BASE

    sid = await _alices_secret_subscription(app, http, hook)
    value, _ = app.state.auth.token_service().issue_access_token(
        issuer=BASE,
        audience=BASE,
        client_id="other-app",
        scope="patient/*.cruds",
        patient="alice",
        subject="u-alice",
    )
    other_app = {"authorization": f"Bearer {value}"}
    read = await http.get(f"Subscription/{sid}", headers=other_app)
    mum = bearer(
        app, "user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum", subject="u-mum"
    )
    body = {**topic_subscription(hook.url + "/elsewhere", "new-lab-result"), "status": "off"}
    moved = await http.put(f"Subscription/{sid}", json={**body, "id": sid}, headers=mum)
    deleted = await http.delete(f"Subscription/{sid}", headers=mum)
    admin = bearer(app, "system/*.cruds")
    after = await http.get(f"Subscription/{sid}", headers=admin)
    assert "ALICE-HOOK-SECRET" not in read.text
    assert moved.status_code in (403, 404), moved.text
    assert deleted.status_code in (200, 204, 403, 404)
    assert after.status_code == 200 and after.json()["meta"]["versionId"] == "1", after.text


async def test_only_the_app_and_user_that_made_a_subscription_change_it(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    """Another app of Alice's, or her caregiver, cannot point her app's notifications
    elsewhere or end them (``fhir_server.workflows.subscription_owner``); her app can."""
    from tests.conftest import BASE

    sid = await _alices_secret_subscription(app, http, hook)
    value, _ = app.state.auth.token_service().issue_access_token(
        issuer=BASE,
        audience=BASE,
        client_id="other-app",
        scope="patient/*.cruds",
        patient="alice",
        subject="u-alice",
    )
    other_app = {"authorization": f"Bearer {value}"}
    mum = bearer(
        app, "user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum", subject="u-mum"
    )
    body = {**topic_subscription(hook.url + "/elsewhere", "new-lab-result"), "status": "off"}
    for who in (other_app, mum):
        moved = await http.put(f"Subscription/{sid}", json={**body, "id": sid}, headers=who)
        assert moved.status_code == 403, moved.text
        assert moved.json()["resourceType"] == "OperationOutcome"
        deleted = await http.delete(f"Subscription/{sid}", headers=who)
        assert deleted.status_code == 403, deleted.text
    admin = bearer(app, "system/*.cruds")
    after = await http.get(f"Subscription/{sid}", headers=admin)
    assert after.status_code == 200 and after.json()["meta"]["versionId"] == "1", after.text
    assert after.json()["channel"]["endpoint"] == hook.url
    alice = bearer(app, "patient/*.cruds", patient="alice", subject="u-alice")
    own = await http.put(f"Subscription/{sid}", json={**body, "id": sid}, headers=alice)
    assert own.status_code == 200, own.text
    assert (await http.delete(f"Subscription/{sid}", headers=alice)).status_code in (200, 204)
