"""What the SMART authorization server needs to know from FHIR data, answered from the
store: which patients a user may act for (the patient picker of a standalone launch,
https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-context-arrives-with-your-access_token)
and a display name for a reference.

- ``Patient/x``: that patient.
- ``RelatedPerson/y``: the patient the RelatedPerson represents, if it is ``active`` (not
  false) and today is within its ``period`` (https://hl7.org/fhir/R4/relatedperson.html):
  a caregiver acts for that patient only.
- ``Person/p``: one login for someone who is a patient and/or a caregiver of several
  people: the patients of the Patient and active RelatedPersons it links.
- ``Practitioner/z`` (staff): patients found by name, for the picker.

It also tells which resource types exist (the R4 definitions), so that no token is
granted a scope of a type that does not (``system/UnknownResource.read``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fhir_server.storage.base import Store
from resources import fhir_json
from resources.definitions import is_resource_type
from resources.fhir_datetime import format_instant, parse_range_text
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from smart_auth.service import PatientChoice

_PICKER_LIMIT = 20
RESET_SUBJECT = "Choose a new password"
RESET_TEXT = """Someone, probably you, asked to choose a new password for your health records
account.

Open this link within 30 minutes to choose it (it works once):

{link}

If it was not you, ignore this email: your password stays as it is.
"""


class StoreHooks:
    """``smart_auth.service.FhirHooks`` over a store (unrestricted: the auth server's own
    view, never a caller's)."""

    def __init__(self, store: Callable[[], Store], settings: Any = None) -> None:
        self._store = store
        self._settings = settings
        """The server's settings (the SMTP server of password-reset emails)."""

    @property
    def store(self) -> Store:
        """The app's store (opened after the auth server is built)."""
        return self._store()

    async def _resource(self, reference: str) -> dict[str, Any] | None:
        type_, _, id_ = reference.partition("/")
        if not type_ or not id_ or "/" in id_:
            return None
        try:
            stored = await self.store.read(type_, id_)
        except Exception:  # an unknown type or a malformed id is simply "not found"
            return None
        if stored is None or stored.deleted or stored.content is None:
            return None
        return fhir_json.loads(stored.content)

    def is_resource_type(self, name: str) -> bool:
        """Whether ``name`` is an R4 resource type."""
        return is_resource_type(name)

    async def display(self, reference: str) -> str | None:
        resource = await self._resource(reference)
        if resource is None:
            return None
        return display_name(resource) or reference

    async def send_password_reset(
        self, fhir_user: str | None, email: str | None, link: str
    ) -> bool:
        """Email a password-reset link (``smart_auth.password_reset``) through
        ``FHIR_SERVER_SMTP_URL`` to ``email``, the account's own address; False when there
        is no server or no address. Never to an address of the FHIR record, which apps
        with patient write scopes may change (``fhir_user`` is not used)."""
        from fhir_server.notifications.mailer import Mailer

        settings = self._settings
        mailer = Mailer.from_settings(settings.smtp_url, settings.smtp_from) if settings else None
        if mailer is None or not email:
            return False
        await mailer.send(email, RESET_SUBJECT, RESET_TEXT.format(link=link))
        return True

    def offers_password_reset(self) -> bool:
        """Whether emails can be sent (an SMTP server is configured)."""
        return bool(self._settings is not None and self._settings.smtp_url)

    async def fhir_users_with_email(self, email: str) -> list[str]:
        """The Patients, Practitioners, RelatedPersons and Persons with ``email`` in their
        ``telecom`` (at most a few: a shared family address names each)."""
        found: list[str] = []
        if "," in email or "\\" in email:
            return found  # not one address
        # as typed, and in lower case (how addresses are usually recorded)
        values = ",".join(dict.fromkeys((email, email.lower())))
        for type_ in ("Patient", "Practitioner", "RelatedPerson", "Person"):
            query = parse_search(
                (type_,),
                [("email", values)],
                strict=True,
                params_for=search_params,
                max_count=10,
                default_count=10,
            )
            page = await self.store.search(query, None, 10, False)
            found.extend(f"{e.type}/{e.id}" for e in page.entries)
        return found

    async def patients_for(self, fhir_user: str, query: str | None) -> list[PatientChoice]:
        kind = fhir_user.partition("/")[0]
        if kind == "Patient":
            patient = await self._resource(fhir_user)
            return [_choice(patient)] if patient is not None else []
        if kind == "RelatedPerson":
            related = await self._resource(fhir_user)
            if related is None or not acts_for_patient(related):
                return []
            target = related.get("patient", {}).get("reference", "")
            patient = await self._resource(target)
            return [_choice(patient)] if patient is not None else []
        if kind == "Person":
            return await self._linked_patients(fhir_user)
        if kind == "Practitioner":
            return await self._search_patients(query)
        return []

    async def _linked_patients(self, person_ref: str) -> list[PatientChoice]:
        """A Person (one login for a caregiver of several people) links the Patient it
        is, and the RelatedPersons it acts as (https://hl7.org/fhir/R4/person.html)."""
        person = await self._resource(person_ref)
        if person is None or person.get("active") is False:
            return []
        found: dict[str, PatientChoice] = {}
        for link in person.get("link") or []:
            target = (link.get("target") or {}).get("reference", "")
            if not target.startswith(("Patient/", "RelatedPerson/")):
                continue
            choices = await self.patients_for(target, None)
            for choice in choices:
                found.setdefault(choice.id, choice)
        return list(found.values())

    async def _search_patients(self, text: str | None) -> list[PatientChoice]:
        items = [("name", text.strip())] if text and text.strip() else []
        query = parse_search(
            ["Patient"],
            items,
            strict=False,
            params_for=search_params,
            max_count=_PICKER_LIMIT,
            default_count=_PICKER_LIMIT,
        )
        page = await self.store.search(query, None, _PICKER_LIMIT, False)
        return [_choice(fhir_json.loads(s.content)) for s in page.entries if s.content is not None]


def acts_for_patient(related: dict[str, Any], now: datetime | None = None) -> bool:
    """A RelatedPerson that is not inactive and whose period (if any) covers now."""
    if related.get("active") is False:
        return False
    period = related.get("period") or {}
    instant = format_instant(now or datetime.now(UTC))
    start, end = period.get("start"), period.get("end")
    try:
        if start and instant < parse_range_text(start, "period.start")[0]:
            return False
        if end and instant >= parse_range_text(end, "period.end")[1]:
            return False
    except Exception:
        return False
    return True


def display_name(resource: dict[str, Any]) -> str | None:
    """A human name (``HumanName.text``, else given and family), or None."""
    for name in resource.get("name") or []:
        if not isinstance(name, dict):
            continue
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(str(p) for p in parts if p)
        if text:
            return text
    return None


def _choice(patient: dict[str, Any]) -> PatientChoice:
    return PatientChoice(id=patient["id"], display=display_name(patient) or patient["id"])
