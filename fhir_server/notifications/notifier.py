"""Sending one notification to the people of a patient, and its record
(https://hl7.org/fhir/R4/communication.html).

For each person (``recipients.people_of``) and channel (email through the configured SMTP
server, ``mailer``; text messages through the SMS provider, ``sms``) for which the person
has an address and has not opted out of that kind on that channel, the text of the kind
(``templates``) is sent, and every message, sent or failed, is recorded as a
``Communication`` so that staff and the patient can see what was sent:

- ``status`` ``completed``, or ``not-done`` with a ``statusReason`` when the SMTP server or
  the SMS gateway did not accept it;
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
from typing import Any

from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.notifications.mailer import Mailer, MailError
from fhir_server.notifications.recipients import opted_out, people_of
from fhir_server.notifications.sms import SmsError, SmsProvider
from fhir_server.notifications.templates import Templates
from fhir_server.storage.base import WriteRequest, now_instant

log = logging.getLogger("fhir_server.notifications")

CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
MEDIUM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
MEDIA = {"email": "EMAILWRIT", "sms": "SMSWRIT"}
SENT_TAG = {"system": "urn:fhir-server:notification", "code": "sent"}


class Notifier:
    """Sends notifications by email (``mailer``) and text message (``sms``), each when
    configured."""

    def __init__(
        self,
        store: Any,
        mailer: Mailer | None,
        templates: Templates,
        portal_url: str,
        sms: SmsProvider | None = None,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.sms = sms
        self.templates = templates
        self.portal_url = portal_url

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
        were sent."""
        text = self.templates.render(kind, portal_url=self.portal_url, **values)
        sent = 0
        for person in await people_of(self.store, patient):
            for channel, address in (("email", person.email), ("sms", person.phone)):
                if address is None or (self.mailer if channel == "email" else self.sms) is None:
                    continue
                if await opted_out(self.store, person.reference, channel, kind):
                    continue
                failure = None
                try:
                    if channel == "email":
                        assert self.mailer is not None
                        await self.mailer.send(address, text.subject, text.body)
                    else:
                        assert self.sms is not None
                        await self.sms.send(address, text.body.strip())
                    sent += 1
                except (MailError, SmsError) as error:
                    failure = str(error)
                    log.warning(
                        "%s notification %s to %s failed: %s",
                        channel,
                        kind,
                        person.reference,
                        error,
                    )
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
                )
        return sent


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
) -> str:
    """Record one message sent (or not: ``failure``) as a Communication (see the module);
    its reference."""
    record: dict[str, Any] = {
        "resourceType": "Communication",
        "meta": {"tag": [SENT_TAG]},
        "status": "not-done" if failure else "completed",
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
