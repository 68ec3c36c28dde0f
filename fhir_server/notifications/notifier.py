"""Sending one notification to the people of a patient, and its record
(https://hl7.org/fhir/R4/communication.html).

For each person (``recipients.people_of``) and channel (email through the configured SMTP
server, ``mailer``; text messages through the SMS provider, ``sms``) for which the person
has an address and has not opted out of that kind on that channel, the text of the kind
(``templates``) is sent, and every message, sent or failed, is recorded as a
``Communication`` so that staff and the patient can see what was sent:

- ``status`` ``completed``, or ``not-done`` with a ``statusReason`` when the SMTP server or
  the SMS gateway did not accept it, or ``on-hold`` (no ``sent`` yet) while it waits for
  the end of the recipient's quiet hours (``quiet_hours``);
- ``category`` ``http://terminology.hl7.org/CodeSystem/communication-category``
  ``notification`` (``reminder`` for reminders);
- ``medium`` ``EMAILWRIT`` or ``SMSWRIT``
  (``http://terminology.hl7.org/CodeSystem/v3-ParticipationMode``);
- ``recipient`` the person, ``subject`` the patient, ``about`` what it is about, ``sent``;
- ``payload`` the text sent (no clinical detail), ``meta.tag`` :data:`SENT_TAG` (so the
  server's own records are never taken for a new message to the patient), and for
  reminders an ``identifier`` that makes each reminder be sent once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.notifications.health_maintenance import moment_of
from fhir_server.notifications.mailer import Mailer, MailError
from fhir_server.notifications.quiet_hours import QuietHours
from fhir_server.notifications.recipients import (
    Person,
    Preferences,
    people_of,
    preferences_of,
)
from fhir_server.notifications.sms import SmsError, SmsProvider
from fhir_server.notifications.templates import Templates, Text
from fhir_server.storage.base import WriteRequest, now_instant

log = logging.getLogger("fhir_server.notifications")

CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
MEDIUM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
MEDIA = {"email": "EMAILWRIT", "sms": "SMSWRIT"}
SENT_TAG = {"system": "urn:fhir-server:notification", "code": "sent"}
QUIET = "Waiting for the end of the recipient's quiet hours"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a deferred message: ``failure`` (None: sent) and whether it was
    handed to the mail server or gateway at all (``attempted``)."""

    failure: str | None
    attempted: bool


