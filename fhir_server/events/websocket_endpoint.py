"""The websocket endpoint of the R4 ``websocket`` channel
(https://hl7.org/fhir/R4/subscription.html#2.46.7.2), ``[base]/websocket``
(``ws://`` or ``wss://``, advertised in the CapabilityStatement's ``rest`` with the
extension ``http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket``).

The conversation, one text message each:

- client ``bind [id]``: bind the socket to Subscription ``[id]`` with the access token of
  the upgrade request (``Authorization: Bearer``, for clients that can set headers);
- client ``bind-with-token [token]``: bind it to the Subscriptions of a binding token
  from ``Subscription/[id]/$get-ws-binding-token`` (Subscriptions Backport IG: browsers
  cannot set headers on a websocket; ``events.websocket_tokens``);
- server ``bound [id]``, then ``ping [id]`` for each matching event (``events.websocket``);
- server ``error [id] [reason]`` when a bind is refused or a binding ends, and
  ``error [reason]`` for a message that is not a command.

Who may bind: the Subscription is read with the caller's access (the same rule as
``GET Subscription/[id]``: a patient-context token sees only the Subscriptions it made,
staff and ``system/`` tokens any), and the Subscription's creator's grant must be alive.
An unknown id and one the caller may not see get the same answer. An upgrade with an
``Authorization`` header that is not a valid token is refused (``401``
OperationOutcome); one without any may only ``bind-with-token``, and a socket bound to
nothing :data:`BIND_WITHIN` seconds after it opened is closed (code 1008). A client that
lets :data:`QUEUE_MAX` messages pile up is closed (1013). With authorization off anyone
may bind any websocket Subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server.access import GuardedStore
from fhir_server.events.subscriptions import TYPE, creator_extension
from fhir_server.events.websocket import BindRefused, WebsocketHub
from fhir_server.events.websocket_tokens import BadToken, verify
from fhir_server.interactions.context import check_id
from fhir_server.routes import FHIR_PREFIX, error_response
from resources import fhir_json
from resources.errors import FhirError
from smart_auth.scopes import AccessPolicy
from smart_auth.service import AuthError

log = logging.getLogger("fhir_server.events")

MAX_MESSAGE = 4096
"""Characters of the longest message a client may send."""
MAX_BINDINGS = 100
"""Subscriptions one socket may be bound to."""
QUEUE_MAX = 1000
"""Messages waiting for a slow client before its socket is closed."""
BIND_WITHIN = 30.0
"""Seconds a socket may stay bound to nothing after it opened."""
NOT_KNOWN = "Subscription/{id} is not known, or not yours"


class Connection:
    """One open websocket: its outgoing queue (sent in order by :meth:`send_all`) and
    the authorizations it was bound with (for ``events.websocket``)."""

    def __init__(self, websocket: WebSocket, policy: AccessPolicy | None) -> None:
        self.websocket = websocket
        self.policy = policy
        self.binder: dict[str, Any] | None = None
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.closing: tuple[int, str] | None = None

    def push(self, text: str) -> None:
        if self.closing is not None:
            return
        if self.queue.qsize() >= QUEUE_MAX:
            self.end(1013, "too many notifications waiting: read faster, then bind again")
            return
        self.queue.put_nowait(text)

    def end(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.queue.put_nowait(None)

    def bound_with(self, policy: AccessPolicy | None) -> None:
        """Remember the authorization of a bind: when it is revoked the socket closes."""
        if policy is not None and self.binder is None:
            self.binder = {"extension": [creator_extension(policy)]}

    async def send_all(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None:
                code, reason = self.closing or (1000, "")
                await self.websocket.close(code, reason)
                return
            await self.websocket.send_text(text)


async def websocket_endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    auth = getattr(app.state, "auth", None)
    base = fhir_base(websocket)
    policy = None
    header = websocket.headers.get("authorization")
    if auth is not None and header is not None:
        try:
            policy = auth.authenticate(header, base)
        except AuthError as failure:
            await _deny(websocket, failure)
            return
    await websocket.accept()
    hub: WebsocketHub = app.state.dispatcher.websockets
    connection = Connection(websocket, policy)
    sender = asyncio.create_task(connection.send_all())
    reader = asyncio.create_task(_read(connection, hub, auth, base, app.state.dispatcher.store))
    watchdog = asyncio.create_task(_unbound_closes(connection, hub))
    try:
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.unbind(connection)
        for task in (sender, reader, watchdog):
            task.cancel()
        for task in (sender, reader, watchdog):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _read(
    connection: Connection, hub: WebsocketHub, auth: Any, base: str, store: Any
) -> None:
    websocket = connection.websocket
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            connection.push("error binary messages are not commands: send text")
        elif len(text) > MAX_MESSAGE:
            connection.push(f"error a message is at most {MAX_MESSAGE} characters")
        else:
            await _command(text.strip(), connection, hub, auth, base, store)


async def _command(
    text: str, connection: Connection, hub: WebsocketHub, auth: Any, base: str, store: Any
) -> None:
    verb, _, argument = text.partition(" ")
    argument = argument.strip()
    if verb == "bind" and argument:
        if auth is not None and connection.policy is None:
            connection.push(
                f"error {argument} binding needs an access token (Authorization: Bearer on the"
                " upgrade request), or use bind-with-token"
            )
            return
        await _bind(connection, hub, store, [argument], connection.policy)
    elif verb == "bind-with-token" and argument:
        try:
            binding = verify(auth, base, argument)
        except BadToken as bad:
            connection.push(f"error the binding token is refused: {bad}")
            return
        await _bind(connection, hub, store, list(binding.subscriptions), binding.policy)
    else:
        connection.push("error unknown command: send 'bind [id]' or 'bind-with-token [token]'")


async def _bind(
    connection: Connection,
    hub: WebsocketHub,
    store: Any,
    ids: list[str],
    policy: AccessPolicy | None,
) -> None:
    reader = store if policy is None else GuardedStore(store, policy)
    for id_ in ids:
        if hub.bound_count(connection) >= MAX_BINDINGS:
            connection.push(f"error {id_} a socket binds at most {MAX_BINDINGS} subscriptions")
            continue
        try:
            check_id(id_)
            stored = await reader.read(TYPE, id_)
        except FhirError:
            stored = None
        if stored is None or stored.deleted or stored.content is None:
            connection.push(f"error {id_} {NOT_KNOWN.format(id=id_)}")
            continue
        try:
            await hub.bind(connection, stored, fhir_json.loads(stored.content))
        except BindRefused as refused:
            connection.push(f"error {id_} {refused}")
            continue
        connection.bound_with(policy)
        connection.push(f"bound {id_}")


async def _unbound_closes(connection: Connection, hub: WebsocketHub) -> None:
    await asyncio.sleep(BIND_WITHIN)
    if hub.bound_count(connection) == 0:
        connection.end(1008, f"no subscription was bound within {BIND_WITHIN:g} seconds")


async def _deny(websocket: WebSocket, failure: AuthError) -> None:
    """Refuse the upgrade: a 401 OperationOutcome where the server can send one (the
    ASGI websocket denial response), else the close before accepting (HTTP 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        error = FhirError(failure.status, "login", failure.message)
        if failure.www_authenticate:
            error.headers["WWW-Authenticate"] = failure.www_authenticate
        await websocket.send_denial_response(error_response(error))
    else:
        await websocket.close(1008, failure.message)


def fhir_base(websocket: WebSocket) -> str:
    """The public FHIR base URL the socket belongs to (the issuer of its tokens):
    configured, or the ``http(s)`` address the upgrade request came to."""
    settings = websocket.app.state.settings
    if settings.base_url:
        return str(settings.base_url).rstrip("/")
    scheme, sep, rest = str(websocket.base_url).rstrip("/").partition("://")
    return f"{_HTTP.get(scheme, scheme)}{sep}{rest}{FHIR_PREFIX}"


_HTTP = {"ws": "http", "wss": "https"}
