"""Who cares for a patient is recorded by staff (security review of issue 19): the care
relations that decide whom a patient may message (``fhir_server.workflows.care_relations``:
the CareTeams with the patient as subject, the patient's ``generalPractitioner`` and
``managingOrganization``, the practitioners of the patient's encounters) are data a
patient-context token could otherwise write, making any practitioner "her care team".

So a patient or caregiver (a patient-side caller, :class:`~fhir_server.workflows.base.Caller`)
may not set or change:

- ``Patient.generalPractitioner`` and ``Patient.managingOrganization``;
- the participants of a ``CareTeam`` other than the patient and her RelatedPersons;
- the participants of an ``Encounter`` (https://hl7.org/fhir/R4/encounter.html: the
  practitioners of a visit are the clinic's record).

Anything else of those resources stays theirs to write where the scopes allow it. Staff,
backend services and bulk import are not limited. Refused: ``403`` naming the element.
"""

from __future__ import annotations

from typing import Any

from fhir_server.workflows.base import Change, Transaction, rule
from resources.errors import FhirError

_PEOPLE = ("Patient/", "RelatedPerson/")


def _refuse(element: str) -> FhirError:
    return FhirError(
        403,
        "forbidden",
        f"{element} is recorded by the clinic's staff: a patient or caregiver cannot change"
        " who cares for the patient",
    )


def _staff_members(team: dict[str, Any] | None) -> list[str]:
    out = []
    for participant in (team or {}).get("participant") or []:
        member = (participant or {}).get("member") or {}
        reference = member.get("reference") if isinstance(member, dict) else None
        if not (isinstance(reference, str) and reference.startswith(_PEOPLE)):
            out.append(repr(participant))
    return sorted(out)


@rule("Patient", "CareTeam", "Encounter")
async def care_relations_are_staffs(tx: Transaction, change: Change) -> None:
    if tx.caller.staff or tx.origin == "import" or change.resource is None:
        return
    resource = change.resource
    before = await tx.previous(change)
    if change.type == "Patient":
        for element in ("generalPractitioner", "managingOrganization"):
            if resource.get(element) != (before or {}).get(element):
                raise _refuse(f"Patient.{element}")
    elif change.type == "CareTeam":
        if _staff_members(resource) != _staff_members(before):
            raise _refuse("CareTeam.participant")
    elif resource.get("participant") != (before or {}).get("participant"):
        raise _refuse("Encounter.participant")
