"""Server settings, from command-line flags and ``FHIR_SERVER_*`` environment variables."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All settings; each can be set as an environment variable ``FHIR_SERVER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    storage: str = Field(
        "sqlite:///data/fhir.sqlite3",
        description="Storage URL: sqlite:///relative/path, sqlite:////absolute/path,"
        " mongodb://… / mongodb+srv://… (MongoDB) or mongomock:// (in-memory stand-in)",
    )
    base_url: str | None = Field(
        None, description="Public FHIR base URL for links and Location (behind a proxy)"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Server processes (default: the number of CPU cores); each opens its"
        " own store, all on one port",
    )
    auth: Literal["smart", "off"] = Field(
        "smart",
        description="'smart': every FHIR request needs a SMART access token; 'off': no"
        " tokens at all (local development only)",
    )
    registration: Literal["off", "token", "open"] = Field(
        "token",
        description="RFC 7591 client registration: off, with an initial access token, or open",
    )
    access_token_lifetime: int = Field(300, ge=30, description="Access token lifetime (s)")
    refresh_token_lifetime: int = Field(
        90 * 24 * 3600, ge=60, description="offline_access refresh token lifetime (s)"
    )
    online_refresh_lifetime: int = Field(
        8 * 3600, ge=60, description="online_access refresh token lifetime (s)"
    )
    lockout_after: int = Field(
        5,
        ge=1,
        description="Failed sign-ins from one address for one username (in a day) before"
        " each further attempt waits (2 s, 4 s, 8 s...); accounts never lock"
        " (smart_auth.throttle)",
    )
    lockout_seconds: int = Field(
        900, ge=1, description="The longest wait between sign-in attempts (s)"
    )
    ssl_certfile: str | None = Field(
        None,
        description="Serve https with this certificate (PEM, with its chain) and"
        " FHIR_SERVER_SSL_KEYFILE, without a reverse proxy",
    )
    ssl_keyfile: str | None = Field(None, description="The certificate's private key (PEM)")
    mfa: Literal["off", "optional", "staff", "all"] = Field(
        "optional",
        description="Two-step sign-in with an authenticator app (TOTP): off; optional (asked of"
        " users who enrolled); staff (Practitioner users must enrol before their first"
        " token); all (everyone must)",
    )
    rate_limit: str = Field(
        "",
        description="Requests a client may make to the FHIR API, e.g. 600/minute (empty or"
        " off: no limit); per-client: fhir-server clients create|update --rate-limit"
        " (fhir_server.rate_limit)",
    )
    cors_origins: str = Field(
        "*",
        description="Origins allowed to call the API from a browser (comma separated; '*' any):"
        " SMART apps run in browsers and send bearer tokens, never cookies",
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(
        100, ge=8, le=200, description="Deepest nesting of arrays and objects in a JSON body"
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's line and headers"
    )
    max_header_bytes: int = Field(
        65536, ge=4096, description="Largest request line and header fields (431 past it)"
    )
    body_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds for a request body's first bytes; each body_min_rate bytes"
        " received add one more",
    )
    body_min_rate: int = Field(500, ge=1, description="Slowest accepted body upload (bytes/s)")
    keep_alive_timeout: float = Field(
        5.0, gt=0, description="Seconds an idle kept-alive connection stays open"
    )
    max_connections: int = Field(
        1000, ge=1, description="Open connections per server process (503 past it)"
    )
    docs: bool = Field(
        False, description="Serve Swagger UI at /docs (it loads its scripts from a CDN)"
    )
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(1000, ge=1)
    conditional_delete_max: int = Field(
        100, ge=1, description="Most resources one conditional delete may remove"
    )
    export_dir: str | None = Field(
        None,
        description="Folder of the $export jobs and their files (default: 'exports' next to"
        " the SQLite file, or ./data/exports)",
    )
    export_ttl: str = Field(
        "24h",
        description="How long $export files are kept after the job ends (a duration: 90s,"
        " 30m, 24h, 7d, or seconds)",
    )
    export_max_jobs: int = Field(
        2, ge=1, description="$export jobs running at once (429 with Retry-After beyond)"
    )
    export_file_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="An $export NDJSON file is split (Type.001.ndjson...) past this size",
    )
    outbound_allow: str = Field(
        "",
        description="Hosts, addresses or CIDR networks (comma separated) that outbound"
        " requests (a client's jwks_uri) may reach although they are not public, and over"
        " http; see fhir_server.outbound",
    )
    delivery_attempts: int = Field(
        6,
        ge=1,
        le=30,
        description="Attempts at sending one subscription notification (waits doubling"
        " from delivery_backoff between them) before the Subscription's status is error",
    )
    delivery_backoff: float = Field(
        1.0, gt=0, le=60, description="Seconds before the first retry of a notification"
    )
    event_retention: int = Field(
        86400,
        ge=0,
        description="Seconds the outbox keeps an event that every active subscription has"
        " passed (older ones are pruned)",
    )
    smtp_url: str = Field(
        "",
        description="The SMTP server of notification emails: smtp://[user:pass@]host:port"
        " (STARTTLS when the server offers it; required when a password is given) or"
        " smtps://[user:pass@]host:port (TLS); empty: no email is sent",
    )
    smtp_from: str = Field(
        "", description="The From address of notification emails (e.g. portal@clinic.example)"
    )
    sms_webhook_url: str = Field(
        "",
        description="The SMS gateway: text messages are POSTed there (user:pass@ in the URL"
        " is sent as Basic authentication); empty: no text messages",
    )
    sms_webhook_format: Literal["json", "form"] = Field(
        "json",
        description="'json': {to, body}; 'form': To=&Body=&From= form fields (Twilio's shape)",
    )
    sms_from: str = Field("", description="The sender of text messages (the 'form' From field)")
    reminder_leads: str = Field(
        "24h,2h",
        description="How long before an appointment (or a due check-up) its reminders are"
        " sent: durations, comma separated (24h,2h,30m)",
    )
    quiet_hours: str = Field(
        "",
        description="Quiet hours of everyone who set none of their own (e.g. 22:00-07:00,"
        " in FHIR_SERVER_TIMEZONE): emails and text messages wait for their end; empty: none",
    )
    notification_templates: str | None = Field(
        None,
        description="A JSON file of notification texts by kind ({kind: {subject, body}}),"
        " replacing the built-in ones; $portal_url and $time are filled in",
    )

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str) -> str:
        from fhir_server.notifications.mailer import SmtpServer

        if value:
            SmtpServer.parse(value)  # ValueError naming the expected form
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        from fhir_server.notifications.quiet_hours import from_setting

        from_setting(value, "UTC")  # ValueError naming the expected form
        return value

    @field_validator("reminder_leads")
    @classmethod
    def _check_leads(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                parse_duration(part)  # ValueError naming the expected form
        return value

    organization_inboxes: str = Field(
        "",
        description="Organizations (Organization/id, comma separated) any patient may"
        " message besides their care team, e.g. a clinic's front desk or billing office"
        " (fhir_server.workflows.messaging)",
    )
    attachment_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="Largest file (decoded bytes) attached to a message: a Binary whose"
        " securityContext is a Patient (413 past it)",
    )
    audit: Literal["on", "off"] = Field(
        "on",
        description="Record every FHIR interaction and operation, sign-in, token, consent"
        " and admin command as an AuditEvent (fhir_server.audit)",
    )
    audit_retention: str = Field(
        "2190d",
        description="How long AuditEvents are kept (a duration: 90d, 2190d = about 6 years;"
        " or 'forever'); older ones are pruned once an hour",
    )
    audit_window: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds over which the successful reads and searches of one user and app"
        " on one patient's data are one AuditEvent (its period spans them); 0: one"
        " AuditEvent per interaction",
    )
    upload_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="Largest document a patient or staff may upload (a DocumentReference's"
        " attachment or its Binary), in bytes (413 beyond)",
    )
    organization_name: str = Field(
        "FHIR Server",
        description="The organisation named on generated documents (PDFs, the patient"
        " summary) when the patient has no managingOrganization",
    )
    auto_visit_summary: Literal["on", "off"] = Field(
        "off",
        description="File a visit-summary PDF as a DocumentReference when an Encounter"
        " becomes finished",
    )
    payments: str = Field(
        "off",
        description="Online payment of Invoices (Invoice/[id]/$pay and /payments/webhook):"
        " 'off', 'stripe', or a processor of your own as 'package.module:factory'"
        " (fhir_server.payments)",
    )
    stripe_secret_key: str | None = Field(
        None, description="Stripe secret API key (sk_live_… / sk_test_…) for payments=stripe"
    )
    stripe_webhook_secret: str | None = Field(
        None, description="Signing secret (whsec_…) of the Stripe endpoint /payments/webhook"
    )
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="Stripe's API base URL (tests point it elsewhere)"
    )
    portal_url: str | None = Field(
        None,
        description="The patient portal's URL: where a checkout returns by default (else"
        " the server's /portal/)",
    )
    cancel_cutoff: str = Field(
        "0",
        description="How long before an appointment's start a patient or caregiver may still"
        " cancel it (a duration: 90m, 48h, 2d; 0: any time before the start); staff are not"
        " bound (fhir_server.workflows.scheduling)",
    )
    telehealth_url_template: str | None = Field(
        None,
        description="The join link of a virtual appointment (appointmentType or slot"
        " serviceType v3-ActCode VR), e.g. https://meet.example.org/{appointment_id}",
    )
    timezone: str = Field(
        "UTC",
        description="The clinic's time zone (IANA name, e.g. Europe/Berlin): the default of"
        " 'fhir-server schedule create --tz'",
    )
    portal: Literal["on", "off"] = Field(
        "on",
        description="The patient portal app at /portal/, registered as a public SMART client"
        " on start-up (fhir_server.portal); 'off': neither",
    )
    portal_fhir_base_url: str | None = Field(
        None,
        description="The FHIR server the portal app talks to (default: this server); another"
        " SMART server must have the portal registered as a client",
    )
    portal_client_id: str = Field("fhir-server-portal", description="The portal's SMART client_id")
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    sqlite_mmap_mib: int = Field(
        1024,
        ge=0,
        description="MiB of the SQLite file read through memory-mapped I/O by each request"
        " connection (PRAGMA mmap_size); 0: off",
    )
    log_level: str = Field("info", description="debug, info, warning, error or critical")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="'text': one line per record; 'json': one JSON object per line, the"
        " access log's with request id, client address, user and client id",
    )
    metrics: Literal["on", "off"] = Field(
        "on",
        description="Prometheus metrics at /metrics (route templates, statuses and timings;"
        " no ids, no patient data; unauthenticated)",
    )
    metrics_dir: str | None = Field(
        None,
        description="Folder where each server process writes its metrics for /metrics to"
        " add up (set by 'fhir-server serve' for several workers; must be empty at start)",
    )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError("expected debug, info, warning, error or critical")
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _check_allow_list(cls, value: str) -> str:
        from fhir_server.outbound import AllowList

        AllowList.parse(value)  # ValueError naming the bad entry
        return value

    @field_validator("export_ttl")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        parse_duration(value)  # ValueError naming the expected form
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from fhir_server.rate_limit import parse_limit

        parse_limit(value)  # ValueError naming the accepted forms
        return value

    @field_validator("cancel_cutoff")
    @classmethod
    def _check_cutoff(cls, value: str) -> str:
        if value.strip() != "0":
            parse_duration(value)  # ValueError naming the expected form
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected e.g. Europe/Berlin)") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("audit_retention")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        parse_retention(value)  # ValueError naming the expected form
        return value


def parse_duration(text: str) -> int:
    """Seconds of a duration such as ``90s``, ``30m``, ``24h``, ``7d`` or ``3600``."""
    value = text.strip().lower()
    unit = 1
    if value[-1:] in _UNITS:
        value, unit = value[:-1], _UNITS[value[-1]]
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"expected a duration such as 90s, 30m, 24h or 7d (got {text!r})")
    return int(value) * unit


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_retention(text: str) -> int | None:
    """Seconds of a retention period (``90d``...), None for ``forever``."""
    if text.strip().lower() == "forever":
        return None
    return parse_duration(text)
