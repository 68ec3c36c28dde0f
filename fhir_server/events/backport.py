"""Topic-based Subscriptions of the Subscriptions R5 Backport IG for R4 (STU 1.1,
https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/StructureDefinition-backport-subscription.html):
what a client may write, and which events of the outbox such a Subscription notifies.

A Subscription is topic-based when its ``criteria`` is a topic canonical (an absolute
URL, ``topics.CANONICAL_BASE`` + name) or it claims the profile :data:`PROFILE`.
Checked when it is written (400 naming what is wrong, nothing stored):

- the topic must be one of the server's (``topics.TOPICS``);
- each filter, an extension :data:`FILTER` on ``_criteria`` (``valueString``), is a search
  on one of the topic's resources, ``Observation?patient=Patient/123&code=...``, or
  without the type (``patient=Patient/123``: for every resource of the topic); each
  parameter must be one of the topic's ``canFilterBy`` for that resource, and the search
  is parsed strictly (``criteria.parse_criteria``: a bad value is 400);
- ``channel.type`` ``rest-hook`` (or ``websocket`` when a channel of that name checks it:
  the channel's own rules apply to the rest of the channel);
- the payload content, an extension :data:`CONTENT` on ``channel._payload``: ``empty``,
  ``id-only`` (the default) or ``full-resource``;
- :data:`HEARTBEAT` (``valueUnsignedInt`` seconds, 1..86400), :data:`TIMEOUT`
  (``valueUnsignedInt`` seconds, 1..60), :data:`MAX_COUNT` (``valuePositiveInt``) on
  ``channel``. Each notification carries one event, so every ``max-count`` is met.

An event matches when its resource type is a trigger of the topic, its interaction is
one the trigger supports (a patch is an update), the new version is in the results of
the trigger's ``current`` search plus the filters for that type, under the creator's
read access (``events.matching``: the same search as classic criteria, so a patient's
Subscription hears only of what that patient may read), and, for triggers on reaching a
status, the version before had another status. A delete matches when the deleted
version did. Unlike a classic Subscription (which hears of the latest state), every
version is an event: one replaced by a later event of the same batch is matched on its
own (in the matcher's scratch store, as a deleted version is). Chained parameters and
``_has`` cannot be followed there: such a replaced version does not match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.events.criteria import parse_criteria
from fhir_server.events.matching import Matcher, Needs, reference_needs
from fhir_server.events.outbox import Event, Notification
from fhir_server.events.topics import Topic, Trigger, topic_of
from resources import fhir_json
from resources.errors import FhirError, invalid
from resources.search.query import AccessClause, SearchQuery

IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
PROFILE = IG + "backport-subscription"
FILTER = IG + "backport-filter-criteria"
CONTENT = IG + "backport-payload-content"
HEARTBEAT = IG + "backport-heartbeat-period"
TIMEOUT = IG + "backport-timeout"
MAX_COUNT = IG + "backport-max-count"
CONTENTS = ("empty", "id-only", "full-resource")
CHANNELS = ("rest-hook", "websocket")
_METHODS = {"create": "create", "update": "update", "patch": "update", "delete": "delete"}


@dataclass(frozen=True, slots=True)
class TopicNotification(Notification):
    """A notification of a topic-based Subscription: what it needs besides the
    resource (the version, the interaction and when it happened)."""

    version: int = 0
    method: str = "create"
    timestamp: str = ""


@dataclass(frozen=True)
class Plan:
    """A checked topic-based Subscription: what to match and how to notify."""

    topic: Topic
    searches: dict[str, SearchQuery]
    """Per resource type of the topic: the trigger's ``current`` search plus the filters."""
    content: str = "id-only"
    heartbeat: int | None = None
    timeout: int | None = None
    max_count: int | None = None
    filters: tuple[str, ...] = field(default=())

    @property
    def needs(self) -> Needs:
        """What an event's resource must refer to to match (``matching.reference_needs``):
        those of the searches when every resource of the topic has the same (a filter
        ``patient=Patient/123`` on each), else none (every event is searched)."""
        found = {reference_needs(search) for search in self.searches.values()}
        return found.pop() if len(found) == 1 else ()

    @property
    def group(self) -> str:
        """Subscriptions with equal groups (and creators) match with the same searches."""
        return json.dumps([self.topic.canonical, sorted(self.filters)])


