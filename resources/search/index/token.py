"""Token search values (https://hl7.org/fhir/R4/search.html#token).

What each type indexes, one :class:`TokenRow` per matchable value:

- ``Coding``: ``system`` + ``code``; ``display`` (normalized) as ``text`` for ``:text``.
- ``CodeableConcept``: one row per coding as above, plus a row with only ``text`` for
  ``CodeableConcept.text`` (``:text`` "matches CodeableConcept.text or Coding.display").
- ``Identifier``: ``system`` + ``value``; ``type.text`` (normalized) as ``text``; one row
  per ``type.coding`` with ``type_system``/``type_code`` for ``:of-type``
  (``system|code|value`` against ``Identifier.type.coding`` and ``Identifier.value``).
- ``ContactPoint``: ``value`` with no system (the spec's token table maps only
  ``ContactPoint.value``; ``phone``/``email`` parameters select by ``system`` in their
  expression).
- ``boolean``: ``true`` / ``false``.
- ``code``, ``string``, ``uri``, ``id`` and other primitives: the value, no system -
  except a ``code`` element with a required binding whose value set gives the code one
  system (``Patient.gender`` ``male`` -> ``http://hl7.org/fhir/administrative-gender``),
  which is indexed with that system, so ``gender=male`` and
  ``gender=http://hl7.org/fhir/administrative-gender|male`` both match
  (:func:`code_systems`).

Sort value: the code / value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from resources.definitions import required_binding
from resources.search.model import TokenRow
from resources.search.normalize import normalize_string

Item = tuple[Any, str]

_SIMPLE_PATH = re.compile(r"^[A-Z][A-Za-z]*(?:\.[a-z][A-Za-z]*)+$")


def code_systems(expression: str) -> Mapping[str, str]:
    """code -> system for the ``code`` elements an expression selects, from their
    required bindings (expressions that are plain element paths, or unions of them)."""
    systems: dict[str, str] = {}
    ambiguous: set[str] = set()
    for path in (part.strip() for part in expression.split("|")):
        binding = required_binding(path) if _SIMPLE_PATH.match(path) else None
        if binding is None:
            continue
        for system, value in binding.codings:
            if systems.setdefault(value, system) != system:
                ambiguous.add(value)
    for value in ambiguous:
        del systems[value]
    return systems


def token_rows_with_systems(systems: Mapping[str, str]) -> Callable[..., list[TokenRow]]:
    """:func:`token_rows` that gives bound ``code`` values their system."""

    def rows(code: str, items: Iterable[Item]) -> list[TokenRow]:
        return token_rows(code, items, systems)

    return rows


def token_rows(
    code: str, items: Iterable[Item], systems: Mapping[str, str] | None = None
) -> list[TokenRow]:
    rows: list[TokenRow] = []
    for value, type_name in items:
        if isinstance(value, str):
            system = systems.get(value) if systems and type_name == "code" else None
            rows.append(TokenRow(code, system, value))
        elif isinstance(value, dict):
            handler = _COMPLEX.get(type_name)
            if handler is not None:
                handler(rows, code, value)
        elif isinstance(value, bool):
            rows.append(TokenRow(code, None, "true" if value else "false"))
        elif isinstance(value, int | Decimal):
            rows.append(TokenRow(code, None, getattr(value, "raw", None) or str(value)))
    return rows


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return normalize_string(value) or None
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _coding(rows: list[TokenRow], code: str, coding: dict[str, Any]) -> None:
    system, value = _str(coding.get("system")), _str(coding.get("code"))
    display = _text(coding.get("display"))
    if system is not None or value is not None or display is not None:
        rows.append(TokenRow(code, system, value, display))


def _codeable_concept(rows: list[TokenRow], code: str, concept: dict[str, Any]) -> None:
    for coding in _list(concept.get("coding")):
        if isinstance(coding, dict):
            _coding(rows, code, coding)
    text = _text(concept.get("text"))
    if text is not None:
        rows.append(TokenRow(code, None, None, text))


def _identifier(rows: list[TokenRow], code: str, identifier: dict[str, Any]) -> None:
    system, value = _str(identifier.get("system")), _str(identifier.get("value"))
    if system is None and value is None:
        return
    kind = identifier.get("type")
    if not isinstance(kind, dict):
        kind = {}
    text = _text(kind.get("text"))
    types = [
        (_str(coding.get("system")), _str(coding.get("code")))
        for coding in _list(kind.get("coding"))
        if isinstance(coding, dict)
    ]
    if not types:
        rows.append(TokenRow(code, system, value, text))
    for type_system, type_code in types:
        rows.append(TokenRow(code, system, value, text, type_system, type_code))


def _contact_point(rows: list[TokenRow], code: str, contact: dict[str, Any]) -> None:
    value = _str(contact.get("value"))
    if value is not None:
        rows.append(TokenRow(code, None, value))


_COMPLEX = {
    "Coding": _coding,
    "CodeableConcept": _codeable_concept,
    "Identifier": _identifier,
    "ContactPoint": _contact_point,
}
