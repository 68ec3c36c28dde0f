"""References inside the resources of a transaction: placeholders and conditional references.

- Placeholders: an entry's ``fullUrl`` (``urn:uuid:…``, ``urn:oid:…`` or an absolute URL
  of a POSTed resource) stands for the resource until the server gives it an id; every
  ``Reference.reference`` naming it is rewritten to ``Type/id``, wherever it stands
  (nested elements, extensions, contained resources), and so are ``url`` elements
  (an ``Attachment.url`` naming a Binary of the bundle) and ``href``/``src``
  attributes in the narrative (https://hl7.org/fhir/R4/bundle.html#references,
  https://hl7.org/fhir/R4/http.html#trules).
- Conditional references (``Patient?identifier=…``) name the one resource a search finds
  (https://hl7.org/fhir/R4/http.html#trules, "Conditional References").

Pure functions over JSON; the searching is done by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from resources.definitions import RESOURCE_TYPES

PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")
_PLACEHOLDER = re.compile(r"urn:(?:uuid|oid):[^\s&|,\"'<>]+")
_CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")
_NARRATIVE_LINK = re.compile(r"""\b(href|src)=(["'])(.*?)\2""")


def is_placeholder(value: str | None) -> bool:
    return value is not None and value.startswith(PLACEHOLDER_PREFIXES)


def placeholders_in(text: str) -> set[str]:
    """The ``urn:uuid:``/``urn:oid:`` strings that appear in a URL or criteria string."""
    return set(_PLACEHOLDER.findall(text))


def conditional_reference(reference: str) -> tuple[str, str] | None:
    """``("Practitioner", "identifier=…")`` for ``Practitioner?identifier=…``, else None."""
    match = _CONDITIONAL.match(reference)
    if match is None or match.group(1) not in RESOURCE_TYPES:
        return None
    return match.group(1), match.group(2)


def criteria_key(type_: str, query: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A normal form of search criteria, to tell that two entries ask for the same thing."""
    return type_, tuple(sorted(parse_qsl(query.lstrip("?"), keep_blank_values=True)))


def iter_references(value: Any) -> Iterator[str]:
    """Every ``reference`` string in a resource (or any JSON value), at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            elif isinstance(item, dict | list):
                yield from iter_references(item)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                yield from iter_references(item)


def rewrite_references(value: Any, resolve: Callable[[str], str | None]) -> None:
    """Rewrite, in place, every ``reference`` for which ``resolve`` gives a new value, and
    placeholder ``url`` values and the ``href``/``src`` links of narrative ``div``
    elements the same way."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                new = resolve(item)
                if new is not None:
                    value[key] = new
            elif key == "url" and isinstance(item, str) and is_placeholder(item):
                new = resolve(item)  # an Attachment.url naming a Binary of the bundle
                if new is not None:
                    value[key] = new
            elif key == "div" and isinstance(item, str) and ("href=" in item or "src=" in item):
                value[key] = _rewrite_links(item, resolve)
            elif isinstance(item, dict | list):
                rewrite_references(item, resolve)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                rewrite_references(item, resolve)


def _rewrite_links(div: str, resolve: Callable[[str], str | None]) -> str:
    def replace(match: re.Match[str]) -> str:
        target = match.group(3)
        new = resolve(target) if is_placeholder(target) else None
        if new is None:
            return match.group(0)
        return f"{match.group(1)}={match.group(2)}{new}{match.group(2)}"

    return _NARRATIVE_LINK.sub(replace, div)


def substitute(text: str, mapping: Mapping[str, str]) -> str:
    """``text`` with every placeholder that ``mapping`` knows replaced (criteria strings)."""
    return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
