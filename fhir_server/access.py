"""SMART access enforcement: the token's scopes and launch context applied to every store
call of a request (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

The policy (``smart_auth.scopes.AccessPolicy``) becomes an
:class:`~resources.search.query.AccessClause`: one grant per scope, limiting the type, the
Patient compartment the resource must be in (``patient/`` scopes, and ``user/`` scopes of
a patient or a caregiver) and, for v2 granular scopes, search conditions. Interactions see
a :class:`GuardedStore` in place of the store, which hands the clause to the store with
every read, search (matches, chained and ``_has`` targets, includes), history and write,
so the filter is part of each query, never applied to its results:

- read, vread, history at every level: scope letter ``r`` (history of a type or of the
  system: ``s``); a resource outside the caller's grants is "not found".
- Binary follows its ``securityContext``: in the compartment of the Patient it names,
  or readable when the resource it names is (a DocumentReference's attachment).
- search (also the criteria of conditional interactions and references in bundles):
  ``s``; included resources follow the same grants.
- create ``c``, update ``u``, patch ``u`` (and ``r`` to read the current version), delete
  ``d``: the new content must be in the caller's compartment, and the version it replaces
  must be visible to the caller (checked by the store inside its write transaction).

A type the token has no scope for at all, for the interaction, is 403 ``forbidden``.
Granular scopes (``patient/Observation.rs?category=laboratory``) apply to searches and
reads of current versions; history, vread and writes honour them by refusing (they need
the current search index).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from fhir_server.storage.base import (
    AccessDenied,
    HistoryPage,
    HistoryQuery,
    Store,
    StoredVersion,
    WriteRequest,
    WriteResult,
)
from fhir_server.storage.search_page import Cursor, SearchPage
from resources import fhir_json
from resources.compartments import (
    MEMBERSHIP_COMPARTMENT,
    SECURED_BY_CONTEXT,
    patient_member_types,
)
from resources.errors import FhirError
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AccessClause, Condition, Grant, IdClause, SearchQuery
from resources.terminology import value_set_codes

_WRITE_LETTER = {"create": "c", "update": "u", "patch": "u", "delete": "d"}


class ScopeRuleLike(Protocol):
    context: str
    resource_type: str
    interactions: frozenset[str]
    params: tuple[tuple[str, str], ...]


class PolicyLike(Protocol):
    """What enforcement reads of ``smart_auth.scopes.AccessPolicy``."""

    rules: tuple[Any, ...]
    fhir_user: str | None
    patient: str | None


def forbidden(message: str) -> FhirError:
    return FhirError(403, "forbidden", message)


def compile_access(policy: PolicyLike, letter: str) -> AccessClause:
    """The grants of every scope that allows the interaction ``letter`` (c r u d s)."""
    grants = [
        grant
        for rule in policy.rules
        if letter in rule.interactions
        for grant in [_grant(policy, rule)]
        if grant is not None
    ]
    return AccessClause(tuple(grants))


def _grant(policy: PolicyLike, rule: ScopeRuleLike) -> Grant | None:
    types = None if rule.resource_type == "*" else frozenset({rule.resource_type})
    compartments = _compartments(policy, rule.context)
    member_types = patient_member_types() if compartments is not None else frozenset()
    where: tuple[Condition, ...] = ()
    if rule.params:
        if types is None:
            return None  # a granular filter needs one type's parameters
        where = tuple(_granular(rule.resource_type, rule.params))
    return Grant(types, compartments, member_types, where)


def _compartments(policy: PolicyLike, context: str) -> tuple[str, ...] | None:
    """The Patient compartments a scope's context limits it to (None: no limit)."""
    if context == "system":
        return None
    if context == "patient":
        return (f"{MEMBERSHIP_COMPARTMENT}/{policy.patient}",) if policy.patient else ()
    # user/ scopes: what the user is - a patient sees its own compartment, a caregiver
    # (RelatedPerson, or a Person linking several) the patient it launched for; staff
    # see everything the scope names
    user = policy.fhir_user or ""
    if user.startswith("Patient/"):
        return (user,)
    if user.startswith(("RelatedPerson/", "Person/")):
        return (f"{MEMBERSHIP_COMPARTMENT}/{policy.patient}",) if policy.patient else ()
    return None


def _granular(type_: str, params: Sequence[tuple[str, str]]) -> list[Condition]:
    query = parse_search(
        [type_],
        list(params),
        strict=True,
        params_for=search_params,
        max_count=1,
        default_count=1,
        value_set=value_set_codes,
    )
    return list(query.conditions)


def allows_content(clause: AccessClause, type_: str, compartments: Iterable[str]) -> bool:
    """Whether a new version of ``type_`` in ``compartments`` may be written."""
    members = set(compartments)
    for grant in clause.grants:
        if grant.where or (grant.types is not None and type_ not in grant.types):
            continue
        if grant.compartments is None or type_ not in grant.member_types:
            return True
        if members.intersection(grant.compartments):
            return True
    return False


def _covers(clause: AccessClause, types: Iterable[str]) -> bool:
    wanted = set(types)
    return any(g.types is None or g.types & wanted for g in clause.grants)


