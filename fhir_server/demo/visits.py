"""The visits of a demo patient: past appointments that became encounters, each with
vital signs, a visit note and an invoice, one with lab results; an upcoming booked
appointment in a slot of the primary care practitioner's schedule; and for children the
well-child measurements (length/height, weight, head circumference, BMI) since birth
that a growth chart plots.

Every patient has labs. Patients whose cardiac risk is assessed (adults with
hypertension, diabetes, hyperlipidemia or obesity, and half of those over 40) have a
lipid panel with an hs-CRP and a systolic blood pressure on its own (what the SMART
cardiac risk app reads). Blood pressures carry both panel codes, 85354-9 (the R4
vital-signs profile) and 55284-4 (older SMART apps); head circumferences both 9843-4
and 8287-5.

https://hl7.org/fhir/R4/appointment.html, https://hl7.org/fhir/R4/encounter.html,
https://hl7.org/fhir/R4/observation-vitalsigns.html (vital-signs profile codes and UCUM
units), https://hl7.org/fhir/R4/diagnosticreport.html,
https://hl7.org/fhir/R4/documentreference.html, https://hl7.org/fhir/R4/invoice.html
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.demo import codes as c
from fhir_server.demo.billing import payments
from fhir_server.demo.growth import Measurements
from fhir_server.demo.layout import ref, when
from fhir_server.demo.patient import Person, coding

VITAL_SIGNS = coding(c.OBS_CATEGORY, "vital-signs", "Vital Signs")
LABORATORY = coding(c.OBS_CATEGORY, "laboratory", "Laboratory")
GROWTH_POINTS = 3
"""Well-child measurements of a child before their recent visits (birth included)."""


def visits(person: Person) -> Iterator[dict[str, Any]]:
    rng = person.rng
    count = rng.randint(1, 3) + (1 if len(person.conditions) >= 2 else 0)
    lifetime = (person.today - person.birth_date).days
    starts = sorted((person.past(min(720, lifetime), 7) for _ in range(count)), reverse=True)
    lab_visit = rng.randrange(count)
    panels = _lab_panels(person)
    if person.age < 18:
        yield from _growth_history(person, before=starts[-1].date())
    for v, start in enumerate(starts, 1):
        yield from _visit(person, v, start, panels if (v - 1) == lab_visit else ())
    yield from _upcoming(person)


def _lab_panels(person: Person) -> tuple[tuple, ...]:
    """What the patient's lab visit measured: a lipid panel with hs-CRP when their
    cardiac risk is assessed, else one panel that suits their age and problems."""
    rng = person.rng
    bmp, cbc, lipid, a1c = c.LAB_PANELS
    if person.age < 18:
        return (rng.choice((cbc, cbc, bmp)),)
    problems = {snomed for snomed, *_ in person.conditions}
    at_risk = bool(problems & c.CARDIAC_RISK_CONDITIONS)
    if person.age >= 30 and (at_risk or (person.age >= 40 and rng.random() < 0.5)):
        return (lipid, c.HS_CRP_PANEL)
    if "44054006" in problems:
        return (a1c,)
    return (rng.choice(c.LAB_PANELS),)


def _visit(
    person: Person, v: int, start: datetime, panels: tuple[tuple, ...]
) -> Iterator[dict[str, Any]]:
    rng = person.rng
    reason = c.VISIT_REASONS[3] if person.age < 12 else rng.choice(c.VISIT_REASONS[:3])
    end = start + timedelta(minutes=30)
    location = ref("Location", person.layout.location_id(person.clinic))
    appointment_id, encounter_id = person.sub_id("appt", v), person.sub_id("enc", v)
    yield {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": "fulfilled",
        "serviceType": [
            coding("http://terminology.hl7.org/CodeSystem/service-type", "124", "General Practice")
        ],
        "reasonCode": [coding(c.SNOMED, *reason)],
        "description": reason[1],
        "start": when(start),
        "end": when(end),
        "minutesDuration": 30,
        "created": when(start - timedelta(days=rng.randint(3, 30))),
        "participant": [
            {"actor": person.ref, "required": "required", "status": "accepted"},
            {"actor": person.doctor, "required": "required", "status": "accepted"},
            {"actor": location, "required": "required", "status": "accepted"},
        ],
    }
    yield {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": {"system": c.V3_ACT, "code": "AMB", "display": "ambulatory"},
        "type": [coding(c.SNOMED, *reason)],
        "subject": person.ref,
        "participant": [
            {
                "type": [
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "PPRF",
                        "primary performer",
                    )
                ],
                "individual": person.doctor,
            }
        ],
        "appointment": [ref("Appointment", appointment_id)],
        "period": {"start": when(start), "end": when(end)},
        "reasonCode": [coding(c.SNOMED, *reason)],
        "location": [{"location": location}],
        "serviceProvider": ref("Organization", person.layout.clinic_id(person.clinic)),
    }
    vitals = list(_vitals(person, v, start, cardiac=c.HS_CRP_PANEL in panels))
    yield from vitals
    labs = list(_labs(person, v, start, panels))
    yield from labs
    yield _note(person, v, start, vitals)
    bill = _invoice(person, v, start, labs)
    yield bill
    yield from payments(person, v, bill)


def _quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": c.UCUM, "code": unit}


def _number(rng: Any, low: float, high: float, decimals: int) -> Any:
    value = rng.uniform(low, high)
    return round(value) if decimals == 0 else Decimal(f"{value:.{decimals}f}")


def _observation(
    person: Person,
    id_: str,
    encounter: str | None,
    category: dict,
    code: tuple[str, str],
    at: datetime,
    *also: tuple[str, str],
) -> dict[str, Any]:
    """An Observation of ``code`` (LOINC), with ``also`` as further LOINC codings."""
    concept = coding(c.LOINC, *code)
    for other in also:
        concept["coding"].append({"system": c.LOINC, "code": other[0], "display": other[1]})
    out = {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "category": [category],
        "code": concept,
        "subject": person.ref,
    }
    if encounter:
        out["encounter"] = ref("Encounter", encounter)
    out["effectiveDateTime"] = when(at)
    out["issued"] = when(at + timedelta(minutes=5))
    out["performer"] = [person.doctor]
    return out


def _range(unit: str, low: Any, high: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if low is not None:
        out["low"] = _quantity(low, unit)
    if high is not None:
        out["high"] = _quantity(high, unit)
    return out


def _interpretation(value: Any, low: Any, high: Any) -> dict[str, Any]:
    if low is not None and value < low:
        return coding(c.INTERPRETATION, "L", "Low")
    if high is not None and value > high:
        return coding(c.INTERPRETATION, "H", "High")
    return coding(c.INTERPRETATION, "N", "Normal")


def _years(person: Person, day: date) -> float:
    return (day - person.birth_date).days / 365.25


def _child_range(table: tuple[tuple[int, int, int], ...], years: float) -> tuple[int, int] | None:
    return next(((low, high) for below, low, high in table if years < below), None)


def _body(
    person: Person, id_: str, encounter: str | None, at: datetime, m: Measurements, adult: bool
) -> Iterator[dict[str, Any]]:
    """Height, weight, BMI and (for young children) head circumference."""
    names = ("height", "weight", "bmi", "head")
    for k, (name, value) in enumerate(
        zip(names, (m.height, m.weight, m.bmi, m.head), strict=True), 1
    ):
        if value is None:
            continue
        code, display, unit, _, _, _, normal_low, normal_high = c.VITALS[name]
        also = (c.HEAD_CIRCUMFERENCE_TAPE,) if name == "head" else ()
        obs = _observation(person, f"{id_}-{k}", encounter, VITAL_SIGNS, (code, display), at, *also)
        obs["valueQuantity"] = _quantity(value, unit)
        if adult and (normal_low is not None or normal_high is not None):
            obs["referenceRange"] = [_range(unit, normal_low, normal_high)]
        yield obs


def _vitals(person: Person, v: int, at: datetime, cardiac: bool) -> Iterator[dict[str, Any]]:
    rng, encounter, id_ = person.rng, person.sub_id("enc", v), person.sub_id("vs", v)
    years = _years(person, at.date())
    names = ["heart-rate", "resp-rate", "temperature"] + (["oxygen"] if years >= 18 else [])
    for k, name in enumerate(names, 1):
        code, display, unit, low, high, decimals, normal_low, normal_high = c.VITALS[name]
        table = {"heart-rate": c.CHILD_HEART_RATE, "resp-rate": c.CHILD_RESP_RATE}.get(name)
        child = _child_range(table, years) if table else None
        if child:
            low, high = normal_low, normal_high = child
        obs = _observation(person, f"{id_}-{k}", encounter, VITAL_SIGNS, (code, display), at)
        obs["valueQuantity"] = _quantity(_number(rng, low, high, decimals), unit)
        obs["referenceRange"] = [_range(unit, normal_low, normal_high)]
        yield obs
    yield from _body(person, f"{id_}-b", encounter, at, person.body.measure(at.date()), years >= 18)
    if years < 3:
        return
    bp = _observation(
        person, f"{id_}-bp", encounter, VITAL_SIGNS, c.BLOOD_PRESSURE, at, c.BLOOD_PRESSURE_PANEL
    )
    bp["code"]["text"] = "Blood pressure"
    pressures = (c.CHILD_SYSTOLIC, c.CHILD_DIASTOLIC) if years < 13 else (c.SYSTOLIC, c.DIASTOLIC)
    bp["component"] = [
        {
            "code": coding(c.LOINC, code, display),
            "valueQuantity": _quantity(rng.randint(low, high), "mm[Hg]"),
            "referenceRange": [_range("mm[Hg]", normal_low, normal_high)],
        }
        for code, display, low, high, normal_low, normal_high in pressures
    ]
    yield bp
    if cardiac:
        # the SMART cardiac risk app reads a systolic pressure only as an Observation of
        # its own (code 8480-6 with a valueQuantity), so the lab visit records one
        code, display, _, _, normal_low, normal_high = pressures[0]
        obs = _observation(person, f"{id_}-sbp", encounter, VITAL_SIGNS, (code, display), at)
        obs["valueQuantity"] = dict(bp["component"][0]["valueQuantity"])
        obs["referenceRange"] = [_range("mm[Hg]", normal_low, normal_high)]
        obs["derivedFrom"] = [ref("Observation", bp["id"])]
        yield obs


def _growth_history(person: Person, before: date) -> Iterator[dict[str, Any]]:
    """A child's well-child measurements before their recent visits, from birth."""
    for k, day in enumerate(person.body.growth_days(before, GROWTH_POINTS), 1):
        at = datetime(day.year, day.month, day.day, 10)
        m = person.body.measure(day)
        yield from _body(person, person.sub_id("growth", k), None, at, m, adult=False)