def is_topic_based(resource: dict[str, Any]) -> bool:
    criteria = resource.get("criteria")
    profiles = (resource.get("meta") or {}).get("profile") or []
    if isinstance(profiles, list) and any(str(p).split("|")[0] == PROFILE for p in profiles):
        return True
    return isinstance(criteria, str) and "://" in criteria.split("?", 1)[0]


def plan_of(resource: dict[str, Any]) -> Plan | None:
    """The plan of a topic-based Subscription (None for a classic one); raises
    ``FhirError`` 400 naming what is wrong."""
    if not is_topic_based(resource):
        return None
    criteria = resource.get("criteria")
    topic = topic_of(criteria) if isinstance(criteria, str) else None
    if topic is None:
        raise invalid(
            f"Subscription.criteria {criteria!r} is not a SubscriptionTopic of this server"
            " (the CapabilityStatement lists them)",
            "Subscription.criteria",
        )
    filters = _strings(resource.get("_criteria"), FILTER, "Subscription._criteria")
    channel = resource.get("channel") if isinstance(resource.get("channel"), dict) else {}
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise invalid(
            f"Subscription.channel.type {kind!r} is not supported for a topic-based"
            f" Subscription ({', '.join(CHANNELS)})",
            "Subscription.channel.type",
        )
    return Plan(
        topic=topic,
        searches=_searches(topic, filters),
        content=_content(channel),
        heartbeat=_number(channel, HEARTBEAT, "valueUnsignedInt", 1, 86400),
        timeout=_number(channel, TIMEOUT, "valueUnsignedInt", 1, 60),
        max_count=_number(channel, MAX_COUNT, "valuePositiveInt", 1, 1_000_000),
        filters=tuple(filters),
    )


def check(resource: dict[str, Any]) -> None:
    """Raise ``FhirError`` 400 unless the topic-based Subscription is one to store."""
    plan_of(resource)


def _extensions(element: Any, url: str, where: str) -> list[dict[str, Any]]:
    if element is None:
        return []
    if not isinstance(element, dict) or not isinstance(element.get("extension", []), list):
        raise invalid(f"{where} must be an element with extensions", where)
    return [e for e in element.get("extension", []) if isinstance(e, dict) and e.get("url") == url]


def _strings(element: Any, url: str, where: str) -> list[str]:
    out = []
    for extension in _extensions(element, url, where):
        value = extension.get("valueString")
        if not isinstance(value, str) or not value.strip():
            raise invalid(f"The extension {url} needs a valueString", f"{where}.extension")
        out.append(value.strip())
    return out


def _searches(topic: Topic, filters: list[str]) -> dict[str, SearchQuery]:
    """Each trigger's search: its ``current`` parameters and the filters for its type."""
    extra: dict[str, list[tuple[str, str]]] = {t.resource: [] for t in topic.triggers}
    for text in filters:
        type_, mark, query = text.partition("?")
        if not mark and "=" in type_:  # no type: for every resource of the topic
            type_, query = "", text
        targets = topic.triggers if not type_ else [topic.trigger(type_)]
        if targets == [None]:
            raise invalid(
                f"The filter {text!r} names {type_!r}, which the topic {topic.canonical}"
                f" is not about ({', '.join(t.resource for t in topic.triggers)})",
                "Subscription._criteria",
            )
        for trigger in targets:
            assert trigger is not None
            extra[trigger.resource] += _filter_items(topic, trigger, query, bool(type_), text)
    searches = {}
    for trigger in topic.triggers:
        items = parse_qsl(trigger.current, keep_blank_values=True) + extra[trigger.resource]
        query = "&".join(f"{k}={_quote(v)}" for k, v in items)
        try:
            searches[trigger.resource] = parse_criteria(f"{trigger.resource}?{query}")
        except FhirError as error:
            raise invalid(
                f"A filter of Subscription._criteria is not valid for {trigger.resource}:"
                f" {error.diagnostics}",
                "Subscription._criteria",
            ) from None
    return searches


