"""Whether the person a grant was made for may still act as it says, asked again before
every token is issued for it (code exchange and each refresh, RFC 6749 section 6: "the
authorization server MUST ... verify that the refresh token ... is valid"; a grant
outlives the relationship it was made under unless it is checked).

The answer comes from the FHIR data through the hooks ``fhir_server`` hands in
(:class:`smart_auth.hooks.FhirHooks`):

- a Patient, a caregiver (RelatedPerson) or a Person linking several people: the
  grant's launch patient must still be among the patients they may act for
  (``patients_for``: the Patient not deleted; the RelatedPerson active and within its
  ``period``; the Person active and still linking it); without a launch patient, they
  must still act for someone;
- staff (Practitioner, PractitionerRole) and other kinds: their own resource must
  still exist, and so must the launch patient, if any;
- a user without a ``fhirUser`` has no record to check (and is given no ``user/``
  scopes, see :meth:`smart_auth.server.SmartAuthorizationServer.issue_tokens`).
"""

from __future__ import annotations

from smart_auth.hooks import FhirHooks

_ACTS_FOR_PATIENTS = ("Patient", "RelatedPerson", "Person")


async def still_entitled(hooks: FhirHooks, fhir_user: str | None, patient: str | None) -> bool:
    """Whether ``fhir_user`` (a relative reference, or None) may still act for
    ``patient`` (an id, or None: no launch patient)."""
    if not fhir_user:
        return True
    kind = fhir_user.partition("/")[0]
    if kind in _ACTS_FOR_PATIENTS:
        ids = {choice.id for choice in await hooks.patients_for(fhir_user, None)}
        return patient in ids if patient else bool(ids)
    if await hooks.display(fhir_user) is None:
        return False
    return patient is None or await hooks.display(f"Patient/{patient}") is not None
