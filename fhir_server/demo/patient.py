"""One demo patient and what the portal shows about them outside visits: caregivers,
coverage and billing account, problems, allergies, immunizations (and a vaccination due,
for every other patient), prescriptions with refills, and message threads with the care
team.

https://hl7.org/fhir/R4/patient.html, https://hl7.org/fhir/R4/relatedperson.html,
https://hl7.org/fhir/R4/coverage.html, https://hl7.org/fhir/R4/account.html,
https://hl7.org/fhir/R4/condition.html, https://hl7.org/fhir/R4/allergyintolerance.html,
https://hl7.org/fhir/R4/immunization.html,
https://hl7.org/fhir/R4/immunizationrecommendation.html,
https://hl7.org/fhir/R4/medicationrequest.html, https://hl7.org/fhir/R4/communication.html
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from fhir_server.demo import codes as c
from fhir_server.demo.growth import Body
from fhir_server.demo.layout import Layout, ref, when
from fhir_server.demo.refills import plan_refill, prior_prescription

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


class Person:
    """Facts about patient ``n`` that several resources share."""

    def __init__(self, layout: Layout, n: int, rng: random.Random) -> None:
        self.layout = layout
        self.n = n
        self.rng = rng
        self.id = layout.patient_id(n)
        self.today = layout.today
        roll = rng.random()
        self.age = (
            rng.randint(0, 17)
            if roll < 0.2
            else rng.randint(65, 95)
            if roll > 0.8
            else rng.randint(18, 64)
        )
        self.gender = rng.choice(("male", "female"))
        names = c.MALE_NAMES if self.gender == "male" else c.FEMALE_NAMES
        self.given = rng.choice(names)
        self.family = rng.choice(c.FAMILY_NAMES)
        born = self.today - timedelta(days=365 * self.age + rng.randint(0, 364))
        self.birth_date = born
        self.practitioner = layout.primary_care(n)
        self.clinic = layout.clinic_of(self.practitioner)
        self.conditions = rng.sample(c.CONDITIONS, rng.choice((0, 1, 1, 2, 2, 3)))
        obese = any(snomed == "162864005" for snomed, *_ in self.conditions)
        self.body = Body(self.gender == "male", born, obese, random.Random(rng.getrandbits(32)))
        self.refill: tuple[int, str, datetime] | None = None
        """The refill request of the patient (``fhir_server.demo.refills``): which
        prescription, in which state, authored when."""

    @property
    def ref(self) -> dict[str, Any]:
        return ref("Patient", self.id, f"{self.given} {self.family}")

    @property
    def doctor(self) -> dict[str, Any]:
        return ref("Practitioner", self.layout.practitioner_id(self.practitioner))

    def past(self, max_days: int, min_days: int = 1) -> datetime:
        """A working-hours moment between ``max_days`` and ``min_days`` days ago."""
        days = self.rng.randint(min_days, max(min_days, max_days))
        day = self.today - timedelta(days=days)
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        if day < self.birth_date:
            day = self.birth_date
        return datetime(day.year, day.month, day.day, self.rng.randint(8, 16))

    def sub_id(self, kind: str, k: int) -> str:
        return f"demo-{kind}-{self.n:06d}-{k:02d}"


def patient(person: Person) -> dict[str, Any]:
    rng = person.rng
    city = c.CITIES[rng.randrange(len(c.CITIES))]
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": person.id,
        "identifier": [
            {
                "use": "usual",
                "type": coding(
                    "http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"
                ),
                "system": "urn:demo:mrn",
                "value": f"MRN{person.n:08d}",
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": person.family, "given": [person.given]}],
        "telecom": [
            {
                "system": "phone",
                "value": f"+1-555-{person.n % 1000:03d}-{rng.randint(0, 9999):04d}",
                "use": "mobile",
            },
            {
                "system": "email",
                "value": f"{person.given}.{person.family}{person.n}@example.com".lower(),
                "use": "home",
            },
        ],
        "gender": person.gender,
        "birthDate": person.birth_date.isoformat(),
        "address": [
            {
                "use": "home",
                "line": [f"{rng.randint(1, 999)} {rng.choice(c.STREETS)}"],
                "city": city[0],
                "state": city[1],
                "postalCode": city[2],
                "country": "US",
            }
        ],
        "communication": [
            {
                "language": coding("urn:ietf:bcp:47", "en-US", "English (United States)"),
                "preferred": True,
            }
        ],
        "generalPractitioner": [person.doctor],
        "managingOrganization": ref("Organization", person.layout.clinic_id(person.clinic)),
    }
    if person.age >= 18:
        status = rng.choice((("M", "Married"), ("S", "Never Married"), ("D", "Divorced")))
        out["maritalStatus"] = coding(
            "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", *status
        )
    return out


def caregiver(person: Person) -> Iterator[dict[str, Any]]:
    """A parent for young children, an adult child for some of the elderly."""
    rng = person.rng
    if person.age < 12:
        relation = ("MTH", "mother") if rng.random() < 0.6 else ("FTH", "father")
        gender = "female" if relation[0] == "MTH" else "male"
        family = person.family
    elif person.age >= 80 and rng.random() < 0.5:
        relation = ("DAU", "natural daughter") if rng.random() < 0.5 else ("SON", "natural son")
        gender = "female" if relation[0] == "DAU" else "male"
        family = person.family if rng.random() < 0.7 else rng.choice(c.FAMILY_NAMES)
    else:
        return
    given = rng.choice(c.FEMALE_NAMES if gender == "female" else c.MALE_NAMES)
    yield {
        "resourceType": "RelatedPerson",
        "id": person.sub_id("rp", 1),
        "active": True,
        "patient": person.ref,
        "relationship": [
            coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", *relation),
            coding("http://terminology.hl7.org/CodeSystem/v2-0131", "C", "Emergency Contact"),
        ],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [
            {
                "system": "phone",
                "value": f"+1-555-{rng.randint(0, 999):03d}-{rng.randint(0, 9999):04d}",
            }
        ],
        "gender": gender,
    }


def coverage_and_account(person: Person) -> Iterator[dict[str, Any]]:
    payer = 3 if person.age >= 65 else 1 + person.n % 2
    start = date(person.today.year, 1, 1).isoformat()
    end = date(person.today.year, 12, 31).isoformat()
    yield {
        "resourceType": "Coverage",
        "id": person.sub_id("cov", 1),
        "identifier": [{"system": "urn:demo:member", "value": f"M{person.n:09d}"}],
        "status": "active",
        "type": coding(c.V3_ACT, "HIP", "health insurance plan policy"),
        "subscriber": person.ref,
        "subscriberId": f"M{person.n:09d}",
        "beneficiary": person.ref,
        "relationship": coding(
            "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"
        ),
        "period": {"start": start, "end": end},
        "payor": [ref("Organization", f"demo-payer-{payer}")],
        "class": [
            {
                "type": coding(
                    "http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"
                ),
                "value": f"PLAN-{payer}{person.n % 3}",
                "name": ("Silver PPO", "Gold HMO", "Medicare Part B")[payer - 1],
            }
        ],
    }
    yield {
        "resourceType": "Account",
        "id": person.sub_id("acct", 1),
        "identifier": [{"system": "urn:demo:account", "value": f"A{person.n:09d}"}],
        "status": "active",
        "type": coding(c.V3_ACT, "PBILLACCT", "patient billing account"),
        "name": f"{person.given} {person.family}",
        "subject": [person.ref],
        "servicePeriod": {"start": start, "end": end},
        "coverage": [{"coverage": ref("Coverage", person.sub_id("cov", 1)), "priority": 1}],
        "owner": ref("Organization", person.layout.clinic_id(person.clinic)),
    }


def conditions(person: Person) -> Iterator[dict[str, Any]]:
    for k, (snomed, display, icd, chronic) in enumerate(person.conditions, 1):
        onset = person.past(min(3650, 365 * max(person.age, 1)), 30)
        resolved = not chronic
        out = {
            "resourceType": "Condition",
            "id": person.sub_id("cond", k),
            "clinicalStatus": coding(
                CLINICAL, *(("resolved", "Resolved") if resolved else ("active", "Active"))
            ),
            "verificationStatus": coding(VERIFICATION, "confirmed", "Confirmed"),
            "category": [
                coding(
                    "http://terminology.hl7.org/CodeSystem/condition-category",
                    "problem-list-item",
                    "Problem List Item",
                )
            ],
            "code": {
                "coding": [
                    {"system": c.SNOMED, "code": snomed, "display": display},
                    {"system": c.ICD10, "code": icd},
                ],
                "text": display,
            },
            "subject": person.ref,
            "onsetDateTime": when(onset),
            "recordedDate": when(onset),
            "recorder": person.doctor,
        }
        if resolved:
            out["abatementDateTime"] = when(onset + timedelta(days=person.rng.randint(7, 21)))
        yield out


def allergies(person: Person) -> Iterator[dict[str, Any]]:
    rng = person.rng
    for k, (system, code, display, category, criticality) in enumerate(
        rng.sample(c.ALLERGIES, rng.choice((0, 0, 1, 1, 2))), 1
    ):
        reaction = rng.choice(c.REACTIONS)
        yield {
            "resourceType": "AllergyIntolerance",
            "id": person.sub_id("allergy", k),
            "clinicalStatus": coding(ALLERGY_CLINICAL, "active", "Active"),
            "verificationStatus": coding(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
            "type": "allergy",
            "category": [category],
            "criticality": criticality,
            "code": coding(system, code, display),
            "patient": person.ref,
            "recordedDate": when(person.past(1000, 60)),
            "recorder": person.doctor,
            "reaction": [
                {
                    "manifestation": [coding(c.SNOMED, *reaction)],
                    "severity": "severe" if reaction[0] == "39579001" else "mild",
                }
            ],
        }


def immunizations(person: Person) -> Iterator[dict[str, Any]]:
    rng = person.rng
    choices = [v for v in c.VACCINES if v[2] == (person.age < 18)]
    for k, (cvx, display, _) in enumerate(rng.sample(choices, rng.randint(1, 4)), 1):
        yield {
            "resourceType": "Immunization",
            "id": person.sub_id("imm", k),
            "status": "completed",
            "vaccineCode": coding(c.CVX, cvx, display),
            "patient": person.ref,
            "occurrenceDateTime": when(person.past(min(1800, 365 * person.age + 60), 14)),
            "primarySource": True,
            "location": ref("Location", person.layout.location_id(person.clinic)),
            "lotNumber": f"LOT{rng.randint(10000, 99999)}",
            "performer": [{"actor": person.doctor}],
        }
    if person.n % 2 == 0:  # without the random generator: the rest of the record stays
        yield recommendation(person)


RECOMMENDATION_STATUS = "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"


def recommendation(person: Person) -> dict[str, Any]:
    """A vaccination due in two weeks to three months (influenza; MMR for a child), for
    the health maintenance reminders (``fhir_server.notifications.health_maintenance``):
    https://hl7.org/fhir/R4/immunizationrecommendation.html."""
    cvx, display = ("03", "MMR") if person.age < 18 else c.VACCINES[0][:2]
    due = person.today + timedelta(days=14 + person.n % 77)
    return {
        "resourceType": "ImmunizationRecommendation",
        "id": person.sub_id("immrec", 1),
        "patient": person.ref,
        "date": person.today.isoformat(),
        "recommendation": [
            {
                "vaccineCode": [coding(c.CVX, cvx, display)],
                "forecastStatus": coding(RECOMMENDATION_STATUS, "due", "Due"),
                "dateCriterion": [
                    {
                        "code": coding(c.LOINC, "30980-7", "Date vaccine due"),
                        "value": due.isoformat(),
                    }
                ],
            }
        ],
    }


