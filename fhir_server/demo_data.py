"""``fhir-server demo-data``: a realistic, deterministic population for a patient portal.

From 10 to 100,000 patients, with the care directory they need: organizations (a health
system, its clinics, payers), locations, practitioners with PractitionerRoles, schedules
with free and busy slots, past (fulfilled) and future (booked) appointments, encounters
with visit notes (DocumentReference, text/plain attachment), conditions, allergies,
immunizations (CVX), vital signs and lab results (Observations with LOINC codes, UCUM
units and reference ranges, labs grouped by DiagnosticReports; every patient has labs),
children's growth since birth (height, weight, head circumference, BMI), what the classic
SMART sample apps read (growth chart, cardiac risk: hs-CRP with a lipid panel; blood
pressures coded both 85354-9 and 55284-4), medication requests with
refills (RxNorm, ``dispenseRequest.numberOfRepeatsAllowed``), Communication threads
between patients and their practitioners (some unread), care teams, refill requests in
every state (``fhir_server.demo.refills``), Coverage, Account, Invoices with line items,
and RelatedPerson caregivers of young children and some elderly patients.

The output is a pure function of ``(patients, seed, today)``: every patient has a random
generator of their own (seeded from the seed and their number) and ids are
deterministic (``demo-pat-000123``, ``demo-enc-000123-02``…), so running it again with the
same arguments rewrites the same resources, which the import path leaves untouched. The
population is streamed (the directory, then one patient at a time), so memory stays
bounded at any size. ``today`` (default: the current date) places past visits before it
and booked slots in the two working weeks after it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO, Any

from fhir_server.bulk_import import ImportReport, import_resources
from fhir_server.demo.directory import directory
from fhir_server.demo.layout import Layout
from fhir_server.demo.patient import (
    Person,
    allergies,
    caregiver,
    communications,
    conditions,
    coverage_and_account,
    immunizations,
    medication_requests,
    patient,
)
from fhir_server.demo.refills import care_team, refill_requests
from fhir_server.demo.visits import visits
from fhir_server.storage.base import Store
from resources import fhir_json

MIN_PATIENTS, MAX_PATIENTS = 10, 100_000


class Population:
    """The demo population for ``patients``, ``seed`` and ``today``; iterate it for the
    resources, in an order where every reference points at an earlier resource."""

    def __init__(self, patients: int = 100, seed: int = 1, today: date | None = None) -> None:
        if not MIN_PATIENTS <= patients <= MAX_PATIENTS:
            raise ValueError(f"patients must be {MIN_PATIENTS} to {MAX_PATIENTS}")
        self.seed = seed
        self.layout = Layout(patients, today or date.today())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from directory(self.layout, self.seed)
        for n in range(1, self.layout.patients + 1):
            yield from self.patient_record(n)

    def patient_record(self, n: int) -> Iterator[dict[str, Any]]:
        """Everything about patient ``n`` (1-based)."""
        person = Person(self.layout, n, random.Random(f"{self.seed}-patient-{n}"))
        yield patient(person)
        yield from caregiver(person)
        yield from coverage_and_account(person)
        yield from conditions(person)
        yield from allergies(person)
        yield from immunizations(person)
        yield from medication_requests(person)
        yield from visits(person)
        yield from communications(person)
        yield from care_team(person)
        yield from refill_requests(person)


async def write_population(
    store: Store,
    population: Population,
    *,
    batch_size: int = 1000,
    workers: int | None = 0,
    progress: bool = False,
) -> ImportReport:
    """Store the population through the import path (validated, batched, idempotent)."""
    return await import_resources(
        store,
        population,
        where="demo-data",
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )


def write_ndjson(population: Population, folder: Path) -> Counter[str]:
    """Write the population as bulk-export NDJSON (``Patient.ndjson``…) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, IO[bytes]] = {}
    counts: Counter[str] = Counter()
    try:
        for resource in population:
            type_ = resource["resourceType"]
            if type_ not in files:
                files[type_] = (folder / f"{type_}.ndjson").open("wb")
            files[type_].write(fhir_json.dumps(resource) + b"\n")
            counts[type_] += 1
    finally:
        for stream in files.values():
            stream.close()
    return counts
