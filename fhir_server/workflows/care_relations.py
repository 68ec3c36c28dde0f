"""Who is whose care team, for secure messaging (``fhir_server.workflows.messaging``) and
the staff inbox (``fhir_server.interactions.named_query_inbox``).

- A patient's **care relations** (whom a patient or caregiver may write to): a
  ``CareTeam`` whose subject is the patient (https://hl7.org/fhir/R4/careteam.html) and
  its participants, the patient's ``generalPractitioner`` and ``managingOrganization``
  (https://hl7.org/fhir/R4/patient.html), a practitioner (or role) taking part in one of
  the patient's encounters (``Encounter.participant.individual``), a PractitionerRole
  of one of these practitioners, and the organizations listed in the setting
  ``FHIR_SERVER_ORGANIZATION_INBOXES``.
- A staff user's **addresses** (what their inbox collects): the Practitioner, their
  PractitionerRoles (``PractitionerRole.practitioner``), the care teams they take part in
  (directly or through a role) and their roles' organizations.

The lookups read the store under no access limits: they decide who a message may go to,
and return nothing to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resources import fhir_json
from resources.search.index.reference import parse_reference
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery
from resources.terminology import value_set_codes

CARE_TYPES = ("Practitioner", "PractitionerRole", "CareTeam", "Organization")
"""What a patient's message may be addressed to."""


def query(type_: str, items: Iterable[tuple[str, str]]) -> SearchQuery:
    return parse_search(
        (type_,),
        list(items),
        strict=True,
        params_for=search_params,
        max_count=1000,
        default_count=100,
        value_set=value_set_codes,
    )


async def _search(store: Any, type_: str, items: list[tuple[str, str]], count: int) -> list[Any]:
    page = await store.search(query(type_, items), None, count, False)
    return [fhir_json.loads(e.content) for e in page.entries if e.content is not None]


async def _read(store: Any, type_: str, id_: str) -> dict[str, Any] | None:
    stored = await store.read(type_, id_)
    if stored is None or stored.deleted or stored.content is None:
        return None
    return fhir_json.loads(stored.content)


def reference_of(value: Any) -> str | None:
    """The ``Type/id`` a Reference points at (None: not a literal reference)."""
    text = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    type_, id_, _, _ = parse_reference(text)
    return f"{type_}/{id_}" if type_ and id_ else None


def references(values: Any) -> list[str]:
    found = [reference_of(v) for v in (values if isinstance(values, list) else [values])]
    return [r for r in found if r is not None]


def organization_inboxes(settings: Any) -> frozenset[str]:
    """The ``Organization/id``s of ``FHIR_SERVER_ORGANIZATION_INBOXES``."""
    text = getattr(settings, "organization_inboxes", "") or ""
    return frozenset(part.strip() for part in text.split(",") if part.strip())


class CareRelations:
    """The care relations of one patient, looked up as they are asked about."""

    def __init__(self, store: Any, patient: str, settings: Any) -> None:
        self.store = store
        self.patient = patient
        self.settings = settings
        self._record: dict[str, Any] | None = None

    async def _patient(self) -> dict[str, Any]:
        if self._record is None:
            type_, id_ = self.patient.split("/", 1)
            self._record = await _read(self.store, type_, id_) or {}
        return self._record

    async def _direct(self) -> set[str]:
        record = await self._patient()
        return {
            *references(record.get("generalPractitioner")),
            *references(record.get("managingOrganization")),
        }

    async def _in_encounter(self, who: str) -> bool:
        items = [("subject", self.patient), ("participant", who)]
        return bool(await _search(self.store, "Encounter", items, 1))

    async def _in_care_team(self, who: str) -> bool:
        items = [("subject", self.patient), ("participant", who)]
        return bool(await _search(self.store, "CareTeam", items, 1))

    async def allows(self, recipient: str) -> bool:
        """Whether ``recipient`` (``Type/id``) is one of the patient's care relations."""
        type_, _, id_ = recipient.partition("/")
        if type_ not in CARE_TYPES or not id_:
            return False
        if recipient in await self._direct():
            return True
        if type_ == "Organization":
            return recipient in organization_inboxes(self.settings)
        if type_ == "CareTeam":
            team = await _read(self.store, type_, id_)
            return team is not None and self.patient in references(team.get("subject"))
        if await self._in_care_team(recipient) or await self._in_encounter(recipient):
            return True
        if type_ == "PractitionerRole":
            role = await _read(self.store, type_, id_)
            practitioner = reference_of((role or {}).get("practitioner"))
            return practitioner is not None and await self.allows(practitioner)
        return False


async def staff_addresses(store: Any, user: str) -> list[str]:
    """The addresses of a staff user's inbox (``Practitioner/x`` or
    ``PractitionerRole/x``): see the module's docstring."""
    addresses: dict[str, None] = {user: None}
    roles: list[dict[str, Any]] = []
    if user.startswith("PractitionerRole/"):
        role = await _read(store, "PractitionerRole", user.split("/", 1)[1])
        practitioner = reference_of((role or {}).get("practitioner"))
        if practitioner is not None:
            addresses[practitioner] = None
            user = practitioner
    if user.startswith("Practitioner/"):
        roles = await _search(store, "PractitionerRole", [("practitioner", user)], 100)
    for role in roles:
        addresses[f"PractitionerRole/{role['id']}"] = None
        for organization in references(role.get("organization")):
            addresses[organization] = None
    members = ",".join(a for a in addresses if a.startswith(("Practitioner", "PractitionerRole")))
    for team in await _search(store, "CareTeam", [("participant", members)], 1000):
        addresses[f"CareTeam/{team['id']}"] = None
    return list(addresses)