def _filter_items(
    topic: Topic, trigger: Trigger, query: str, typed: bool, text: str
) -> list[tuple[str, str]]:
    items = parse_qsl(query, keep_blank_values=True)
    if not items:
        raise invalid(f"The filter {text!r} has no parameter", "Subscription._criteria")
    out = []
    for name, value in items:
        code = name if typed else trigger.alias(name)
        if code.split(":", 1)[0] not in trigger.filters:
            raise invalid(
                f"The filter parameter {name!r} of {text!r} is not one the topic"
                f" {topic.canonical} can filter {trigger.resource} by"
                f" ({', '.join(trigger.filters)})",
                "Subscription._criteria",
            )
        if code == "_id" and not typed and "/" in value:
            value = value.rsplit("/", 1)[1]  # patient=Patient/123 is _id=123 on Patient
        out.append((code, value))
    return out


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="|/:,.-_")


def _content(channel: dict[str, Any]) -> str:
    found = _extensions(channel.get("_payload"), CONTENT, "Subscription.channel._payload")
    if not found:
        return "id-only"
    value = found[-1].get("valueCode")
    if value not in CONTENTS:
        raise invalid(
            f"The payload content {value!r} is not one of {', '.join(CONTENTS)}",
            "Subscription.channel._payload.extension",
        )
    return str(value)


def _number(channel: dict[str, Any], url: str, kind: str, low: int, high: int) -> int | None:
    found = [
        e for e in channel.get("extension") or [] if isinstance(e, dict) and e.get("url") == url
    ]
    if not found:
        return None
    value = found[-1].get(kind)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        name = url.rsplit("/", 1)[1]
        raise invalid(
            f"The extension {name} needs a {kind} from {low} to {high} (not {value!r})",
            "Subscription.channel.extension",
        )
    return value


async def matches(
    matcher: Matcher, events: list[Event], plan: Plan, access: AccessClause | None
) -> dict[int, TopicNotification]:
    """The notifications of the events the topic-based Subscription notifies, by seq."""
    found: dict[int, TopicNotification] = {}
    for trigger in plan.topic.triggers:
        batch = [
            e
            for e in events
            if e.type == trigger.resource and _METHODS.get(e.method) in trigger.interactions
        ]
        if not batch:
            continue
        search = plan.searches[trigger.resource]
        hits = await matcher.matches(batch, search, access)
        hits.update(await _superseded_hits(matcher, events, batch, hits, search, access))
        by_seq = {e.seq: e for e in batch}
        for seq, hit in hits.items():
            event = by_seq[seq]
            if event.method in ("update", "patch") and await _was_in_state(
                matcher.store, event, trigger
            ):
                continue
            found[seq] = _notification(event, hit)
    return found


async def _superseded_hits(
    matcher: Matcher,
    events: list[Event],
    batch: list[Event],
    hits: dict[int, Notification],
    search: SearchQuery,
    access: AccessClause | None,
) -> dict[int, Notification]:
    """The matches among the versions replaced later in ``events``: the search sees
    current versions only, but a topic notifies every event (an Appointment booked and
    cancelled at once is two events; a result made final and corrected at once is still
    a new final result). Each is matched as a deletion's version is (``Matcher``: the
    version in a scratch store)."""
    newest: dict[tuple[str, str], int] = {}
    for event in events:
        key = (event.type, event.id)
        newest[key] = max(newest.get(key, 0), event.version)
    found: dict[int, Notification] = {}
    for event in batch:
        if event.seq in hits or event.method == "delete":
            continue
        if newest[(event.type, event.id)] <= event.version:
            continue
        # the check of "the version before ``version``" applied to the version after it
        probe = replace(event, version=event.version + 1)
        if await matcher._deleted_matched(probe, search, access):
            stored = await matcher.store.vread(event.type, event.id, event.version)
            content = stored.content if stored is not None else None
            found[event.seq] = Notification(event.type, event.id, content)
    return found


async def _was_in_state(store: Any, event: Event, trigger: Trigger) -> bool:
    """Whether the version before already had one of the trigger's statuses (then the
    update does not "reach" it)."""
    if not trigger.previous_status_not or event.version <= 1:
        return False
    before = await store.vread(event.type, event.id, event.version - 1)
    if before is None or before.deleted or before.content is None:
        return False
    return fhir_json.loads(before.content).get("status") in trigger.previous_status_not


def _notification(event: Event, hit: Notification) -> TopicNotification:
    timestamp = ""
    if hit.content is not None:
        timestamp = (fhir_json.loads(hit.content).get("meta") or {}).get("lastUpdated", "")
    return TopicNotification(
        hit.type,
        hit.id,
        hit.content,
        hit.deleted,
        version=event.version,
        method=_METHODS.get(event.method, event.method),
        timestamp=timestamp,
    )
