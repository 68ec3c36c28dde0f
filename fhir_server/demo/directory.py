"""The care directory of the demo population: a health system with clinics, payers,
locations, practitioners with their roles, and each role's schedule with free and busy
slots over the next two working weeks.

https://hl7.org/fhir/R4/organization.html, https://hl7.org/fhir/R4/location.html,
https://hl7.org/fhir/R4/practitionerrole.html, https://hl7.org/fhir/R4/schedule.html,
https://hl7.org/fhir/R4/slot.html
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from fhir_server.demo import codes as c
from fhir_server.demo.layout import Layout, ref, when

PAYERS = (
    ("Blue Harbor Health Plan", "BHHP"),
    ("Granite State Mutual", "GSM"),
    ("Medicare", "CMS"),
)


def directory(layout: Layout, seed: int) -> Iterator[dict[str, Any]]:
    """Every directory resource, in an order where references point backwards."""
    rng = random.Random(f"{seed}-directory")
    yield _system()
    for k, (name, short) in enumerate(PAYERS):
        yield _payer(k, name, short)
    for k in range(layout.clinics):
        yield _clinic(layout, k, rng)
        yield _location(layout, k, rng)
    for p in range(layout.practitioners):
        yield _practitioner(layout, p, rng)
        yield _role(layout, p)
        yield _schedule(layout, p)
        busy = layout.booked_slots(p)
        for s in range(layout.slots_per_schedule):
            yield _slot(layout, p, s, s in busy)


def _system() -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": "demo-org-system",
        "identifier": [{"system": "urn:demo:organization", "value": "SYSTEM"}],
        "active": True,
        "type": [_org_type("prov", "Healthcare Provider")],
        "name": "Commonwealth Community Health",
        "telecom": [{"system": "phone", "value": "+1-617-555-0100", "use": "work"}],
        "address": [_address("1 Health Plaza", ("Boston", "MA", "02118"))],
    }


def _payer(k: int, name: str, short: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": f"demo-payer-{k + 1}",
        "identifier": [{"system": "urn:demo:payer", "value": short}],
        "active": True,
        "type": [_org_type("pay", "Payer")],
        "name": name,
        "telecom": [{"system": "phone", "value": f"+1-800-555-01{k:02d}", "use": "work"}],
    }


def _clinic(layout: Layout, k: int, rng: random.Random) -> dict[str, Any]:
    city = c.CITIES[k % len(c.CITIES)]
    return {
        "resourceType": "Organization",
        "id": layout.clinic_id(k),
        "identifier": [{"system": "urn:demo:organization", "value": f"CLINIC{k + 1:04d}"}],
        "active": True,
        "type": [_org_type("prov", "Healthcare Provider")],
        "name": f"{city[0]} Family Health Center {k // len(c.CITIES) + 1}",
        "telecom": [{"system": "phone", "value": _phone(rng), "use": "work"}],
        "address": [_address(_street(rng), city)],
        "partOf": ref("Organization", "demo-org-system"),
    }


def _location(layout: Layout, k: int, rng: random.Random) -> dict[str, Any]:
    city = c.CITIES[k % len(c.CITIES)]
    return {
        "resourceType": "Location",
        "id": layout.location_id(k),
        "status": "active",
        "name": f"{city[0]} Family Health Center {k // len(c.CITIES) + 1}, outpatient clinic",
        "mode": "instance",
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "code": "OF",
                        "display": "Outpatient facility",
                    }
                ]
            }
        ],
        "telecom": [{"system": "phone", "value": _phone(rng), "use": "work"}],
        "address": _address(_street(rng), city),
        "position": {
            "longitude": round(-71.06 - rng.random(), 6),
            "latitude": round(42.0 + rng.random(), 6),
        },
        "managingOrganization": ref("Organization", layout.clinic_id(k)),
        "hoursOfOperation": [
            {
                "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                "openingTime": "08:00:00",
                "closingTime": "17:00:00",
            }
        ],
    }


def _practitioner(layout: Layout, p: int, rng: random.Random) -> dict[str, Any]:
    gender = rng.choice(("male", "female"))
    given = rng.choice(c.MALE_NAMES if gender == "male" else c.FEMALE_NAMES)
    return {
        "resourceType": "Practitioner",
        "id": layout.practitioner_id(p),
        "identifier": [{"system": c.NPI, "value": f"{1_000_000_000 + 7919 * (p + 1)}"}],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": rng.choice(c.FAMILY_NAMES),
                "given": [given],
                "prefix": ["Dr."],
                "suffix": ["MD"],
            }
        ],
        "telecom": [{"system": "email", "value": f"dr.{p + 1}@cch.example.org", "use": "work"}],
        "gender": gender,
        "qualification": [
            {
                "code": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0360",
                            "code": "MD",
                            "display": "Doctor of Medicine",
                        }
                    ]
                }
            }
        ],
    }


def _role(layout: Layout, p: int) -> dict[str, Any]:
    code, display, title = layout.specialty(p)
    clinic = layout.clinic_of(p)
    return {
        "resourceType": "PractitionerRole",
        "id": layout.role_id(p),
        "active": True,
        "practitioner": ref("Practitioner", layout.practitioner_id(p)),
        "organization": ref("Organization", layout.clinic_id(clinic)),
        "code": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                        "code": "doctor",
                        "display": "Doctor",
                    }
                ],
                "text": title,
            }
        ],
        "specialty": [{"coding": [{"system": c.SNOMED, "code": code, "display": display}]}],
        "location": [ref("Location", layout.location_id(clinic))],
        "availableTime": [
            {
                "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                "availableStartTime": "09:00:00",
                "availableEndTime": "16:00:00",
            }
        ],
    }


def _schedule(layout: Layout, p: int) -> dict[str, Any]:
    code, display, _ = layout.specialty(p)
    start = layout.slot_start(0)
    end = layout.slot_start(layout.slots_per_schedule - 1) + timedelta(days=1)
    return {
        "resourceType": "Schedule",
        "id": layout.schedule_id(p),
        "active": True,
        "serviceType": [_service_type()],
        "specialty": [{"coding": [{"system": c.SNOMED, "code": code, "display": display}]}],
        "actor": [
            ref("PractitionerRole", layout.role_id(p)),
            ref("Practitioner", layout.practitioner_id(p)),
            ref("Location", layout.location_id(layout.clinic_of(p))),
        ],
        "planningHorizon": {"start": when(start), "end": when(end)},
    }


def _slot(layout: Layout, p: int, s: int, busy: bool) -> dict[str, Any]:
    start = layout.slot_start(s)
    return {
        "resourceType": "Slot",
        "id": layout.slot_id(p, s),
        "serviceType": [_service_type()],
        "schedule": ref("Schedule", layout.schedule_id(p)),
        "status": "busy" if busy else "free",
        "start": when(start),
        "end": when(start + timedelta(minutes=layout.slot_minutes)),
    }


def _service_type() -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/service-type",
                "code": "124",
                "display": "General Practice",
            }
        ]
    }


def _org_type(code: str, display: str) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/organization-type"
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _address(line: str, city: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "use": "work",
        "line": [line],
        "city": city[0],
        "state": city[1],
        "postalCode": city[2],
        "country": "US",
    }


def _street(rng: random.Random) -> str:
    return f"{rng.randint(1, 999)} {rng.choice(c.STREETS)}"


def _phone(rng: random.Random) -> str:
    return f"+1-617-555-{rng.randint(0, 9999):04d}"
