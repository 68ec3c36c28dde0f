"""The invitation email of ``fhir-server invite Patient/123 --email [ADDRESS]`` (issue 17):
the activation link of ``smart_auth.admin.create_invitation`` sent to the address given,
or else to the best email of the invited Patient / RelatedPerson / Person
(``recipients.best_email``), through ``FHIR_SERVER_SMTP_URL``, with the ``invitation``
template. The message is recorded as a Communication like every other
(``notifier.record_message``), without the link: the link activates an account once, and
the record is readable by staff and the patient."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.notifications.mailer import Mailer, MailError
from fhir_server.notifications.notifier import record_message
from fhir_server.notifications.recipients import best_email
from fhir_server.notifications.templates import Templates
from resources import fhir_json

if TYPE_CHECKING:
    from fhir_server.config import Settings

RECORDED = "An invitation to the patient portal was sent by email."


class InvitationError(Exception):
    """The invitation could not be emailed (the text says why)."""


async def email_invitation(
    settings: Settings, invitation: dict[str, Any], address: str | None
) -> dict[str, Any]:
    """Email ``invitation`` (``create_invitation``'s answer); ``{"emailed_to",
    "communication"}``. Raises :class:`InvitationError`."""
    from fhir_server.storage.open import open_store

    mailer = Mailer.from_settings(settings.smtp_url, settings.smtp_from)
    if mailer is None:
        raise InvitationError("--email needs an SMTP server: set FHIR_SERVER_SMTP_URL")
    fhir_user = str(invitation["fhir_user"])
    type_, _, id_ = fhir_user.partition("/")
    store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
    await store.open()
    try:
        stored = await store.read(type_, id_)
        resource = fhir_json.loads(stored.content) if stored and stored.content else {}
        to = address or best_email(resource)
        if not to:
            raise InvitationError(
                f"{fhir_user} has no email in its telecom: give the address, --email ADDRESS"
            )
        text = Templates(settings.notification_templates).render(
            "invitation", link=str(invitation["link"]), expires_at=str(invitation["expires_at"])
        )
        failure = None
        try:
            await mailer.send(to, text.subject, text.body)
        except MailError as error:
            failure = str(error)
        patient = fhir_user if type_ == "Patient" else _patient_of(resource)
        record = await record_message(
            store, "invitation", patient, fhir_user, "", RECORDED, "notification", None, failure
        )
    finally:
        await store.close()
    if failure:
        raise InvitationError(f"the email to {to} was not accepted ({failure})")
    return {"emailed_to": to, "communication": record}


def _patient_of(resource: dict[str, Any]) -> str:
    patient = (resource.get("patient") or {}).get("reference")
    return patient if isinstance(patient, str) and patient.startswith("Patient/") else ""
