"""``Subscription/[id]/$get-ws-binding-token`` and ``Subscription/$get-ws-binding-token?id=``
(Subscriptions R5 Backport IG,
https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-get-ws-binding-token.html):
a short-lived token with which a websocket that cannot send ``Authorization`` (a
browser's) binds to websocket Subscriptions: ``bind-with-token [token]``
(``fhir_server.events.websocket_endpoint``, ``events.websocket_tokens``).

Each Subscription is read with the caller's access (``ctx.store``: a patient-context
token gets tokens for its own Subscriptions only; another's is ``404`` like a read), and
must have a websocket channel (``400`` otherwise). The answer is a ``Parameters`` with
``token``, ``expiration``, one ``subscription`` (the id) per Subscription and
``websocket-url``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fhir_server.events.websocket_channel import is_websocket, websocket_url
from fhir_server.events.websocket_tokens import issue_token
from fhir_server.interactions.context import check_id
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
    policy_of,
)
from resources import fhir_json
from resources.errors import FhirError, invalid
from resources.fhir_datetime import format_instant

CANONICAL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
    "backport-subscription-get-ws-binding-token"
)
MAX_IDS = 100
"""Subscriptions one token may bind."""
TYPE = "Subscription"


async def handle(ctx: Context, call: Invocation) -> FhirResponse:
    ids = [call.id] if call.id is not None else list(dict.fromkeys(call.values("id")))
    if not ids:
        raise invalid("Name the Subscriptions to bind: id=[id] (one or more)", "id")
    if len(ids) > MAX_IDS:
        raise invalid(f"A binding token binds at most {MAX_IDS} Subscriptions", "id")
    for id_ in ids:
        check_id(id_, "id")
        stored = await ctx.store.read(TYPE, id_)
        if stored is None or stored.deleted or stored.content is None:
            raise FhirError(404, "not-found", f"Subscription/{id_} is not known")
        if not is_websocket(fhir_json.loads(stored.content)):
            raise invalid(
                f"Subscription/{id_} does not have a websocket channel", "Subscription.channel"
            )
    token, expires = issue_token(ctx.auth, ctx.base_url, policy_of(ctx), ids)
    expiration = format_instant(datetime.fromtimestamp(expires, UTC))
    parameters = [
        {"name": "token", "valueString": token},
        {"name": "expiration", "valueDateTime": expiration},
        *({"name": "subscription", "valueString": id_} for id_ in ids),
        {"name": "websocket-url", "valueUrl": websocket_url(ctx.base_url)},
    ]
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": parameters})


_PARAMETERS = (
    OperationParameter("id", "id", max="*", documentation="type level: the Subscriptions"),
    OperationParameter("token", "string", min=1, use="out"),
    OperationParameter("expiration", "dateTime", min=1, use="out"),
    OperationParameter("subscription", "string", max="*", use="out"),
    OperationParameter("websocket-url", "url", min=1, use="out"),
)
_SCOPES = ("patient/Subscription.rs", "user/Subscription.rs", "system/Subscription.rs")
_DOCUMENTATION = (
    "A token (valid 60 seconds) with which a websocket binds to these websocket"
    " Subscriptions: send 'bind-with-token [token]' on websocket-url (browsers cannot send"
    " Authorization on a websocket). Only Subscriptions the caller may read."
)

OPERATION = Operation(
    definitions=tuple(
        OperationDefinition(
            "get-ws-binding-token",
            CANONICAL,
            level,
            resource_types=(TYPE,),
            parameters=_PARAMETERS,
            scopes=_SCOPES,
            documentation=_DOCUMENTATION,
        )
        for level in ("type", "instance")
    ),
    handler=handle,
)
