"""``fhir-server demo-data --users [N]``: sign-ins for the demo population, so the
patient portal (issue 22) can be tried at once.

- every one of the first N patients (default 10) signs in as their Patient id
  (``demo-pat-000001`` is ``Patient/demo-pat-000001``);
- every caregiver of those patients (a RelatedPerson of the demo data) signs in as its
  RelatedPerson id (``demo-rp-000004-01``) and acts for that one patient;
- ``demo-caregiver`` is one person caring for two patients: a ``Person``
  (https://hl7.org/fhir/R4/person.html, written to the store as ``demo-person-1``) that
  links the first two caregivers' RelatedPersons, so the sign-in pages ask whom to act
  for and the portal can switch between them.

All of them get one new random password, printed once. Running the command again gives
the existing sign-ins that new password (ending their grants, as a password reset does).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fhir_server.demo_data import Population
from fhir_server.storage.base import Store
from smart_auth.admin import create_user, reset_password
from smart_auth.store.base import AuthStore
from smart_auth.tokens import TokenService

CAREGIVER_OF_TWO = "demo-caregiver"
PERSON_ID = "demo-person-1"


@dataclass(frozen=True, slots=True)
class DemoSignIn:
    username: str
    fhir_user: str
    who: str


def _name(resource: dict[str, Any]) -> str:
    name = (resource.get("name") or [{}])[0]
    return " ".join([*name.get("given", []), name.get("family", "")]).strip()


def demo_sign_ins(population: Population, patients: int) -> tuple[list[DemoSignIn], dict | None]:
    """The sign-ins for the first ``patients`` patients, their caregivers and the
    caregiver of two; and the Person resource that caregiver is (None when the population
    has fewer than two caregivers)."""
    sign_ins: list[DemoSignIn] = []
    caregivers: list[dict[str, Any]] = []
    total = population.layout.patients
    for n in range(1, total + 1):
        if n > patients and len(caregivers) >= 2:
            break
        for resource in population.patient_record(n):
            type_ = resource["resourceType"]
            if n <= patients and type_ == "Patient":
                sign_ins.append(
                    DemoSignIn(resource["id"], f"Patient/{resource['id']}", _name(resource))
                )
            elif type_ == "RelatedPerson":
                if n <= patients:
                    patient = resource["patient"].get("display", resource["patient"]["reference"])
                    sign_ins.append(
                        DemoSignIn(
                            resource["id"],
                            f"RelatedPerson/{resource['id']}",
                            f"{_name(resource)}, caregiver of {patient}",
                        )
                    )
                caregivers.append(resource)
            elif type_ not in ("Patient", "RelatedPerson"):
                break  # the rest of a record comes after these two
    if len(caregivers) < 2:
        return sign_ins, None
    first, second = caregivers[:2]
    person = {
        "resourceType": "Person",
        "id": PERSON_ID,
        "active": True,
        "name": first["name"],
        "link": [
            {"target": {"reference": f"RelatedPerson/{rp['id']}"}, "assurance": "level3"}
            for rp in (first, second)
        ],
    }
    cared = " and ".join(rp["patient"].get("display", "") for rp in (first, second))
    sign_ins.append(
        DemoSignIn(CAREGIVER_OF_TWO, f"Person/{PERSON_ID}", f"{_name(first)}, caregiver of {cared}")
    )
    return sign_ins, person


async def write_person(store: Store, person: dict[str, Any]) -> None:
    """Store the caregiver-of-two's Person through the import path (validated)."""
    from fhir_server.bulk_import import import_resources

    report = await import_resources(store, [person], where="demo-data --users")
    if report.problem_count:
        raise ValueError(report.summary())


def create_sign_ins(
    auth: AuthStore, tokens: TokenService, sign_ins: list[DemoSignIn], password: str
) -> list[dict[str, str]]:
    """Create the accounts, or give existing ones the new password."""
    made = []
    for sign_in in sign_ins:
        existing = auth.find_user(sign_in.username)
        if existing is None:
            create_user(auth, sign_in.username, password, sign_in.fhir_user)
            state = "created"
        elif existing.fhir_user != sign_in.fhir_user:
            state = f"skipped: the username is {existing.fhir_user}'s"
        else:
            reset_password(auth, tokens, sign_in.username, password)
            state = "new password"
        made.append({"username": sign_in.username, "who": sign_in.who, "state": state})
    return made


def new_password() -> str:
    """A random password that is easy to type: four groups of four letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))
