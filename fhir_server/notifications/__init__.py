"""Notifications to people (issue 17): email through the configured SMTP server
(``mailer``), text messages through an SMS gateway (``sms``), texts without clinical
detail (``templates``), the people of a patient and their preferences (``recipients``),
the record of each message (``notifier``), news from the outbox (``people``),
reminders of what is due (``reminders``, ``health_maintenance``) and quiet hours
(``quiet_hours``). The dispatcher of ``fhir_server.events`` drives ``people``,
``reminders`` and the deferred messages of ``quiet_hours`` (:func:`readers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_server.config import Settings


def readers(store: Any, settings: Settings, owner: str) -> list[Any]:
    """The outbox readers of notifications to people (none without an SMTP server or an SMS
    gateway), and the filing of visit summaries (``FHIR_SERVER_AUTO_VISIT_SUMMARY=on``)."""
    from fhir_server.notifications.mailer import Mailer
    from fhir_server.notifications.notifier import Notifier
    from fhir_server.notifications.people import PeopleReader
    from fhir_server.notifications.quiet_hours import DeferredSender, from_setting
    from fhir_server.notifications.reminders import Reminders, parse_leads
    from fhir_server.notifications.sms import provider
    from fhir_server.notifications.templates import Templates

    found: list[Any] = []
    if getattr(settings, "auto_visit_summary", "off") == "on":
        from fhir_server.documents.auto_visit import VisitSummaryReader

        found.append(VisitSummaryReader(store, settings, owner))  # documents (issue 20)
    mailer = Mailer.from_settings(settings.smtp_url, settings.smtp_from)
    sms = provider(settings.sms_webhook_url, settings.sms_webhook_format, settings.sms_from)
    if mailer is None and sms is None:
        return found
    templates = Templates(settings.notification_templates)
    zone = settings.timezone
    notifier = Notifier(
        store,
        mailer,
        templates,
        portal(settings),
        sms,
        timezone=zone,
        default_quiet=from_setting(settings.quiet_hours, zone),
    )
    leads = parse_leads(settings.reminder_leads)
    return [
        *found,
        PeopleReader(store, notifier, owner),
        Reminders(store, notifier, leads, owner, zone),
        DeferredSender(store, notifier, owner),
    ]


def portal(settings: Settings) -> str:
    """The link in every message: ``FHIR_SERVER_PORTAL_URL``, else the server's portal."""
    if settings.portal_url:
        return settings.portal_url
    base = (settings.base_url or "").rstrip("/")
    if base.endswith("/fhir"):
        base = base[: -len("/fhir")]
    return f"{base}/portal/" if base else "/portal/"
