"""The texts of notifications to people, by kind of event. They never hold clinical
detail: what kind of thing is new and a link to the portal, where the person signs in to
see it (issue 17: "You have a new test result. Sign in to view it: <portal link>").

The administrator may replace any of them with a JSON file (``FHIR_SERVER_NOTIFICATION_
TEMPLATES``: ``{"new-result": {"subject": "...", "body": "..."}}``). Placeholders
(``string.Template``, so a text cannot reach anything else): ``$portal_url``; for
reminders ``$time`` (the appointment's or the due item's start, as written in FHIR); for
invitations ``$link`` and ``$expires_at``; for email Subscriptions ``$type`` (never the
Subscription's ``reason``: a client's text must not reach an inbox in the clinic's name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from string import Template


@dataclass(frozen=True, slots=True)
class Text:
    subject: str
    body: str


SIGN_IN = "\n\nSign in to view it: $portal_url\n"

DEFAULTS: dict[str, Text] = {
    "new-result": Text("You have a new test result", "You have a new test result." + SIGN_IN),
    "new-message": Text("You have a new message", "You have a new message." + SIGN_IN),
    "new-document": Text("You have a new document", "A new document is available." + SIGN_IN),
    "new-invoice": Text("You have a new invoice", "You have a new invoice." + SIGN_IN),
    "appointment-booked": Text(
        "Your appointment is booked", "An appointment was booked for you." + SIGN_IN
    ),
    "appointment-changed": Text(
        "Your appointment changed", "One of your appointments changed." + SIGN_IN
    ),
    "appointment-cancelled": Text(
        "Your appointment was cancelled", "One of your appointments was cancelled." + SIGN_IN
    ),
    "appointment-reminder": Text(
        "Appointment reminder", "You have an appointment at $time." + SIGN_IN
    ),
    "refill-decided": Text(
        "Your refill request was answered", "Your refill request was answered." + SIGN_IN
    ),
    "health-maintenance": Text(
        "A check-up, screening or vaccination is due",
        "You have a check-up, screening or vaccination due." + SIGN_IN,
    ),
    "invitation": Text(
        "Your invitation to the patient portal",
        "You are invited to the patient portal. Create your account with this link (it"
        " works once, until $expires_at):\n\n$link\n",
    ),
    "subscription": Text(
        "A subscription notification",
        "There is a new or changed $type for one of your subscriptions." + SIGN_IN,
    ),
}
KINDS = frozenset(DEFAULTS)


class Templates:
    """The texts in use: the defaults, with those of ``path`` instead where it has them."""

    def __init__(self, path: str | None = None) -> None:
        self.texts = dict(DEFAULTS)
        if path:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected an object of kinds")
            for kind, text in data.items():
                if kind not in KINDS or not isinstance(text, dict):
                    raise ValueError(f"{path}: {kind!r} is not a kind of notification")
                base = self.texts[kind]
                self.texts[kind] = Text(
                    str(text.get("subject", base.subject)), str(text.get("body", base.body))
                )

    def render(self, kind: str, **values: str) -> Text:
        text = self.texts[kind]
        return Text(
            Template(text.subject).safe_substitute(values),
            Template(text.body).safe_substitute(values),
        )
