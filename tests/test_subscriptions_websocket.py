"""R4 Subscriptions with the websocket channel (https://hl7.org/fhir/R4/subscription.html,
"websocket"; issue 17) on every store: the app served by uvicorn in the test's process
(real HTTP and real websockets), a ``websockets`` client. A websocket Subscription is
active at once; ``bind [id]`` is answered ``bound [id]`` and each matching write then
pings; a patient's socket pings only for her data, and only her tokens bind her
Subscriptions; bad input gets ``error ...`` on the socket; revocation ends the binding.
The Backport IG's ``$get-ws-binding-token`` lets a socket without ``Authorization`` bind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fhir_server.config import Settings
from fhir_server.events.topics import CANONICAL_BASE, TOPICS
from fhir_server.events.websocket_channel import EXTENSION
from smart_auth.admin import delete_client
from smart_auth.store.base import Client
from tests.conftest import STORES, storage_url
from tests.live import free_port
from tests.test_subscriptions import observation

JSON = {"content-type": "application/fhir+json"}
REST_HOOK_OFF = {
    "resourceType": "Subscription",
    "status": "off",
    "reason": "x",
    "criteria": "Observation?",
    "channel": {"type": "rest-hook", "endpoint": "https://hooks.example/x"},
}
QUIET = 1.0
"""Seconds a socket is watched for a message that must not come."""


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="smart")


@dataclass
class Served:
    """The app on a port of 127.0.0.1 and an HTTP client for its FHIR base."""

    app: Any
    base: str
    ws: str
    http: httpx.AsyncClient

    def bearer(self, scope: str, client: str = "test-app", **context: Any) -> dict[str, str]:
        store = self.app.state.auth.store
        if store.get_client(client) is None:
            store.add_client(Client(client_id=client, scope=scope))
        value, _ = self.app.state.auth.token_service().issue_access_token(
            issuer=self.base, audience=self.base, client_id=client, scope=scope, **context
        )
        return {"authorization": f"Bearer {value}", **JSON}


@pytest.fixture
async def served(app: Any) -> AsyncIterator[Served]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        async with httpx.AsyncClient(base_url=base + "/") as http:
            yield Served(app, base, f"ws://127.0.0.1:{port}/fhir/websocket", http)
    finally:
        server.should_exit = True
        await task


def websocket_subscription(criteria: str = "Observation?", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "websocket", **extra},
    }


async def create(served: Served, body: dict[str, Any], headers: dict[str, str]) -> str:
    created = await served.http.post("Subscription", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def seed(served: Served, admin: dict[str, str]) -> None:
    for pid in ("alice", "bob"):
        body = {"resourceType": "Patient", "id": pid}
        assert (await served.http.put(f"Patient/{pid}", json=body, headers=admin)).is_success


@contextlib.asynccontextmanager
async def connect(
    served: Served, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    extra = {"authorization": headers["authorization"]} if headers else None
    async with websockets.connect(served.ws, additional_headers=extra) as socket:
        yield socket


async def said(socket: ClientConnection, timeout: float = 10) -> str:
    async with asyncio.timeout(timeout):
        return str(await socket.recv())


async def bind(socket: ClientConnection, *sids: str) -> None:
    """Bind ``socket`` to each of ``sids``, each answered ``bound [id]``."""
    for sid in sids:
        await socket.send(f"bind {sid}")
        assert await said(socket) == f"bound {sid}"


async def silent(socket: ClientConnection, seconds: float = QUIET) -> None:
    """Nothing more arrives within ``seconds``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            message = await socket.recv()
            raise AssertionError(f"unexpected message {message!r}")


async def write(served: Served, admin: dict[str, str], patient: str, code: str = "1234-5") -> None:
    response = await served.http.post("Observation", json=observation(patient, code), headers=admin)
    assert response.status_code == 201, response.text


# -- the channel -------------------------------------------------------------------------


async def test_the_capability_statement_names_the_websocket(served: Served) -> None:
    statement = (await served.http.get("metadata")).json()
    extensions = statement["rest"][0]["extension"]
    assert {"url": EXTENSION, "valueUri": served.ws} in extensions


async def test_the_configured_base_url_makes_the_websocket_wss(tmp_path: Path) -> None:
    from fhir_server.app import create_app

    settings = Settings(
        storage=storage_url("sqlite", tmp_path), auth="off", base_url="https://fhir.example/r4"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            statement = (await http.get("/fhir/metadata")).json()
    found = [e for e in statement["rest"][0]["extension"] if e["url"] == EXTENSION]
    assert found == [{"url": EXTENSION, "valueUri": "wss://fhir.example/r4/websocket"}]


async def test_a_websocket_subscription_is_active_at_once(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    sid = await create(served, websocket_subscription(), admin)
    found = (await served.http.get(f"Subscription/{sid}", headers=admin)).json()
    assert found["status"] == "active"
    off = await create(served, {**websocket_subscription(), "status": "off"}, admin)
    assert (await served.http.get(f"Subscription/{off}", headers=admin)).json()["status"] == "off"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (websocket_subscription(payload="application/fhir+json"), "payload"),
        (websocket_subscription(CANONICAL_BASE + TOPICS[0].name), "topic-based"),
    ],
)
async def test_a_websocket_with_a_payload_or_a_topic_is_400_and_nothing_is_stored(
    served: Served, body: dict[str, Any], named: str
) -> None:
    admin = served.bearer("system/*.cruds")
    refused = await served.http.post("Subscription", json=body, headers=admin)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["code"] == "invalid"
    assert named in refused.text
    listed = (await served.http.get("Subscription", headers=admin)).json()
    assert listed.get("total", 0) == 0 and not listed.get("entry")