class Notifier:
    """Sends notifications by email (``mailer``) and text message (``sms``), each when
    configured; during a person's quiet hours (``quiet_hours``; ``default_quiet`` for
    those who set none) a message is recorded ``on-hold`` instead, and sent later."""

    def __init__(
        self,
        store: Any,
        mailer: Mailer | None,
        templates: Templates,
        portal_url: str,
        sms: SmsProvider | None = None,
        *,
        timezone: str = "UTC",
        default_quiet: QuietHours | None = None,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.sms = sms
        self.templates = templates
        self.portal_url = portal_url
        self.timezone = timezone
        self.default_quiet = default_quiet

    async def notify(
        self,
        kind: str,
        patient: str,
        about: str,
        *,
        category: str = "notification",
        identifier: str | None = None,
        **values: str,
    ) -> int:
        """Send ``kind`` about ``about`` to the people of ``patient``; how many messages
        were sent (deferred ones are not counted)."""
        text = self.templates.render(kind, portal_url=self.portal_url, **values)
        now = datetime.now(UTC)
        sent = 0
        for person in await people_of(self.store, patient):
            preferences = await preferences_of(self.store, person.reference, self.timezone)
            until = self._quiet_until(preferences, now)
            for channel, address in self._addresses(person):
                if preferences.opted_out(channel, kind):
                    continue
                failure = None
                if until is None:
                    failure = await self._send(channel, address, text, kind, person.reference)
                    sent += failure is None
                await record_message(
                    self.store,
                    kind,
                    patient,
                    person.reference,
                    about,
                    text.body,
                    category,
                    identifier,
                    failure,
                    medium=MEDIA[channel],
                    deferred=until is not None,
                )
        return sent

    def _quiet_until(self, preferences: Preferences, now: datetime) -> datetime | None:
        """When the quiet hours ``now`` falls in end (the person's, else the server's)."""
        quiet = preferences.quiet if preferences.quiet_set else self.default_quiet
        return quiet.end_after(now) if quiet is not None else None

    def _addresses(self, person: Person) -> list[tuple[str, str]]:
        """The channels configured that ``person`` has an address for."""
        out = []
        if person.email is not None and self.mailer is not None:
            out.append(("email", person.email))
        if person.phone is not None and self.sms is not None:
            out.append(("sms", person.phone))
        return out

    async def _send(
        self, channel: str, address: str, text: Text, kind: str, reference: str
    ) -> str | None:
        """Send one message; None, or why it was not accepted."""
        try:
            if channel == "email":
                assert self.mailer is not None
                await self.mailer.send(address, text.subject, text.body)
            else:
                assert self.sms is not None
                await self.sms.send(address, text.body.strip())
        except (MailError, SmsError) as error:
            log.warning("%s notification %s to %s failed: %s", channel, kind, reference, error)
            return str(error)
        return None

    async def send_deferred(self, record: dict[str, Any], now: datetime) -> Outcome | datetime:
        """Send a message recorded ``on-hold`` once its recipient's quiet hours are over
        (else: when they end); the text of its kind, to the person's current address."""
        kind = ((record.get("category") or [{}])[0] or {}).get("text")
        channel = {v: k for k, v in MEDIA.items()}.get(_code(record.get("medium")))
        recipient = _reference((record.get("recipient") or [None])[0])
        patient = _reference(record.get("subject"))
        people = await people_of(self.store, patient) if patient else []
        person = next((p for p in people if p.reference == recipient), None)
        if kind not in self.templates.texts or channel is None or person is None:
            return Outcome("The recipient is no longer one of the patient's people", False)
        preferences = await preferences_of(self.store, person.reference, self.timezone)
        until = self._quiet_until(preferences, now)
        if until is not None:
            return until
        if preferences.opted_out(channel, kind):
            return Outcome("The recipient turned these messages off", False)
        values: dict[str, str] = {}
        due = _reminded_time(record)
        if due is not None:
            if (moment_of(due, ZoneInfo(self.timezone)) or now) <= now:
                return Outcome("The time it reminded of had passed", False)
            values["time"] = due
        address = dict(self._addresses(person)).get(channel)
        if address is None:
            return Outcome("The recipient has no address for this channel", False)
        text = self.templates.render(kind, portal_url=self.portal_url, **values)
        failure = await self._send(channel, address, text, kind, person.reference)
        if failure is not None:
            return Outcome("The message was not accepted for delivery", True)
        return Outcome(None, True)


def _code(concepts: Any) -> str | None:
    for concept in concepts or []:
        for coding in (concept or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("system") == MEDIUM:
                return coding.get("code")
    return None


def _reference(value: Any) -> str:
    text = value.get("reference") if isinstance(value, dict) else None
    return text if isinstance(text, str) else ""


def _reminded_time(record: dict[str, Any]) -> str | None:
    """The time a reminder record reminds of (its identifier's ``[T]``)."""
    for identifier in record.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == REMINDER_SYSTEM:
            parts = str(identifier.get("value")).split("/")
            if len(parts) == 4:
                return parts[2]
    return None


REMINDER_SYSTEM = "urn:fhir-server:reminder"
"""The identifier system of reminder records: ``[type]/[id]/[due time]/[lead seconds]``."""


async def record_message(
    store: Any,
    kind: str,
    patient: str,
    recipient: str,
    about: str,
    body: str,
    category: str,
    identifier: str | None,
    failure: str | None,
    medium: str = "EMAILWRIT",
    *,
    deferred: bool = False,
) -> str:
    """Record one message sent (or not: ``failure``; or ``deferred`` by quiet hours) as a
    Communication (see the module); its reference."""
    record: dict[str, Any] = {
        "resourceType": "Communication",
        "meta": {"tag": [SENT_TAG]},
        "status": "on-hold" if deferred else "not-done" if failure else "completed",
        "category": [{"coding": [{"system": CATEGORY, "code": category}], "text": kind}],
        "medium": [{"coding": [{"system": MEDIUM, "code": medium}]}],
        "recipient": [{"reference": recipient}],
        "sent": now_instant(),
        "payload": [{"contentString": body}],
    }
    if patient:
        record["subject"] = {"reference": patient}
    if about:
        record["about"] = [{"reference": about}]
    if identifier:
        record["identifier"] = [{"system": REMINDER_SYSTEM, "value": identifier}]
    if failure:
        record["statusReason"] = {"text": "The message was not accepted for delivery"}
    if deferred:
        del record["sent"]
        record["statusReason"] = {"text": QUIET}
    id_ = str(uuid.uuid4())
    request = WriteRequest(
        "Communication",
        id_,
        "create",
        content_builder(record, id_),
        must_not_exist=True,
        index=index_entries(record, id_),
    )
    await store.write(request)
    return f"Communication/{id_}"
