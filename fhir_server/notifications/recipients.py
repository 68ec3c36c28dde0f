"""Who hears of a patient's event, and how (issue 17, "Who and how").

The people: the Patient, and the caregivers with proxy access, i.e. the active
``RelatedPerson``s of that patient (the same relationships the SMART sign-in grants
access by), each reached through their own ``telecom``: the ``email`` contact point with
the lowest ``rank`` that is not ``use: old`` and whose ``period`` has not ended, and for
text messages the ``sms`` one (or a ``phone`` of ``use: mobile``) chosen the same way.

Their preferences are FHIR resources they can read and write with patient scopes: a
``Basic`` resource per person (``Basic`` is in the Patient compartment, so the patient's
own token writes it), coded :data:`PREFERENCES`, whose ``subject`` is the person
(``Patient/…`` or ``RelatedPerson/…``), with one :data:`OPT_OUT` extension per opt-out::

    {"resourceType": "Basic",
     "code": {"coding": [{"system": "urn:fhir-server:notification", "code": "preferences"}]},
     "subject": {"reference": "Patient/p1"},
     "extension": [
       {"url": "urn:fhir-server:notification-opt-out",
        "extension": [{"url": "channel", "valueCode": "email"},
                      {"url": "kind", "valueCode": "new-invoice"}]}]}

An opt-out with a ``channel`` and no ``kind`` silences that channel; with a ``kind`` and
no ``channel``, that kind everywhere; with both, that kind on that channel. Without any
``Basic``, everything is sent. The same ``Basic`` may hold the person's quiet hours
(``quiet_hours``), during which messages wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.notifications.quiet_hours import QUIET_HOURS, QuietHours, from_extension
from resources import fhir_json
from resources.search.parameters import search_params
from resources.search.parse import parse_search

PREFERENCES_SYSTEM = "urn:fhir-server:notification"
PREFERENCES = f"{PREFERENCES_SYSTEM}|preferences"
OPT_OUT = "urn:fhir-server:notification-opt-out"


@dataclass(frozen=True, slots=True)
class Person:
    reference: str
    """``Patient/p1`` or ``RelatedPerson/r1``."""
    email: str | None
    phone: str | None = None
    """Where text messages go: an ``sms`` contact point, else a ``mobile`` phone."""


async def people_of(store: Any, patient: str) -> list[Person]:
    """The patient (``Patient/id``) and the active caregivers of that patient."""
    out: list[Person] = []
    type_, _, id_ = patient.partition("/")
    stored = await store.read(type_, id_)
    if stored is None or stored.content is None:
        return out
    resource = fhir_json.loads(stored.content)
    if resource.get("active") is False or resource.get("deceasedBoolean") is True:
        return out
    out.append(Person(patient, best_email(resource), best_phone(resource)))
    for related in await _search(store, "RelatedPerson", [("patient", patient)]):
        if related.get("active") is False or _ended(related.get("period")):
            continue
        reference = f"RelatedPerson/{related['id']}"
        out.append(Person(reference, best_email(related), best_phone(related)))
    return out


@dataclass(frozen=True, slots=True)
class Preferences:
    """A person's preferences: opt-outs ``(channel, kind)`` (None: any) and quiet hours."""

    opt_outs: tuple[tuple[str | None, str | None], ...] = ()
    quiet: QuietHours | None = None
    quiet_set: bool = False
    """Whether the person set quiet hours (equal start and end: none, not the default)."""

    def opted_out(self, channel: str, kind: str) -> bool:
        return any(c in (None, channel) and k in (None, kind) for c, k in self.opt_outs)


async def preferences_of(store: Any, person: str, default_zone: str = "UTC") -> Preferences:
    """``person``'s preferences (see the module)."""
    found = await _search(store, "Basic", [("subject", person), ("code", PREFERENCES)])
    opt_outs: list[tuple[str | None, str | None]] = []
    quiet: QuietHours | None = None
    quiet_set = False
    for basic in found:
        for ext in basic.get("extension") or []:
            if not isinstance(ext, dict):
                continue
            if ext.get("url") == QUIET_HOURS and not quiet_set:
                quiet = from_extension(ext, default_zone)
                quiet_set = quiet is not None
            if ext.get("url") != OPT_OUT:
                continue
            parts = {
                str(p.get("url")): p.get("valueCode")
                for p in ext.get("extension") or []
                if isinstance(p, dict)
            }
            opt_outs.append((parts.get("channel"), parts.get("kind")))
    return Preferences(tuple(opt_outs), quiet, quiet_set)


async def opted_out(store: Any, person: str, channel: str, kind: str) -> bool:
    """Whether ``person``'s preferences turn off ``kind`` on ``channel``."""
    return (await preferences_of(store, person)).opted_out(channel, kind)


def best_email(resource: dict[str, Any]) -> str | None:
    """The email contact point to use: lowest ``rank`` (none: last), not old or ended."""
    return _best(resource, lambda p: p.get("system") == "email", "@")


def best_phone(resource: dict[str, Any]) -> str | None:
    """The contact point text messages go to: ``system`` ``sms``, or a ``phone`` of
    ``use`` ``mobile``; lowest ``rank``, not old or ended."""

    def texts(point: dict[str, Any]) -> bool:
        system = point.get("system")
        return system == "sms" or (system == "phone" and point.get("use") == "mobile")

    return _best(resource, texts, "")


def _best(resource: dict[str, Any], wanted: Any, needs: str) -> str | None:
    found = []
    for n, point in enumerate(resource.get("telecom") or []):
        if not isinstance(point, dict) or not wanted(point):
            continue
        value = point.get("value")
        if not isinstance(value, str) or needs not in value or point.get("use") == "old":
            continue
        if _ended(point.get("period")):
            continue
        rank = point.get("rank")
        found.append((rank if isinstance(rank, int) else 1 << 30, n, value.strip()))
    return min(found)[2] if found else None


def _ended(period: Any) -> bool:
    end = period.get("end") if isinstance(period, dict) else None
    if not isinstance(end, str):
        return False
    return end < datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")[: len(end)]


async def _search(store: Any, type_: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    query = parse_search(
        [type_], params, strict=True, params_for=search_params, max_count=100, default_count=100
    )
    page = await store.search(query, None, 100, False)
    return [fhir_json.loads(s.content) for s in page.entries if s.content is not None]