async def test_bind_then_each_matching_write_pings_once(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    sid = await create(served, websocket_subscription("Observation?code=1234-5"), admin)
    async with connect(served, admin) as socket:
        await bind(socket, sid)
        await write(served, admin, "Patient/alice", code="9999-9")  # does not match
        for _ in range(3):
            await write(served, admin, "Patient/alice")
        assert [await said(socket) for _ in range(3)] == [f"ping {sid}"] * 3
        await silent(socket)


async def test_a_socket_hears_of_what_is_committed_after_bound(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    sid = await create(served, websocket_subscription(), admin)
    await write(served, admin, "Patient/alice")  # before anyone bound
    async with connect(served, admin) as socket:
        await bind(socket, sid)
        await silent(socket)
        await write(served, admin, "Patient/alice")
        assert await said(socket) == f"ping {sid}"


async def test_two_sockets_and_two_subscriptions_each_hear_their_own(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    first = await create(served, websocket_subscription("Observation?code=1111-1"), admin)
    second = await create(served, websocket_subscription("Observation?code=2222-2"), admin)
    async with connect(served, admin) as one, connect(served, admin) as both:
        await bind(one, first)
        for sid in (first, second):
            await bind(both, sid)
        for code in ("2222-2", "1111-1", "2222-2"):
            await write(served, admin, "Patient/alice", code=code)
        assert await said(one) == f"ping {first}"
        assert [await said(both) for _ in range(3)] == [
            f"ping {second}",
            f"ping {first}",
            f"ping {second}",
        ]
        await silent(one)
        await silent(both, 0.2)


async def test_a_patients_socket_pings_only_for_her_data(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    alice = served.bearer("patient/*.cruds", patient="alice")
    sid = await create(served, websocket_subscription(), alice)
    async with connect(served, alice) as socket:
        await bind(socket, sid)
        await write(served, admin, "Patient/bob")
        await silent(socket)
        await write(served, admin, "Patient/alice")
        assert await said(socket) == f"ping {sid}"


async def test_only_the_creator_or_staff_may_bind(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    alice = served.bearer("patient/*.cruds", patient="alice")
    bob = served.bearer("patient/*.cruds", patient="bob")
    sid = await create(served, websocket_subscription(), alice)
    async with connect(served, bob) as socket:
        await socket.send(f"bind {sid}")
        refused = await said(socket)
        await socket.send("bind no-such-subscription")
        unknown = await said(socket)
        await write(served, admin, "Patient/alice")
        await silent(socket)
    # one answer for "not yours" and "not there": nothing tells bob it exists
    assert refused == f"error {sid} Subscription/{sid} is not known, or not yours"
    assert unknown.startswith("error no-such-subscription Subscription/no-such-subscription")
    async with connect(served, admin) as staff:
        await bind(staff, sid)


async def test_bad_input_is_an_error_message_and_the_socket_goes_on(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    other = await create(served, REST_HOOK_OFF, admin)
    off = await create(served, {**websocket_subscription(), "status": "off"}, admin)
    sid = await create(served, websocket_subscription(), admin)
    async with connect(served, admin) as socket:
        for text, answer in [
            ("hello", "error unknown command"),
            ("bind", "error unknown command"),
            ("bind ../../etc", "error ../../etc Subscription/../../etc is not known"),
            (f"bind {other}", f"error {other} Subscription/{other} does not have a websocket"),
            (f"bind {off}", f"error {off} Subscription/{off} is no longer an active"),
            ("bind-with-token not.a.token", "error the binding token is refused"),
            ("x" * 5000, "error a message is at most"),
            (b"\x00\x01", "error binary messages"),
        ]:
            await socket.send(text)
            assert (await said(socket)).startswith(answer), text
        await bind(socket, sid)
        await socket.send(f"bind {sid}")  # again: no second ping per event
        assert await said(socket) == f"bound {sid}"
        await write(served, admin, "Patient/alice")
        assert await said(socket) == f"ping {sid}"
        await silent(socket)


async def test_an_upgrade_with_a_bad_token_is_refused(served: Served) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            served.ws, additional_headers={"authorization": "Bearer not-a-token"}
        ):
            pass
    assert refused.value.response.status_code == 401
    assert b"OperationOutcome" in refused.value.response.body


async def test_without_a_token_bind_is_refused(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    sid = await create(served, websocket_subscription(), admin)
    async with connect(served) as socket:
        await socket.send(f"bind {sid}")
        assert (await said(socket)).startswith(f"error {sid} binding needs an access token")
        await write(served, admin, "Patient/alice")
        await silent(socket)


# -- binding tokens (Subscriptions Backport IG) -------------------------------------------


async def binding_token(served: Served, sid: str, headers: dict[str, str]) -> httpx.Response:
    return await served.http.post(f"Subscription/{sid}/$get-ws-binding-token", headers=headers)


async def test_a_binding_token_binds_a_socket_without_authorization(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    alice = served.bearer("patient/*.cruds", patient="alice")
    sid = await create(served, websocket_subscription(), alice)
    answer = await binding_token(served, sid, alice)
    assert answer.status_code == 200, answer.text
    parameters = {p["name"]: p for p in answer.json()["parameter"]}
    assert parameters["subscription"]["valueString"] == sid
    assert parameters["websocket-url"]["valueUrl"] == served.ws
    assert parameters["expiration"]["valueDateTime"]
    token = parameters["token"]["valueString"]
    async with connect(served) as socket:  # as a browser: no Authorization header
        await socket.send(f"bind-with-token {token}")
        assert await said(socket) == f"bound {sid}"
        await write(served, admin, "Patient/bob")
        await write(served, admin, "Patient/alice")
        assert await said(socket) == f"ping {sid}"
        await silent(socket)
    # the binding token is no access token
    refused = await served.http.get("Patient/alice", headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 401


async def test_binding_tokens_only_for_ones_own_websocket_subscriptions(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    alice = served.bearer("patient/*.cruds", patient="alice")
    bob = served.bearer("patient/*.cruds", patient="bob")
    sid = await create(served, websocket_subscription(), alice)
    assert (await binding_token(served, sid, bob)).status_code == 404
    assert (await binding_token(served, "nope", alice)).status_code == 404
    other = await create(served, REST_HOOK_OFF, admin)
    not_websocket = await binding_token(served, other, admin)
    assert not_websocket.status_code == 400
    assert not_websocket.json()["issue"][0]["code"] == "invalid"
    typed = await served.http.get("Subscription/$get-ws-binding-token", headers=admin)
    assert typed.status_code == 400
    both = await served.http.get(
        f"Subscription/$get-ws-binding-token?id={sid}&id={sid}", headers=admin
    )
    assert both.status_code == 200
    assert [p["valueString"] for p in both.json()["parameter"] if p["name"] == "subscription"] == [
        sid
    ]


async def test_an_access_token_or_a_forged_token_does_not_bind(served: Served) -> None:
    alice = served.bearer("patient/*.cruds", patient="alice")
    sid = await create(served, websocket_subscription(), alice)
    token = {p["name"]: p for p in (await binding_token(served, sid, alice)).json()["parameter"]}[
        "token"
    ]["valueString"]
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[::-1]}"
    access = alice["authorization"].split(" ", 1)[1]
    async with connect(served) as socket:
        for bad in (forged, access):
            await socket.send(f"bind-with-token {bad}")
            assert (await said(socket)).startswith("error the binding token is refused")


# -- revocation and changes --------------------------------------------------------------


async def test_a_revoked_creator_ends_the_binding(served: Served) -> None:
    admin = served.bearer("system/*.cruds", client="admin-app")
    await seed(served, admin)
    alice = served.bearer("patient/*.cruds", client="alice-app", patient="alice")
    sid = await create(served, websocket_subscription(), alice)
    async with connect(served, alice) as socket:
        await bind(socket, sid)
        auth = served.app.state.auth
        delete_client(auth.store, auth.token_service(), "alice-app")
        ended = await said(socket)
        assert ended.startswith(f"error {sid} ")
        await write(served, admin, "Patient/alice")
        await silent(socket)


async def test_a_revoked_binder_closes_the_socket(served: Served) -> None:
    admin = served.bearer("system/*.cruds", client="admin-app")
    await seed(served, admin)
    staff = served.bearer("system/*.cruds", client="staff-app")
    sid = await create(served, websocket_subscription(), admin)
    async with connect(served, staff) as socket:
        await bind(socket, sid)
        auth = served.app.state.auth
        delete_client(auth.store, auth.token_service(), "staff-app")
        with pytest.raises(ConnectionClosed) as closed:
            await said(socket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_subscription_turned_off_ends_the_binding(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    sid = await create(served, websocket_subscription(), admin)
    async with connect(served, admin) as socket:
        await bind(socket, sid)
        body = {**websocket_subscription(), "id": sid, "status": "off"}
        assert (await served.http.put(f"Subscription/{sid}", json=body, headers=admin)).is_success
        assert (await said(socket)).startswith(f"error {sid} Subscription/{sid} is no longer")
        await write(served, admin, "Patient/alice")
        await silent(socket)


async def test_a_deleted_subscription_ends_the_binding(served: Served) -> None:
    admin = served.bearer("system/*.cruds")
    await seed(served, admin)
    sid = await create(served, websocket_subscription(), admin)
    async with connect(served, admin) as socket:
        await bind(socket, sid)
        assert (await served.http.delete(f"Subscription/{sid}", headers=admin)).is_success
        assert await said(socket) == f"error {sid} Subscription/{sid} was deleted"
        await write(served, admin, "Patient/alice")
        await silent(socket)
