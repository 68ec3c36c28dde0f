"""What the server checks and records when a Subscription is written
(https://hl7.org/fhir/R4/subscription.html), on every path that writes one through the
API (create, update, patch, conditional interactions, batch and transaction entries):

- the ``criteria`` is a strict search (``fhir_server.events.criteria``): 400 naming an
  unknown parameter or a bad value;
- the channel is ``rest-hook``, whose endpoint passes the outbound guard without network
  activity (400 otherwise; ``fhir_server.events.rest_hook``), ``email`` to one
  ``mailto:`` address (``fhir_server.events.email_channel``), or ``websocket``
  (``fhir_server.events.websocket_channel``: stored ``active`` at once); other types
  are 400;
- the status a client writes becomes ``requested`` (``off`` stays ``off``): the
  dispatcher checks the endpoint (the guard's address checks) and makes it ``active``;
  nothing is delivered before;
- the server records the context of the token that wrote it in the extension
  :data:`CREATOR` (client id, ``fhirUser``, user account, the grant's ``family``, granted
  scopes and, for patient-context tokens, the patient as a Reference), replacing any the
  client sent; the dispatcher stops the Subscription when that grant, account or client
  is revoked (``fhir_server.events.grants``). The dispatcher
  matches events under that context's read access, so a patient's subscription hears
  only of what that patient may read. The patient Reference also makes the
  Subscription a member of that patient's compartment (Subscription is outside the R4
  Patient compartment: its memberships are the patients it refers to, see
  ``resources.compartments.memberships``), so a patient-context token reads and changes
  only the Subscriptions it wrote.

Bulk import stores Subscriptions as given (an administrator's data): without
:data:`CREATOR` a Subscription is matched without access limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fhir_server.access import PolicyLike, compile_access
from fhir_server.events import backport, email_channel, rest_hook, websocket_channel
from fhir_server.events.criteria import parse_criteria
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.outbound import OutboundGuard
from fhir_server.storage.base import WriteRequest
from resources import fhir_json
from resources.search.query import AccessClause

CREATOR = "urn:fhir-server:subscription-creator"
"""The extension holding the context of the token that wrote the Subscription."""

TYPE = "Subscription"


def write_rule(
    guard: OutboundGuard, policy: PolicyLike | None
) -> Callable[[WriteRequest], WriteRequest]:
    """The rule applied to each write request of one API request."""

    def prepare(request: WriteRequest) -> WriteRequest:
        if request.type != TYPE or request.method == "delete" or request.build is None:
            return request
        resource = fhir_json.loads(request.build(0, ""))
        checked = checked_subscription(resource, guard, policy)
        return replace(
            request,
            build=content_builder(checked, request.id),
            index=index_entries(checked, request.id),
        )

    return prepare


def checked_subscription(
    resource: dict[str, Any], guard: OutboundGuard, policy: PolicyLike | None
) -> dict[str, Any]:
    """The Subscription to store (raises FhirError 400)."""
    criteria = resource.get("criteria")
    if backport.is_topic_based(resource):  # a SubscriptionTopic's canonical (events.backport)
        backport.check(resource)
    else:
        parse_criteria(criteria if isinstance(criteria, str) else "")
    channel = resource.get("channel")
    if isinstance(channel, dict) and channel.get("type") == "email":
        email_channel.check_channel(channel)
    elif isinstance(channel, dict) and channel.get("type") == websocket_channel.TYPE:
        websocket_channel.check_channel(channel, backport.is_topic_based(resource))
    else:
        rest_hook.check_channel(channel, guard)
    out = dict(resource)
    if out.get("status") != "off":
        # a websocket has no endpoint to check: active at once (events.websocket_channel)
        out["status"] = "active" if websocket_channel.is_websocket(out) else "requested"
        out.pop("error", None)
    extensions = [
        e
        for e in out.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == CREATOR)
    ]
    if policy is not None:
        extensions.append(creator_extension(policy))
    if extensions:
        out["extension"] = extensions
    else:
        out.pop("extension", None)
    return out


def creator_extension(policy: PolicyLike) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    client_id = getattr(policy, "client_id", None)
    if client_id:
        parts.append({"url": "client", "valueString": str(client_id)})
    if policy.fhir_user:
        parts.append({"url": "user", "valueString": policy.fhir_user})
    for name in ("subject", "family"):  # the account and the grant (see events.grants)
        value = getattr(policy, name, None)
        if value:
            parts.append({"url": name, "valueString": str(value)})
    scope = getattr(policy, "scope", "")
    if scope:
        parts.append({"url": "scope", "valueString": str(scope)})
    for patient in _patients(policy):
        parts.append({"url": "patient", "valueReference": {"reference": patient}})
    return {"url": CREATOR, "extension": parts}


def _patients(policy: PolicyLike) -> list[str]:
    """The patients a patient-context token is limited to (none for other tokens)."""
    clause = compile_access(policy, "r")
    if not clause.grants or any(g.compartments is None for g in clause.grants):
        return []
    return sorted({c for g in clause.grants for c in g.compartments or ()})


def subscriber_access(subscription: dict[str, Any]) -> AccessClause | None:
    """What the Subscription's creator may read (None: no limit; no creator recorded)."""
    from smart_auth.scopes import AccessPolicy, parse_scopes

    fields = creator_fields(subscription)
    if fields is None:
        return None
    patient = fields.get("patient", "")
    policy = AccessPolicy(
        rules=parse_scopes(fields.get("scope", ""), strict=False).rules,
        client_id=fields.get("client", ""),
        fhir_user=fields.get("user"),
        patient=patient.split("/", 1)[1] if patient.startswith("Patient/") else None,
    )
    clause = compile_access(policy, "r")
    return None if clause.unrestricted else clause


def creator_fields(subscription: dict[str, Any]) -> dict[str, str] | None:
    """The parts of the :data:`CREATOR` extension (client, user, subject, family, scope,
    patient), None when the Subscription has none."""
    creator = next(
        (
            e
            for e in subscription.get("extension") or []
            if isinstance(e, dict) and e.get("url") == CREATOR
        ),
        None,
    )
    if creator is None:
        return None
    fields: dict[str, str] = {}
    for part in creator.get("extension") or []:
        if not isinstance(part, dict):
            continue
        value = part.get("valueString")
        if value is None and isinstance(part.get("valueReference"), dict):
            value = part["valueReference"].get("reference")
        if isinstance(value, str):
            fields.setdefault(str(part.get("url")), value)
    return fields


class SubscriptionWrites:
    """The store with :func:`write_rule` applied to its writes (when authorization is
    off; ``GuardedStore`` applies it otherwise); everything else passes through."""

    def __init__(self, inner: Any, prepare: Callable[[WriteRequest], WriteRequest]) -> None:
        self.inner = inner
        self._prepare = prepare

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, request: WriteRequest) -> Any:
        return await self.inner.write(self._prepare(request))

    async def write_batch(self, requests: Any) -> Any:
        return await self.inner.write_batch([self._prepare(r) for r in requests])
