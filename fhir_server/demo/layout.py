"""The shape of a demo population: how many clinics and practitioners, which ids, who
is whose primary care practitioner, and which schedule slot each booked appointment
takes. Everything is a pure function of the patient count and the date, so the directory
and each patient can be generated independently (and streamed) yet agree."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fhir_server.demo import codes as c

SLOT_HOURS = (9, 10, 11, 14)
SLOT_DAYS = 10
PATIENTS_PER_PRACTITIONER = 40
PRACTITIONERS_PER_CLINIC = 10
ZONE = "-05:00"
"""Times are written in one fixed zone (US Eastern Standard Time)."""


def ref(type_: str, id_: str, display: str | None = None) -> dict[str, Any]:
    out = {"reference": f"{type_}/{id_}"}
    if display:
        out["display"] = display
    return out


def when(moment: datetime) -> str:
    """A FHIR dateTime/instant with seconds and the fixed zone."""
    return moment.isoformat(timespec="seconds") + ZONE  # strftime costs four times more


def first_working_day(today: date) -> datetime:
    """The next working day after ``today``, at midnight."""
    day = today + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day)


@dataclass(frozen=True)
class Layout:
    patients: int
    today: date

    @property
    def practitioners(self) -> int:
        return max(3, math.ceil(self.patients / PATIENTS_PER_PRACTITIONER))

    @property
    def clinics(self) -> int:
        return max(1, math.ceil(self.practitioners / PRACTITIONERS_PER_CLINIC))

    slots_per_schedule = SLOT_DAYS * len(SLOT_HOURS)
    slot_minutes = 30

    # -- ids -------------------------------------------------------------------------

    @staticmethod
    def patient_id(n: int) -> str:
        return f"demo-pat-{n:06d}"

    @staticmethod
    def clinic_id(k: int) -> str:
        return f"demo-org-{k + 1:04d}"

    @staticmethod
    def location_id(k: int) -> str:
        return f"demo-loc-{k + 1:04d}"

    @staticmethod
    def practitioner_id(p: int) -> str:
        return f"demo-prac-{p + 1:05d}"

    @staticmethod
    def role_id(p: int) -> str:
        return f"demo-role-{p + 1:05d}"

    @staticmethod
    def schedule_id(p: int) -> str:
        return f"demo-sched-{p + 1:05d}"

    @staticmethod
    def slot_id(p: int, s: int) -> str:
        return f"demo-slot-{p + 1:05d}-{s + 1:02d}"

    # -- assignments -----------------------------------------------------------------

    def specialty(self, p: int) -> tuple[str, str, str]:
        return c.SPECIALTIES[p % len(c.SPECIALTIES)]

    def clinic_of(self, p: int) -> int:
        return p % self.clinics

    def primary_care(self, n: int) -> int:
        """The practitioner (index) of patient ``n`` (1-based)."""
        return (n - 1) % self.practitioners

    def future_slot(self, n: int) -> int | None:
        """The slot of the primary care schedule booked by patient ``n`` (two patients in
        three have one, while the schedule has free slots), or None."""
        k = (n - 1) // self.practitioners
        if k % 3 == 2:
            return None
        j = k - k // 3
        if j >= self.slots_per_schedule:
            return None
        return (j * 7) % self.slots_per_schedule  # 7 is prime to 40: spread, no clashes

    def booked_slots(self, p: int) -> set[int]:
        booked = set()
        for n in range(p + 1, self.patients + 1, self.practitioners):
            slot = self.future_slot(n)
            if slot is not None:
                booked.add(slot)
        return booked

    def slot_start(self, s: int) -> datetime:
        day = first_working_day(self.today)
        for _ in range(s // len(SLOT_HOURS)):
            day += timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
        return day.replace(hour=SLOT_HOURS[s % len(SLOT_HOURS)])