def _labs(
    person: Person, v: int, at: datetime, panels: tuple[tuple, ...]
) -> Iterator[dict[str, Any]]:
    rng, encounter = person.rng, person.sub_id("enc", v)
    k = 0
    for j, (panel_code, panel_display, tests) in enumerate(panels, 1):
        results = []
        for code, display, unit, low, high, decimals, normal_low, normal_high in tests:
            k += 1
            value = _number(rng, low, high, decimals)
            id_ = f"{person.sub_id('lab', v)}-{k}"
            obs = _observation(person, id_, encounter, LABORATORY, (code, display), at)
            obs["valueQuantity"] = _quantity(value, unit)
            obs["interpretation"] = [_interpretation(value, normal_low, normal_high)]
            obs["referenceRange"] = [_range(unit, normal_low, normal_high)]
            results.append(obs)
            yield obs
        report_id = person.sub_id("dr", v) + (f"-{j}" if j > 1 else "")
        yield {
            "resourceType": "DiagnosticReport",
            "id": report_id,
            "status": "final",
            "category": [
                coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")
            ],
            "code": coding(c.LOINC, panel_code, panel_display),
            "subject": person.ref,
            "encounter": ref("Encounter", encounter),
            "effectiveDateTime": when(at),
            "issued": when(at + timedelta(hours=rng.randint(4, 48))),
            "performer": [ref("Organization", person.layout.clinic_id(person.clinic))],
            "result": [ref("Observation", o["id"], o["code"]["text"]) for o in results],
        }