def medication_requests(person: Person) -> Iterator[dict[str, Any]]:
    rng = person.rng
    treated = {snomed for snomed, *_ in person.conditions}
    meds = [m for m in c.MEDICATIONS if m[5] in treated]
    if not meds and rng.random() < 0.3:
        meds = [rng.choice([m for m in c.MEDICATIONS if m[5] is None])]
    for k, (rxnorm, display, sig, quantity, days, _) in enumerate(meds[:3], 1):
        authored = person.past(180, 3)
        active = days >= 30
        renewal = active and plan_refill(person, k, authored) == "completed"
        if renewal:
            yield prior_prescription(person, k, rxnorm, display, sig, authored)
        out = {
            "resourceType": "MedicationRequest",
            "id": person.sub_id("medrx", k),
            "status": "active" if active else "completed",
            "intent": "order",
            "medicationCodeableConcept": coding(c.RXNORM, rxnorm, display),
            "subject": person.ref,
            "authoredOn": when(authored),
            "requester": person.doctor,
            "dosageInstruction": [{"sequence": 1, "text": sig}],
            "dispenseRequest": {
                "validityPeriod": {
                    "start": authored.date().isoformat(),
                    "end": (authored + timedelta(days=365)).date().isoformat(),
                },
                "numberOfRepeatsAllowed": rng.choice((0, 1, 2, 3, 5, 11)) if active else 0,
                "quantity": {"value": quantity, "unit": "each", "system": c.UCUM, "code": "{each}"},
                "expectedSupplyDuration": {
                    "value": days,
                    "unit": "days",
                    "system": c.UCUM,
                    "code": "d",
                },
            },
        }
        if renewal:
            out["priorPrescription"] = ref("MedicationRequest", person.sub_id("medrx", 10 + k))
        yield out


