"""Reference values: https://hl7.org/fhir/R4/search.html#reference.

``[id]``, ``[type]/[id]`` (optionally ``/_history/[version]``), an absolute URL, or a
canonical ``[url]|[version]`` (https://hl7.org/fhir/R4/search.html#versions). The
``:[type]`` modifier names the target type of a bare id; ``:identifier`` takes
``[system]|[value]`` matched against ``Reference.identifier``; ``:below`` takes a canonical
URL and matches all its versions.
"""

from __future__ import annotations

import re

from resources.definitions import is_resource_type
from resources.search.query import ReferenceMatch
from resources.search.values.common import ID, bad, split, unescape

_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")
_RELATIVE = re.compile(
    r"(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?"
)


def parse_reference(
    text: str, name: str, modifier: str | None, targets: tuple[str, ...]
) -> ReferenceMatch:
    """One (escaped) value; ``modifier`` is ``identifier``, a resource type, or None."""
    if modifier == "identifier":
        return _identifier(text, name)
    if modifier == "below":
        return _below(unescape(split(text, "|")[0]), name)
    parts = split(text, "|")
    if len(parts) > 2:
        raise bad(name, f"{unescape(text)!r} has more than one '|'")
    if len(parts) == 2:
        return _canonical(unescape(parts[0]), unescape(parts[1]), name)
    value = unescape(text)
    relative = _RELATIVE.fullmatch(value)
    if relative is not None:
        return _relative(relative, name, modifier, targets)
    if _ABSOLUTE.fullmatch(value):
        return ReferenceMatch(url=value)
    if ID.fullmatch(value) is None:
        raise bad(name, f"{value!r} is neither an id, Type/id nor an absolute URL")
    target_type = modifier or (targets[0] if len(targets) == 1 else None)
    return ReferenceMatch(target_type=target_type, target_id=value)


def accepts(type_: str, targets: tuple[str, ...]) -> bool:
    """Whether a reference parameter with ``targets`` may point at ``type_``."""
    return not targets or "Resource" in targets or type_ in targets


def _relative(
    match: re.Match[str], name: str, modifier: str | None, targets: tuple[str, ...]
) -> ReferenceMatch:
    type_ = match["type"]
    if not is_resource_type(type_):
        raise bad(name, f"{type_!r} is not a resource type")
    if modifier is not None and modifier != type_:
        raise bad(name, f"{match[0]!r} is not a {modifier}")
    if not accepts(type_, targets):
        raise bad(name, f"{type_} is not a target of this parameter")
    return ReferenceMatch(target_type=type_, target_id=match["id"], version=match["version"])


def _below(url: str, name: str) -> ReferenceMatch:
    """``:below`` on a canonical: every version of it, and URLs under it
    (https://hl7.org/fhir/R4/search.html#versions)."""
    if not _ABSOLUTE.fullmatch(url):
        raise bad(name, f"{url!r} is not an absolute URL (:below takes a canonical URL)")
    return ReferenceMatch(url=url, below=True)


def _canonical(url: str, version: str, name: str) -> ReferenceMatch:
    if not url:
        raise bad(name, "a canonical reference needs a URL before '|'")
    return ReferenceMatch(url=url, version=version or None)


def _identifier(text: str, name: str) -> ReferenceMatch:
    parts = split(text, "|")
    if len(parts) > 2:
        raise bad(name, f"{unescape(text)!r} is not system|value")
    if len(parts) == 1:
        return ReferenceMatch(identifier_value=unescape(parts[0]))
    system, value = unescape(parts[0]), unescape(parts[1])
    if not system and not value:
        raise bad(name, "'|' alone names neither a system nor a value")
    return ReferenceMatch(identifier_system=system, identifier_value=value or None)
