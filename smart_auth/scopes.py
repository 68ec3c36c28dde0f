"""SMART App Launch 2.x scopes, v1 and v2, and the access policy a token grants.

Scope syntax: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
(section "SMART's scopes are used to delegate access"): ``context/ResourceType.permissions``
with context ``patient``, ``user`` or ``system``, a resource type or ``*``, and permissions
either v1 (``read`` = read+search, ``write`` = create+update+delete, ``*`` = all) or v2
letters ``c r u d s`` in that order, each at most once, optionally followed by a granular
``?param=value&...`` filter (v2 only; the parameters are ANDed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, quote

Context = Literal["patient", "user", "system"]

INTERACTIONS = ("c", "r", "u", "d", "s")
_V1 = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": frozenset(INTERACTIONS),
}
_V2_LETTERS = re.compile(r"c?r?u?d?s?")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_SHAPE = re.compile(r"(?P<context>[^/]*)/(?P<type>[^.?]*)\.(?P<perm>[^?]*)(?:\?(?P<query>.*))?")
_PREFIX = re.compile(r"[A-Za-z_]+/")

NON_RESOURCE_SCOPES = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)


class ScopeError(ValueError):
    """A malformed resource scope."""


@dataclass(frozen=True)
class ScopeRule:
    """One resource scope: what it lets the app do to which resources."""

    context: Context
    resource_type: str
    """A resource type name or ``*``."""
    interactions: frozenset[str]
    """A subset of {"c", "r", "u", "d", "s"}."""
    params: tuple[tuple[str, str], ...] = ()
    """v2 granular filter, e.g. (("category", "laboratory"),); ANDed; repeats kept."""
    text: str = field(default="", compare=False)
    """The scope as written (empty for a rule built in code)."""
    version: int = field(default=2, compare=False)
    """1 for ``.read``/``.write``/``.*``, 2 for letters."""

    def allows(self, resource_type: str, interaction: str) -> bool:
        """Whether this rule covers ``interaction`` on ``resource_type`` (``params``
        still restrict which resources: the caller turns them into search clauses)."""
        type_ok = self.resource_type in ("*", resource_type)
        return type_ok and interaction in self.interactions

    def scope_text(self) -> str:
        """The scope written out (v1 form for a v1 rule when it has one, else v2)."""
        return f"{self.context}/{self.resource_type}.{_permissions(self)}{_query(self.params)}"


@dataclass(frozen=True)
class GrantedScopes:
    """A parsed scope string."""

    rules: tuple[ScopeRule, ...]
    others: frozenset[str]
    """Non-resource scopes (openid, fhirUser, launch/patient, offline_access...)."""
    text: str
    """The scopes, space separated, duplicates removed, order kept."""

    def has(self, scope: str) -> bool:
        """Whether a non-resource scope (e.g. "offline_access") was granted."""
        return scope in self.others


def parse_scope(text: str) -> ScopeRule | None:
    """The rule of a resource scope; None for any other scope (openid, fhirUser, launch,
    launch/patient, offline_access, ...); :class:`ScopeError` for a malformed resource scope.

    A scope is taken to be a resource scope when it has the shape ``word/...`` and the
    word is not ``launch``."""
    if not _PREFIX.match(text) or text.startswith("launch/"):
        return None
    shape = _SHAPE.fullmatch(text)
    if shape is None:
        raise ScopeError(f"{text!r}: expected context/ResourceType.permissions")
    context = _context(text, shape["context"])
    resource_type = _resource_type(text, shape["type"])
    interactions, version = _interactions(text, shape["perm"])
    query = shape["query"]
    if query is not None and version == 1:
        perm = shape["perm"]
        raise ScopeError(f"{text!r}: a ?filter needs v2 permissions (e.g. .rs), not .{perm}")
    params = _params(text, query) if query is not None else ()
    return ScopeRule(context, resource_type, interactions, params, text=text, version=version)


def _context(text: str, context: str) -> Context:
    if context not in ("patient", "user", "system"):
        raise ScopeError(f"{text!r}: context must be patient, user or system, not {context!r}")
    return cast(Context, context)


def _resource_type(text: str, resource_type: str) -> str:
    if resource_type != "*" and not _RESOURCE_TYPE.fullmatch(resource_type):
        raise ScopeError(f"{text!r}: {resource_type!r} is not a resource type or *")
    return resource_type


def _interactions(text: str, perm: str) -> tuple[frozenset[str], int]:
    if perm in _V1:
        return _V1[perm], 1
    if perm and _V2_LETTERS.fullmatch(perm):
        return frozenset(perm), 2
    raise ScopeError(
        f"{text!r}: permissions must be read, write, * or the letters c r u d s"
        f" in that order, each at most once (got {perm!r})"
    )


def _params(text: str, query: str) -> tuple[tuple[str, str], ...]:
    if not query:
        raise ScopeError(f"{text!r}: empty ?filter")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise ScopeError(f"{text!r}: malformed ?filter ({exc})") from None
    for name, value in pairs:
        if not name or not value:
            raise ScopeError(f"{text!r}: every ?filter parameter needs a name and a value")
    return tuple(pairs)


def _permissions(rule: ScopeRule) -> str:
    if rule.version == 1 and not rule.params:
        for word, letters in _V1.items():
            if rule.interactions == letters:
                return word
    return "".join(letter for letter in INTERACTIONS if letter in rule.interactions)


def _query(params: tuple[tuple[str, str], ...]) -> str:
    if not params:
        return ""
    safe = ":/|,.-_~*"
    return "?" + "&".join(f"{quote(n, safe=safe)}={quote(v, safe=safe)}" for n, v in params)


def parse_scopes(text: str, *, strict: bool = True) -> GrantedScopes:
    """Parse a space-separated scope string (duplicates removed, order kept). A malformed
    resource scope raises :class:`ScopeError`, or is dropped when ``strict`` is False."""
    rules: list[ScopeRule] = []
    others: list[str] = []
    kept: list[str] = []
    for word in dict.fromkeys(text.split()):
        try:
            rule = parse_scope(word)
        except ScopeError:
            if strict:
                raise
            continue
        kept.append(word)
        if rule is None:
            others.append(word)
        elif rule not in rules:
            rules.append(rule)
    return GrantedScopes(tuple(rules), frozenset(others), " ".join(kept))


def grantable_scopes(text: str, is_type: Callable[[str], bool] | None = None) -> str:
    """``text`` without the scopes no one can be granted: malformed resource scopes
    (``patient/read``) and, given ``is_type``, resource scopes of a type that does not
    exist (``system/UnknownResource.read``). Duplicates removed, order kept. RFC 6749
    section 3.3 lets the server grant less than asked: such scopes are left out of the
    grant, the rest of the request is not refused for them."""
    kept: list[str] = []
    for word in parse_scopes(text, strict=False).text.split():
        rule = parse_scope(word)
        typed = rule is not None and rule.resource_type != "*"
        if typed and is_type is not None and not is_type(rule.resource_type):
            continue
        kept.append(word)
    return " ".join(kept)


def covers(wide: ScopeRule, narrow: ScopeRule) -> bool:
    """Whether everything ``narrow`` allows is allowed by ``wide``."""
    return (
        wide.context == narrow.context
        and wide.resource_type in ("*", narrow.resource_type)
        and narrow.interactions <= wide.interactions
        and set(wide.params) <= set(narrow.params)
    )


def intersect(requested: ScopeRule, allowed: ScopeRule) -> ScopeRule | None:
    """What ``requested`` and ``allowed`` both allow, as one rule (None: nothing)."""
    if requested.context != allowed.context:
        return None
    if allowed.resource_type in ("*", requested.resource_type):
        resource_type = requested.resource_type
    elif requested.resource_type == "*":
        resource_type = allowed.resource_type
    else:
        return None
    interactions = requested.interactions & allowed.interactions
    if not interactions:
        return None
    params = requested.params + tuple(p for p in allowed.params if p not in requested.params)
    rule = ScopeRule(
        requested.context, resource_type, interactions, params, version=requested.version
    )
    return replace(rule, text=rule.scope_text())


def narrow_scopes(requested: str, allowed: str) -> str:
    """The scopes to grant: what was ``requested`` within what the client is ``allowed``.

    A requested resource scope some allowed scope covers is kept as written; otherwise
    it is replaced by its intersections with the allowed scopes (e.g. requested
    ``patient/Observation.cruds``, allowed ``patient/*.rs``: ``patient/Observation.rs``),
    or dropped when nothing is left. Other scopes are kept if allowed. Raises
    :class:`ScopeError` if either string has a malformed resource scope."""
    wanted = parse_scopes(requested)
    permitted = parse_scopes(allowed)
    granted: list[str] = []
    for word in wanted.text.split():
        rule = parse_scope(word)
        if rule is None:
            if word in permitted.others:
                granted.append(word)
        else:
            granted.extend(_narrow_rule(rule, permitted.rules))
    return " ".join(dict.fromkeys(granted))


def _narrow_rule(rule: ScopeRule, allowed: tuple[ScopeRule, ...]) -> list[str]:
    if any(covers(a, rule) for a in allowed):
        return [rule.text or rule.scope_text()]
    kept: list[ScopeRule] = []
    for part in (p for a in allowed if (p := intersect(rule, a)) is not None):
        if not any(covers(k, part) for k in kept):
            kept = [k for k in kept if not covers(part, k)] + [part]
    return [k.text for k in kept]


@dataclass(frozen=True)
class AccessPolicy:
    """What an access token lets its bearer do (from the token's claims)."""

    rules: tuple[ScopeRule, ...]
    client_id: str
    subject: str | None = None
    """The user id (``sub``), or None for a backend service."""
    fhir_user: str | None = None
    """A relative reference: "Patient/123", "Practitioner/9", "RelatedPerson/4"."""
    patient: str | None = None
    """The launch-context patient id (just the id)."""
    encounter: str | None = None
    scope: str = ""
    jti: str | None = None
    family: str | None = None
    """The token's grant (its ``family`` claim, see :mod:`smart_auth.tokens`): what a
    Subscription records to stop when the grant is revoked."""

    def rules_for(self, resource_type: str, interaction: str) -> tuple[ScopeRule, ...]:
        """The rules allowing ``interaction`` (c/r/u/d/s) on ``resource_type``; none:
        refuse. Several rules are alternatives (ORed); a rule's params are ANDed."""
        return tuple(r for r in self.rules if r.allows(resource_type, interaction))

    def allows(self, resource_type: str, interaction: str) -> bool:
        return bool(self.rules_for(resource_type, interaction))

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AccessPolicy:
        """The policy of verified access-token claims (see :mod:`smart_auth.tokens`).
        ``sub`` equal to ``client_id`` means no user (a backend service)."""
        scope = str(claims.get("scope") or "")
        client_id = str(claims.get("client_id") or "")
        sub = claims.get("sub")
        return cls(
            rules=parse_scopes(scope, strict=False).rules,
            client_id=client_id,
            subject=None if sub in (None, "", client_id) else str(sub),
            fhir_user=relative_reference(claims.get("fhirUser")),
            patient=_opt_str(claims.get("patient")),
            encounter=_opt_str(claims.get("encounter")),
            scope=scope,
            jti=_opt_str(claims.get("jti")),
            family=_opt_str(claims.get("family")),
        )


def relative_reference(reference: Any) -> str | None:
    """ "Patient/123" from "Patient/123" or "https://x/fhir/Patient/123" (None stays None)."""
    if not reference:
        return None
    parts = str(reference).rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(reference)


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# -- plain words for the consent page ------------------------------------------------------

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_NOUNS = {
    "*": "health records",
    "Patient": "demographics (name, birth date, contact details)",
    "Observation": "observations (lab results, vital signs and other measurements)",
    "Condition": "conditions and problems",
    "AllergyIntolerance": "allergies and intolerances",
    "MedicationRequest": "prescriptions",
    "MedicationStatement": "medications",
    "Immunization": "immunizations",
    "Procedure": "procedures",
    "Encounter": "visits and encounters",
    "DiagnosticReport": "diagnostic reports",
    "DocumentReference": "documents",
    "CarePlan": "care plans",
    "Appointment": "appointments",
    "Coverage": "insurance coverage",
}
_CATEGORY_NOUNS = {
    "laboratory": "lab results",
    "vital-signs": "vital signs",
    "social-history": "social history",
    "imaging": "imaging results",
    "survey": "survey answers",
}
_OTHER_WORDS = {
    "openid": "Confirm who you are to the app",
    "fhirUser": "Know which record is yours (your FHIR user link)",
    "profile": "See your name and profile",
    "launch": "Open with the record already chosen in the EHR",
    "launch/patient": "Know which patient's record you chose",
    "launch/encounter": "Know which visit is open",
    "offline_access": "Keep access when you are not using the app, until you revoke it",
    "online_access": "Keep access while you are signed in",
}


def plain_words(rule_or_scope: ScopeRule | str) -> str:
    """One scope in plain words for the consent page, e.g. "Read and search your lab
    results (Observation, category=laboratory)"."""
    if isinstance(rule_or_scope, str):
        rule = parse_scope(rule_or_scope)
        if rule is None:
            return _OTHER_WORDS.get(rule_or_scope, f"Use the permission {rule_or_scope!r}")
    else:
        rule = rule_or_scope
    verbs = [_VERBS[i] for i in INTERACTIONS if i in rule.interactions]
    action = _join(verbs).capitalize()
    return f"{action} {_owner(rule)} {_noun(rule)}{_whose(rule)} ({_detail(rule)})"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _owner(rule: ScopeRule) -> str:
    return {"patient": "your", "user": "the", "system": "all"}[rule.context]


def _whose(rule: ScopeRule) -> str:
    return " you have access to" if rule.context == "user" else ""


def _noun(rule: ScopeRule) -> str:
    categories = [v.rsplit("|", 1)[-1] for n, v in rule.params if n == "category"]
    if len(categories) == 1 and categories[0] in _CATEGORY_NOUNS:
        return _CATEGORY_NOUNS[categories[0]]
    if rule.resource_type in _NOUNS:
        return _NOUNS[rule.resource_type]
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", rule.resource_type).lower()
    return f"{words} records"


def _detail(rule: ScopeRule) -> str:
    name = "all types" if rule.resource_type == "*" else rule.resource_type
    filters = [f"{n}={v.rsplit('|', 1)[-1]}" for n, v in rule.params]
    return ", ".join([name, *filters])
