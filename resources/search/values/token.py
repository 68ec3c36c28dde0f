"""Token values: https://hl7.org/fhir/R4/search.html#token.

``code``, ``system|code``, ``|code`` (no system) and ``system|`` (any code of the system).
Modifiers (https://hl7.org/fhir/R4/search.html#modifiers): ``:text`` searches the display
text (normalized like strings), ``:not`` negates (see ``Clause.negate``), ``:of-type``
takes ``system|code|value`` for an Identifier's type and value, ``:in`` / ``:not-in`` take
a value set URL, expanded through the value-set lookup (an unknown set is a 400).
"""

from __future__ import annotations

from resources.search.normalize import normalize_string
from resources.search.query import TokenMatch
from resources.search.values.common import ValueSetLookup, bad, split, unescape

MODIFIERS = frozenset({"text", "not", "of-type", "in", "not-in"})


def parse_token(
    text: str, name: str, modifier: str | None, value_set: ValueSetLookup | None
) -> TokenMatch:
    """One (escaped) value with its modifier."""
    if modifier == "text":
        return TokenMatch(mode="text", text=normalize_string(unescape(text)))
    if modifier in ("in", "not-in"):
        return _in(unescape(text), name, value_set)
    if modifier == "of-type":
        return _of_type(text, name)
    return system_code(text, name)


def system_code(text: str, name: str) -> TokenMatch:
    """``code``, ``system|code``, ``|code`` or ``system|``."""
    parts = split(text, "|")
    if len(parts) == 1:
        return TokenMatch(code=unescape(parts[0]))
    if len(parts) > 2:
        raise bad(name, f"{unescape(text)!r} has more than one '|' (escape it as '\\|')")
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise bad(name, "'|' alone names neither a system nor a code")
    return TokenMatch(system=system, code=code or None)


def _of_type(text: str, name: str) -> TokenMatch:
    parts = [unescape(part) for part in split(text, "|")]
    if len(parts) != 3 or not all(parts):
        raise bad(name, f"{unescape(text)!r} is not system|code|value (all three required)")
    system, code, value = parts
    return TokenMatch(system=system, code=code, mode="of-type", text=value)


def _in(url: str, name: str, value_set: ValueSetLookup | None) -> TokenMatch:
    codes = value_set(url) if value_set is not None else None
    if codes is None:
        raise bad(name, f"the value set {url!r} is unknown or cannot be expanded")
    return TokenMatch(mode="in", codes=frozenset(codes))