def _note(person: Person, v: int, at: datetime, vitals: list[dict]) -> dict[str, Any]:
    rng = person.rng
    lines = [
        f"Visit note for {person.given} {person.family}, {at:%B %d, %Y}.",
        *rng.sample(c.NOTE_PHRASES, 3),
        "Vitals: "
        + ", ".join(
            f"{o['code']['text']} {o['valueQuantity']['value']} {o['valueQuantity']['unit']}"
            for o in vitals
            if "valueQuantity" in o
        )
        + ".",
    ]
    text = "\n".join(lines).encode()
    return {
        "resourceType": "DocumentReference",
        "id": person.sub_id("note", v),
        "status": "current",
        "docStatus": "final",
        "type": coding(c.LOINC, "11506-3", "Progress note"),
        "category": [
            coding(
                "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                "clinical-note",
                "Clinical Note",
            )
        ],
        "subject": person.ref,
        "date": when(at + timedelta(minutes=45)),
        "author": [person.doctor],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "language": "en-US",
                    "data": base64.b64encode(text).decode(),
                    "title": "Progress note",
                    "creation": when(at + timedelta(minutes=45)),
                }
            }
        ],
        "context": {
            "encounter": [ref("Encounter", person.sub_id("enc", v))],
            "period": {"start": when(at), "end": when(at + timedelta(minutes=30))},
        },
    }


