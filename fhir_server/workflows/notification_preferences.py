"""A person's notification preferences (issue 17): the ``Basic`` coded
``urn:fhir-server:notification|preferences`` (https://hl7.org/fhir/R4/basic.html; the
model is in ``fhir_server.notifications.recipients`` and ``.quiet_hours``).

On every write through the API, a preferences ``Basic`` with quiet hours must hold one
quiet-hours extension with a ``start`` and an ``end`` ``valueTime`` and, if any, a
``timezone`` ``valueCode`` that is an IANA time zone; anything else is ``400`` with issue
code ``invalid`` and the extension's path, and nothing is written. Bulk import stores
what it is given (a broken extension is then ignored: no quiet hours).
"""

from __future__ import annotations

from typing import Any

from fhir_server.notifications.quiet_hours import QUIET_HOURS, problem
from fhir_server.notifications.recipients import PREFERENCES_SYSTEM
from fhir_server.workflows.base import Change, Transaction, rule
from resources.errors import invalid


def _is_preferences(resource: dict[str, Any]) -> bool:
    codings = (resource.get("code") or {}).get("coding") or []
    return any(
        isinstance(c, dict)
        and c.get("system") == PREFERENCES_SYSTEM
        and c.get("code") == "preferences"
        for c in codings
    )


@rule("Basic")
async def quiet_hours(tx: Transaction, change: Change) -> None:
    """Refuse a preferences Basic whose quiet hours are not well formed."""
    resource = change.resource
    if resource is None or tx.origin == "import" or not _is_preferences(resource):
        return
    found = [
        n
        for n, ext in enumerate(resource.get("extension") or [])
        if isinstance(ext, dict) and ext.get("url") == QUIET_HOURS
    ]
    if len(found) > 1:
        raise invalid("a person has one set of quiet hours", f"Basic.extension[{found[1]}]")
    for n in found:
        trouble = problem(resource["extension"][n])
        if trouble is not None:
            raise invalid(trouble, f"Basic.extension[{n}]")