def communications(person: Person) -> Iterator[dict[str, Any]]:
    """Message threads (the model of ``fhir_server.workflows.messaging``): the first
    message names the topic, each reply points at the message it answers
    (``inResponseTo``) and at the thread's first message (``partOf``). The last message
    of one patient in three is still unread (``in-progress``, no ``received``)."""
    rng = person.rng
    threads = rng.choice((0, 1, 1, 2))
    for t in range(threads):
        topic, *messages = rng.choice(c.MESSAGE_TOPICS)
        sent = person.past(60, 3).replace(minute=rng.randint(0, 59))
        previous: str | None = None
        first: str | None = None
        texts = [m for m in messages if m]
        for k, text in enumerate(texts):
            from_patient = k % 2 == 0
            id_ = person.sub_id("msg", 10 * (t + 1) + k)
            out: dict[str, Any] = {
                "resourceType": "Communication",
                "id": id_,
                "status": "completed",
                "category": [
                    coding(
                        "http://terminology.hl7.org/CodeSystem/communication-category",
                        "notification",
                        "Notification",
                    )
                ],
                "subject": person.ref,
                "topic": {"text": topic},
                "sent": when(sent),
                "received": when(sent + timedelta(minutes=1)),
                "recipient": [person.doctor if from_patient else person.ref],
                "sender": person.ref if from_patient else person.doctor,
                "payload": [{"contentString": text}],
            }
            if previous is not None:
                out["inResponseTo"] = [ref("Communication", previous)]
                out["partOf"] = [ref("Communication", first or previous)]
            if person.n % 3 == 0 and t == threads - 1 and k == len(texts) - 1:
                out["status"] = "in-progress"
                del out["received"]
            first = first or id_
            previous = id_
            sent += timedelta(hours=rng.randint(1, 30))
            yield out