class GuardedStore:
    """The store as one caller may use it: every call carries the caller's grants."""

    def __init__(self, inner: Store, policy: PolicyLike) -> None:
        self.inner = inner
        self.policy = policy
        self._clauses: dict[str, AccessClause] = {}

    def clause(self, letter: str, types: Iterable[str], what: str) -> AccessClause | None:
        """The grants for ``letter`` on ``types`` (None: unrestricted); 403 when the
        token has no scope for any of the types."""
        clause = self._clauses.get(letter)
        if clause is None:
            clause = self._clauses[letter] = compile_access(self.policy, letter)
        types = list(types)
        if not _covers(clause, types):
            names = ", ".join(types) if len(types) <= 3 else "these resource types"
            raise forbidden(f"The access token does not allow {what} of {names}")
        return None if clause.unrestricted else clause

    # -- reads -----------------------------------------------------------------------

    async def read(
        self, type_: str, id_: str, access: AccessClause | None = None
    ) -> StoredVersion | None:
        clause = self.clause("r", [type_], "reading")
        found = await self.inner.read(type_, id_, clause)
        if found is None and clause is not None and _granular_for(clause, type_):
            found = await self._read_granular(type_, id_, clause)
        if found is None and clause is not None and type_ == SECURED_BY_CONTEXT:
            found = await self._read_by_context(type_, id_)
        return found

    async def _read_by_context(self, type_: str, id_: str) -> StoredVersion | None:
        """A Binary whose ``securityContext`` is a resource the caller may read
        (https://hl7.org/fhir/R4/binary.html#security), e.g. the DocumentReference
        it is the attachment of."""
        binary = await self.inner.read(type_, id_)
        if binary is None or binary.content is None:
            return None
        context = fhir_json.loads(binary.content).get("securityContext")
        reference = context.get("reference") if isinstance(context, dict) else None
        parts = reference.split("/") if isinstance(reference, str) else []
        if len(parts) != 2 or parts[0] in (type_, MEMBERSHIP_COMPARTMENT):
            return None  # relative references to another resource only
        try:
            visible = await self.read(parts[0], parts[1])
        except FhirError:
            return None
        return binary if visible is not None and not visible.deleted else None

    async def _read_granular(
        self, type_: str, id_: str, clause: AccessClause
    ) -> StoredVersion | None:
        """A read allowed only by a granular scope: the current version, by search."""
        query = SearchQuery((type_,), [IdClause((id_,))], access=clause)
        page = await self.inner.search(query, None, 1, False)
        return page.entries[0] if page.entries else None

    async def vread(
        self, type_: str, id_: str, version: int, access: AccessClause | None = None
    ) -> StoredVersion | None:
        clause = self.clause("r", [type_], "reading")
        return await self.inner.vread(type_, id_, version, clause)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if query.id is not None and query.type is not None:
            clause = self.clause("r", [query.type], "reading the history")
        else:
            types = [query.type] if query.type else _all_types()
            clause = self.clause("s", types, "the history")
        return await self.inner.history(replace(query, access=clause))

    async def search(
        self, query: SearchQuery, cursor: Cursor | None, count: int, with_total: bool
    ) -> SearchPage:
        clause = self.clause("s", query.types, "searching")
        if clause is not None:
            query = replace(query, access=clause)
        return await self.inner.search(query, cursor, count, with_total)

    # -- writes ----------------------------------------------------------------------

    async def write(self, request: WriteRequest) -> WriteResult:
        try:
            return await self.inner.write(self._guard(request))
        except AccessDenied:
            raise _not_yours(request) from None

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        guarded = [self._guard(r) for r in requests]
        try:
            return await self.inner.write_batch(guarded)
        except AccessDenied as error:
            raise _not_yours(error.args[0] if error.args else None) from None

    def _guard(self, request: WriteRequest) -> WriteRequest:
        letter = _WRITE_LETTER[request.method]
        verb = {"c": "creating", "u": "updating", "d": "deleting"}[letter]
        clause = self.clause(letter, [request.type], verb)
        if clause is None:
            return request
        if request.method != "delete":
            compartments = request.index.compartments if request.index is not None else ()
            if not allows_content(clause, request.type, compartments):
                raise forbidden(
                    f"The access token does not allow {verb} this {request.type}:"
                    " it would not be in the compartment of the patient in context"
                )
        unless = request.unless_exists
        if unless is not None:
            unless = replace(unless, access=clause)
        return replace(request, access=clause, unless_exists=unless)

    # -- the rest of the Store protocol ------------------------------------------------

    async def open(self) -> None:  # pragma: no cover - the app opens the real store
        await self.inner.open()

    async def close(self) -> None:  # pragma: no cover
        await self.inner.close()


def _not_yours(request: WriteRequest | None) -> FhirError:
    what = f"{request.type}/{request.id}" if request is not None else "a resource it changes"
    return forbidden(
        f"The access token does not allow changing {what}: the current version is not"
        " in the compartment of the patient in context"
    )


def _granular_for(clause: AccessClause, type_: str) -> bool:
    return any(g.where and g.types and type_ in g.types for g in clause.grants)


def _all_types() -> list[str]:
    from capability.support import support_table

    return sorted(support_table().types)
