"""Quiet hours (issue 17): a time of day during which a person gets no email or text
message; what falls in it is deferred to its end, then sent. Off unless a person sets
them, or the administrator sets a default (``FHIR_SERVER_QUIET_HOURS``, e.g.
``22:00-07:00``, in ``FHIR_SERVER_TIMEZONE``).

The model: one extension in the person's preferences ``Basic``
(``recipients``, https://hl7.org/fhir/R4/basic.html, written with patient scopes)::

    {"url": "urn:fhir-server:notification-quiet-hours",
     "extension": [{"url": "start", "valueTime": "22:00:00"},
                   {"url": "end", "valueTime": "07:00:00"},
                   {"url": "timezone", "valueCode": "Europe/Berlin"}]}

``start`` and ``end`` are local times (``end`` before ``start``: over midnight; equal: no
quiet hours, which turns the server's default off for that person); ``timezone`` is an
IANA name, default ``FHIR_SERVER_TIMEZONE``. A write with a quiet-hours extension that is
not so is refused (``fhir_server.workflows.notification_preferences``).

A deferred message is recorded at once as its ``Communication``
(https://hl7.org/fhir/R4/communication.html) with ``status`` ``on-hold`` and no ``sent``;
:class:`DeferredSender` (one process at a time: a lease on :data:`KEY`) looks every
:data:`~fhir_server.notifications.leased.SCAN_EVERY` seconds for new such records, and at
the end of someone's quiet hours (as they were when their message was deferred; and every
:data:`RESCAN` seconds) at all of them. Once the recipient's quiet hours are over it sends
the text of the record's kind to the person's current address and updates the record:
``completed`` (``sent`` the real send time), or ``not-done`` with a ``statusReason`` when
the mail server or gateway refused it, the person left the patient's people or opted out
meanwhile, or a reminder's time passed. The records are in the store, so a restart loses
none, and the lease (renewed before each message) with a compare-and-set on the record's
version sends each once (a process that stops between a send and its record's update
sends that one again).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.notifications.leased import LeasedScan, search_all
from fhir_server.storage.base import VersionConflict, WriteRequest, now_instant
from resources.fhir_datetime import format_instant

log = logging.getLogger("fhir_server.notifications")

QUIET_HOURS = "urn:fhir-server:notification-quiet-hours"
KEY = "notifications/deferred"
RESCAN = 600.0
MARGIN = 60.0
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d+)?)?$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    def end_after(self, moment: datetime) -> datetime | None:
        """When the quiet hours that ``moment`` falls in end (None: it falls in none)."""
        if self.start == self.end:
            return None
        local = moment.astimezone(self.zone)
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            inside = self.start <= now < self.end
            day = local.date()
        else:  # over midnight
            inside = now >= self.start or now < self.end
            day = local.date() + timedelta(days=1) if now >= self.start else local.date()
        if not inside:
            return None
        return _local(day, self.end, self.zone)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def parse_time(text: Any) -> time | None:
    """A FHIR ``time`` (``22:00:00``; ``22:00`` is accepted too)."""
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


def zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or name.startswith(("/", ".")):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def problem(extension: Any) -> str | None:
    """What is wrong with a quiet-hours extension (None: nothing)."""
    parts = _parts(extension)
    for name in ("start", "end"):
        if parse_time(parts.get(name)) is None:
            return f"quiet hours need a '{name}' valueTime (e.g. 22:00:00)"
    if "timezone" in parts and zone(parts["timezone"]) is None:
        return f"unknown time zone {parts['timezone']!r} (expected e.g. Europe/Berlin)"
    return None


def from_extension(extension: Any, default_zone: str) -> QuietHours | None:
    """The quiet hours of a preferences extension (None: not valid)."""
    if problem(extension) is not None:
        return None
    parts = _parts(extension)
    start, end = parse_time(parts["start"]), parse_time(parts["end"])
    tz = zone(parts.get("timezone") or default_zone) or ZoneInfo("UTC")
    assert start is not None and end is not None
    return QuietHours(start, end, tz)


def from_setting(text: str, default_zone: str) -> QuietHours | None:
    """``FHIR_SERVER_QUIET_HOURS`` (``22:00-07:00``; empty: none). Raises ValueError."""
    if not text.strip():
        return None
    start, sep, end = text.strip().partition("-")
    first, last = parse_time(start.strip()), parse_time(end.strip())
    if not sep or first is None or last is None:
        raise ValueError(f"expected quiet hours such as 22:00-07:00 (got {text!r})")
    return QuietHours(first, last, zone(default_zone) or ZoneInfo("UTC"))


def _parts(extension: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in (extension.get("extension") if isinstance(extension, dict) else None) or []:
        if isinstance(part, dict) and isinstance(part.get("url"), str):
            values = [v for k, v in part.items() if k.startswith("value")]
            out[part["url"]] = values[0] if values else None
    return out


class DeferredSender(LeasedScan):
    """Sends the messages deferred by quiet hours once they are over (see the module)."""

    key = KEY

    def __init__(self, store: Any, notifier: Any, owner: str) -> None:
        super().__init__(store, owner)
        self.notifier = notifier
        self._until: dict[str, float] = {}
        """Per recipient: when their quiet hours end (their records wait till then)."""
        self._since: float | None = None
        self._full_at = 0.0

    def taken(self) -> None:
        self._since = None  # look at every waiting record again
        self._until.clear()

    async def scan(self, now: datetime) -> int:
        """All waiting records when one's quiet hours may have ended (and every
        :data:`RESCAN` seconds), else only those recorded since the last scan."""
        from fhir_server.notifications.notifier import SENT_TAG

        at = now.timestamp()
        params = [("status", "on-hold"), ("_tag", f"{SENT_TAG['system']}|{SENT_TAG['code']}")]
        if self._since is not None and at < self._full_at:
            since = datetime.fromtimestamp(self._since - MARGIN, UTC)
            params.append(("_lastUpdated", f"ge{format_instant(since)}"))
        else:
            self._full_at = at + RESCAN
        found = await search_all(self.store, "Communication", params)
        self._since = at
        sent = 0
        for stored, record in found:
            recipient = str(((record.get("recipient") or [{}])[0] or {}).get("reference"))
            if self._until.get(recipient, 0.0) > at:
                continue
            if not await self.renew():
                break  # another process has the lease now
            outcome = await self.notifier.send_deferred(record, now)
            if isinstance(outcome, datetime):  # still quiet
                self._until[recipient] = outcome.timestamp()
                self._full_at = min(self._full_at, outcome.timestamp())
                continue
            self._until.pop(recipient, None)
            sent += await self._record(stored, record, outcome)
        return sent

    async def _record(self, stored: Any, record: dict[str, Any], outcome: Any) -> int:
        updated = {k: v for k, v in record.items() if k != "statusReason"}
        updated["status"] = "not-done" if outcome.failure else "completed"
        if outcome.attempted:
            updated["sent"] = now_instant()
        if outcome.failure:
            updated["statusReason"] = {"text": outcome.failure}
        id_ = stored.id
        build, index = content_builder(updated, id_), index_entries(updated, id_)
        request = WriteRequest("Communication", id_, "update", build, stored.version, index=index)
        try:
            await self.store.write(request)
        except VersionConflict:
            log.warning("deferred Communication/%s changed while it was sent", stored.id)
        return 0 if outcome.failure else 1
