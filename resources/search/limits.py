"""How much one search may ask: the limits that keep every search within what the stores
can compile and run (https://hl7.org/fhir/R4/search.html; a search beyond them is refused
before any store sees it, as the spec allows for searches a server will not run,
https://hl7.org/fhir/R4/search.html#errors).

A search past a limit is a ``400`` OperationOutcome with the issue code ``too-costly``
(https://hl7.org/fhir/R4/valueset-issue-type.html) that names the limit and the parameter.
Without them, SQLite refuses a statement past its own limits ("Expression tree is too
large (maximum depth 1000)" at ~500 ORed values or ANDed parameters, "at most 64 tables in
a join" at ~60 sort keys, 32,766 bound values) with a ``500``, takes seconds to prepare
one with thousands of ORed values, and every store runs each include once per page.
"""

from __future__ import annotations

from resources.errors import FhirError

MAX_PARAMETERS = 50
"""Search parameters in one search (each repetition counts; ``_sort``, ``_count``,
``_include`` and the other result parameters do not)."""
MAX_VALUES = 100
"""Comma-separated values (ORed) in one parameter."""
MAX_CHAIN_DEPTH = 4
"""Links in one parameter's chain: each ``.`` of a chain and each ``_has:`` counts
(``subject:Patient.organization.name`` is 2)."""
MAX_HAS = 10
"""``_has`` links in one search (nested ones included)."""
MAX_SORT_KEYS = 8
"""Keys in ``_sort``."""
MAX_INCLUDES = 16
"""Distinct ``_include`` and ``_revinclude`` values together (repeated ones count once)."""
MAX_TERMS = 1_000
"""Values in the whole query as the stores compile it: every value of every parameter,
repeated once per group of target types a chain fans out to (a chain through a
``Resource`` reference reaches many types); a ``:in`` value set counts once here. SQLite
takes quadratic time to prepare a statement in the number of ORed terms (5,000: ~3 s)."""
MAX_CODES = 10_000
"""Codes of the value sets that ``:in`` / ``:not-in`` expand to, in the whole query (the
largest R4 expansion, ``c80-doc-typecodes``, has 6,401)."""


def too_costly(name: str, message: str) -> FhirError:
    """The 400 of a search past a limit, naming the parameter (``expression``)."""
    return FhirError(400, "too-costly", f"Search too costly: {message}", (name,))
