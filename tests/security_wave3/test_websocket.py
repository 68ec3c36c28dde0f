"""Attacks on the websocket channel (``fhir_server.events.websocket*``,
``operations.get_ws_binding_token``): a patient mixing another patient's Subscription
into one binding token, a binding token that outlives its grant, a caregiver's socket
pinged for another patient's data or another caregiver's preferences. The app is served
by uvicorn in the test's process (``tests.test_subscriptions_websocket``), on every
store."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from smart_auth.admin import delete_client
from tests.test_subscriptions_websocket import (
    Served,
    bind,
    connect,
    create,
    said,
    seed,
    served,
    settings,
    silent,
    websocket_subscription,
    write,
)

FIXTURES = (served, settings)
"""The uvicorn-served app of ``tests.test_subscriptions_websocket`` (on every store)."""


def _params(answer: Any) -> dict[str, Any]:
    return {p["name"]: p for p in answer.json()["parameter"]}


async def test_one_binding_token_for_my_and_anothers_subscription_is_refused(
    served: Served,
) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    alice = served.bearer("patient/*.cruds", patient="alice")
    bob = served.bearer("patient/*.cruds", patient="bob")
    mine = await create(served, websocket_subscription(), alice)
    theirs = await create(served, websocket_subscription(), bob)
    for query in (f"id={mine}&id={theirs}", f"id={theirs}&id={mine}", f"id={mine},{theirs}"):
        answer = await served.http.get(f"Subscription/$get-ws-binding-token?{query}", headers=alice)
        assert answer.status_code in (400, 404), (query, answer.text)
        assert "token" not in {p.get("name") for p in answer.json().get("parameter", [])}
    # the same ids by POST Parameters
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "id", "valueId": mine}, {"name": "id", "valueId": theirs}],
    }
    posted = await served.http.post("Subscription/$get-ws-binding-token", json=body, headers=alice)
    assert posted.status_code in (400, 404), posted.text
    assert posted.json()["resourceType"] == "OperationOutcome"


async def test_a_binding_token_of_a_revoked_grant_binds_nothing(served: Served) -> None:
    admin = served.bearer("system/*.cruds", client="admin-app")
    await seed(served, admin)
    alice = served.bearer("patient/*.cruds", client="alice-app", patient="alice")
    sid = await create(served, websocket_subscription(), alice)
    answer = await served.http.post(f"Subscription/{sid}/$get-ws-binding-token", headers=alice)
    assert answer.status_code == 200, answer.text
    token = _params(answer)["token"]["valueString"]
    auth = served.app.state.auth
    delete_client(auth.store, auth.token_service(), "alice-app")
    await asyncio.sleep(
        1.2
    )  # past the grant check's documented 1 s answer cache (events.grants.TTL)
    async with connect(served) as socket:
        await socket.send(f"bind-with-token {token}")
        await write(served, admin, "Patient/alice")
        heard = await _all_said(socket, 2.5)
    assert heard and heard[0].startswith("error"), heard
    assert not [m for m in heard if m.startswith(("ping", "bound"))], heard


async def _all_said(socket: Any, seconds: float) -> list[str]:
    """Every message the socket gets within ``seconds``."""
    heard: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                heard.append(str(await socket.recv()))
    return heard


async def test_a_patient_cannot_bind_staffs_subscription_with_her_own_token(
    served: Served,
) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    sid = await create(served, websocket_subscription(), admin)  # hears everyone's data
    alice = served.bearer("patient/*.cruds", patient="alice")
    answer = await served.http.post(f"Subscription/{sid}/$get-ws-binding-token", headers=alice)
    assert answer.status_code == 404, answer.text
    async with connect(served, alice) as socket:
        await socket.send(f"bind {sid}")
        assert (await said(socket)).startswith(f"error {sid} ")
        await write(served, admin, "Patient/bob")
        await silent(socket)


async def test_a_caregivers_socket_is_pinged_for_her_patient_only(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    for id_, patient in (("mum", "alice"), ("uncle", "bob")):
        person = {
            "resourceType": "RelatedPerson",
            "id": id_,
            "patient": {"reference": f"Patient/{patient}"},
        }
        assert (
            await served.http.put(f"RelatedPerson/{id_}", json=person, headers=admin)
        ).is_success
    mum = served.bearer("user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum")
    sid = await create(served, websocket_subscription(), mum)
    async with connect(served, mum) as socket:
        await bind(socket, sid)
        await write(served, admin, "Patient/bob")
        await silent(socket)
        await write(served, admin, "Patient/alice")
        assert await said(socket) == f"ping {sid}"


async def test_a_caregivers_basic_subscription_hears_not_of_others_preferences(
    served: Served,
) -> None:
    from tests.test_caregiver_preferences import preferences_of

    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    for id_, patient in (("mum", "alice"), ("dad", "alice"), ("uncle", "bob")):
        person = {
            "resourceType": "RelatedPerson",
            "id": id_,
            "patient": {"reference": f"Patient/{patient}"},
        }
        assert (
            await served.http.put(f"RelatedPerson/{id_}", json=person, headers=admin)
        ).is_success
    mum = served.bearer("patient/*.cruds", patient="alice", fhir_user="RelatedPerson/mum")
    sid = await create(served, websocket_subscription("Basic?"), mum)
    async with connect(served, mum) as socket:
        await bind(socket, sid)
        for other in ("RelatedPerson/dad", "RelatedPerson/uncle", "Patient/bob"):
            made = await served.http.post("Basic", json=preferences_of(other), headers=admin)
            assert made.status_code == 201, made.text
        await silent(socket)
        # the control: a Basic in Alice's compartment does ping
        hers = await served.http.post("Basic", json=preferences_of("Patient/alice"), headers=admin)
        assert hers.status_code == 201, hers.text
        assert await said(socket) == f"ping {sid}"
