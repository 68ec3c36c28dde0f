"""What the scheduling rules (:mod:`fhir_server.workflows.scheduling`) read of
Appointments, Slots and Schedules (R4, https://hl7.org/fhir/R4/appointment.html): times,
slot references, codes, participants, and the settings that bind patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from fhir_server.workflows.base import Transaction
from resources.errors import invalid
from resources.fhir_datetime import parse_range
from resources.search.index.reference import parse_reference

HOLDING = frozenset({"pending", "booked", "arrived", "checked-in", "fulfilled", "noshow"})
"""Statuses of an appointment that holds its Slots."""


def now() -> datetime:
    return datetime.now(UTC)


def instant(text: Any, name: str) -> datetime:
    """The start of a date/dateTime/instant value."""
    if not isinstance(text, str):
        raise invalid(f"{name} is missing", name)
    return parse_range(text, name)[0]


def period_end(text: Any, name: str) -> datetime:
    """The end of the period a date/dateTime value stands for (``2027-01-29``: the day)."""
    return parse_range(text, name)[1]


def bookable_in(schedule: dict[str, Any], start: datetime, end: datetime) -> bool:
    """Whether a Slot from ``start`` to ``end`` may be booked in ``schedule``: it is
    active and the Slot lies inside its ``planningHorizon``."""
    if schedule.get("active") is False:
        return False
    horizon = schedule.get("planningHorizon") or {}
    if horizon.get("start") and start < instant(horizon["start"], "Schedule.planningHorizon"):
        return False
    return not (horizon.get("end") and end > period_end(horizon["end"], "Schedule.planningHorizon"))


def holds(resource: dict[str, Any] | None) -> bool:
    return resource is not None and resource.get("status") in HOLDING


def slot_ids(resource: dict[str, Any] | None) -> list[str]:
    """The ids of the Slots an appointment lists, in order (400 for a non-Slot)."""
    found: list[str] = []
    for index, reference in enumerate((resource or {}).get("slot") or []):
        text = reference.get("reference") if isinstance(reference, dict) else None
        type_, id_, _, _ = parse_reference(text) if isinstance(text, str) else (None,) * 4
        if type_ != "Slot" or not id_:
            raise invalid(
                f"Appointment.slot[{index}] must refer to a Slot (Slot/id), not {text!r}",
                f"Appointment.slot[{index}]",
            )
        if id_ not in found:
            found.append(id_)
    return found


def has_code(concepts: Any, code: tuple[str, str]) -> bool:
    """Whether a CodeableConcept (or a list of them) has the coding ``code``."""
    items = concepts if isinstance(concepts, list) else [concepts]
    return any(
        (coding.get("system"), coding.get("code")) == code
        for concept in items
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict)
    )


def participants(appointment: dict[str, Any]) -> list[str]:
    """The references of the appointment's participants' actors."""
    return [
        p["actor"]["reference"]
        for p in appointment.get("participant") or []
        if isinstance(p, dict)
        and isinstance(p.get("actor"), dict)
        and isinstance(p["actor"].get("reference"), str)
    ]


def relative(reference: str) -> str:
    type_, id_, _, _ = parse_reference(reference)
    return f"{type_}/{id_}" if type_ and id_ else reference


@cache
def _default_settings() -> Any:
    from fhir_server.config import Settings

    return Settings()


def settings_of(tx: Transaction) -> Any:
    return tx.settings if tx.settings is not None else _default_settings()


def cutoff_of(settings: Any) -> timedelta:
    from fhir_server.config import parse_duration

    text = str(getattr(settings, "cancel_cutoff", "0") or "0").strip()
    return timedelta(0) if text == "0" else timedelta(seconds=parse_duration(text))


@dataclass
class SlotView:
    id: str
    content: dict[str, Any]
    version: int | None
    start: datetime
    end: datetime

    @property
    def reference(self) -> str:
        return f"Slot/{self.id}"