def _invoice(person: Person, v: int, at: datetime, labs: list[dict]) -> dict[str, Any]:
    visit = c.VISIT_CHARGES[2] if person.rng.random() < 0.2 else c.VISIT_CHARGES[person.n % 2]
    charges = [visit] + [
        c.LAB_CHARGES[r["code"]["coding"][0]["code"]]
        for r in labs
        if r["resourceType"] == "DiagnosticReport"
    ]
    total = sum(Decimal(price) for *_, price in charges)
    paid = at.date() < person.today - timedelta(days=60)
    return {
        "resourceType": "Invoice",
        "id": person.sub_id("inv", v),
        "identifier": [{"system": "urn:demo:invoice", "value": f"INV-{person.n:06d}-{v:02d}"}],
        "status": "balanced" if paid else "issued",
        "subject": person.ref,
        "recipient": person.ref,
        "date": when(at + timedelta(days=2)),
        "participant": [{"actor": person.doctor}],
        "issuer": ref("Organization", person.layout.clinic_id(person.clinic)),
        "account": ref("Account", person.sub_id("acct", 1)),
        "lineItem": [
            {
                "sequence": k,
                "chargeItemCodeableConcept": coding(c.CPT, code, display),
                "priceComponent": [
                    {"type": "base", "amount": {"value": Decimal(price), "currency": "USD"}}
                ],
            }
            for k, (code, display, price) in enumerate(charges, 1)
        ],
        "totalNet": {"value": total, "currency": "USD"},
        "totalGross": {"value": total, "currency": "USD"},
        "paymentTerms": "Due within 30 days of the invoice date.",
    }


def _upcoming(person: Person) -> Iterator[dict[str, Any]]:
    layout = person.layout
    slot = layout.future_slot(person.n)
    if slot is None:
        return
    start = layout.slot_start(slot)
    p = person.practitioner
    yield {
        "resourceType": "Appointment",
        "id": person.sub_id("appt", 99),
        "status": "booked",
        "serviceType": [
            coding("http://terminology.hl7.org/CodeSystem/service-type", "124", "General Practice")
        ],
        "reasonCode": [coding(c.SNOMED, *c.VISIT_REASONS[1])],
        "description": "Follow-up visit",
        "slot": [ref("Slot", layout.slot_id(p, slot))],
        "start": when(start),
        "end": when(start + timedelta(minutes=layout.slot_minutes)),
        "minutesDuration": layout.slot_minutes,
        "created": when(datetime(person.today.year, person.today.month, person.today.day, 9)),
        "patientInstruction": "Please arrive 10 minutes early and bring your insurance card.",
        "participant": [
            {"actor": person.ref, "required": "required", "status": "accepted"},
            {"actor": person.doctor, "required": "required", "status": "accepted"},
            {
                "actor": ref("Location", layout.location_id(person.clinic)),
                "required": "required",
                "status": "accepted",
            },
        ],
    }
