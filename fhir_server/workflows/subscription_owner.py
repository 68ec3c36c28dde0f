"""Who may change a Subscription (https://hl7.org/fhir/R4/subscription.html; issue 17:
"a patient-context token sees and changes only the Subscriptions it created").

The server records the token that wrote a Subscription in its creator extension
(``fhir_server.events.subscriptions``: client id and ``fhirUser``). A patient-context
caller (a patient, or a caregiver acting for one) may update, patch or delete a
Subscription only when it is that same app and user: another app the patient uses, or
her caregiver, cannot point her app's notifications somewhere else or end them (403).
Staff and backend services (``system/`` scopes) are not limited; bulk import stores
what it is given. Reading is not limited by this rule (see the README's known gaps).
"""

from __future__ import annotations

from fhir_server.access import forbidden
from fhir_server.events.subscriptions import creator_fields
from fhir_server.workflows.base import Change, Transaction, rule


@rule("Subscription")
async def only_its_creator_changes_it(tx: Transaction, change: Change) -> None:
    """Refuse a patient-context caller's change to a Subscription another app or user
    made."""
    caller = tx.caller
    if caller.staff or tx.origin == "import":
        return
    previous = await tx.previous(change)
    if previous is None:
        return
    made_by = creator_fields(previous) or {}
    if made_by.get("client") != caller.client_id or made_by.get("user") != caller.fhir_user:
        raise forbidden(
            "this Subscription was made by another app or user: only they may change it"
        )
