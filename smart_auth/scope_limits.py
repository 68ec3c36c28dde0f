"""How far the scopes of one grant may reach: what a registering token may hand to a
client it registers (RFC 7591 section 2 ``scope``,
https://www.rfc-editor.org/rfc/rfc7591#section-2), and the ``user/`` scopes of a user
without a ``fhirUser``.

SMART scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)
allow each interaction letter (``c r u d s``; v1 ``read`` = ``rs``, ``write`` = ``cud``)
on a type or ``*``, in a context, optionally narrowed by a v2 granular filter
(``?category=...``, parameters ANDed). A requested scope is *within* held scopes when
every one of its letters is allowed by some held scope:

- of the same context or a wider one: ``patient/`` < ``user/`` < ``system/`` (a backend
  service reaches every record, a member of staff every patient);
- for the same type, or ``*`` (a requested ``*`` needs a held ``*``);
- whose granular filter is no wider: its parameters are among the requested ones (a
  requested scope without a filter needs a held one without a filter).

Different held scopes may cover different letters (``system/*.rs`` and ``system/*.c``
together cover ``system/*.crs``), as the access policy ORs them per interaction.
Non-resource scopes (``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``...)
grant no data by themselves and are not limited here.
"""

from __future__ import annotations

from collections.abc import Sequence

from smart_auth.scopes import ScopeRule, covers, intersect, parse_scope, parse_scopes

_REACH = {"patient": 0, "user": 1, "system": 2}


def _letter_within(requested: ScopeRule, letter: str, held: ScopeRule) -> bool:
    return (
        _REACH[held.context] >= _REACH[requested.context]
        and held.resource_type in ("*", requested.resource_type)
        and letter in held.interactions
        and set(held.params) <= set(requested.params)
    )


def rule_within(requested: ScopeRule, held: Sequence[ScopeRule]) -> bool:
    """Whether the ``held`` rules together allow everything ``requested`` allows (see the
    module docstring)."""
    return all(
        any(_letter_within(requested, letter, rule) for rule in held)
        for letter in requested.interactions
    )


def scopes_beyond(requested: str, held: Sequence[ScopeRule]) -> list[str]:
    """The resource scopes of ``requested`` (as written) that ``held`` does not cover.
    Raises :class:`~smart_auth.scopes.ScopeError` on a malformed scope."""
    return [
        rule.text or rule.scope_text()
        for rule in parse_scopes(requested).rules
        if not rule_within(rule, held)
    ]


def cap_scopes(requested: str, held: Sequence[ScopeRule]) -> str:
    """``requested`` narrowed to what ``held`` covers: a resource scope within ``held`` is
    kept as written; another is replaced by what it shares with each held scope of the
    same or a wider context (``patient/*.cruds`` under ``user/*.rs``:
    ``patient/*.rs``), or dropped when it shares nothing. Non-resource scopes are kept."""
    granted: list[str] = []
    for word in parse_scopes(requested).text.split():
        rule = parse_scope(word)
        if rule is None or rule_within(rule, held):
            granted.append(word)
        else:
            granted.extend(_shared(rule, held))
    return " ".join(dict.fromkeys(granted))


def _shared(rule: ScopeRule, held: Sequence[ScopeRule]) -> list[str]:
    kept: list[ScopeRule] = []
    for other in held:
        if _REACH[other.context] < _REACH[rule.context]:
            continue
        widened = ScopeRule(rule.context, other.resource_type, other.interactions, other.params)
        part = intersect(rule, widened)
        if part is not None and not any(covers(k, part) for k in kept):
            kept = [k for k in kept if not covers(part, k)] + [part]
    return [k.text for k in kept]


def without_user_scopes(scope: str) -> str:
    """``scope`` without its ``user/`` resource scopes (for a user who has no
    ``fhirUser``: ``user/`` scopes act as the user's own FHIR record, so without one they
    grant nothing). Malformed resource scopes are dropped too."""
    kept = []
    for word in parse_scopes(scope, strict=False).text.split():
        rule = parse_scope(word)
        if rule is None or rule.context != "user":
            kept.append(word)
    return " ".join(kept)
