"""Value set expansions known without a terminology server, for ``:in`` / ``:not-in``
(https://hl7.org/fhir/R4/search.html#modifiers, https://hl7.org/fhir/R4/valueset.html).

The expansions come from the project's generated definitions (value sets of the core
package that expand from the package alone).
"""

from __future__ import annotations

from resources.definitions import value_set


def value_set_codes(url: str) -> frozenset[tuple[str | None, str]] | None:
    """The ``(system, code)`` pairs of a value set, or None when it cannot be expanded."""
    expansion = value_set(url)
    if expansion is None:
        return None
    return frozenset(expansion.codings)
