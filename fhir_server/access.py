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
  ``d``; see :func:`write_access` for what a patient-context token may write.

Patient-context tokens (``patient/`` scopes, and ``user/`` scopes of a patient or a
caregiver) read the Patient compartment's types when the resource is in the patient's
compartment; the directory and definitional types of
``resources.compartments.DIRECTORY_TYPES`` when they refer to no other patient; any other
type (Task, PaymentReconciliation, ...) only when it refers to that patient and to no
other (default-deny). ``user/`` scopes of a user without a ``fhirUser`` grant nothing;
those of staff (a Practitioner or PractitionerRole) are not limited to a compartment.

A type the token has no scope for at all, for the interaction, is 403 ``forbidden``. A
write to a resource the caller cannot read is answered as for one that does not exist
(``404``; a delete: "nothing to delete"), so ids of other patients' resources do not
leak; one the caller can read but not change is ``403``.
Granular scopes (``patient/Observation.rs?category=laboratory``) apply to searches and
reads of current versions; history, vread and writes honour them by refusing (they need
the current search index).

A caregiver's own record: the token of a caregiver (``fhirUser`` ``RelatedPerson/x``,
acting for the patient in context) whose patient-context scopes cover ``Basic`` also
reads, searches and writes, with those scopes' letters, the notification preferences
``Basic`` whose ``subject`` is ``RelatedPerson/x`` (``resources.compartments.
CAREGIVER_RECORD``, a member of ``RelatedPerson/x``), as a patient does hers; nothing
else outside the patient's compartment (see :meth:`GuardedStore.clause`). The patient's
token does not see the caregiver's preferences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
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
    ACCESS_GRANTING_TYPES,
    CAREGIVER,
    CAREGIVER_RECORD,
    DIRECTORY_TYPES,
    MEMBERSHIP_COMPARTMENT,
    SECURED_BY_CONTEXT,
    SUBSCRIPTION,
    literal_references,
    patient_member_types,
    patient_references,
    subscription_owner,
)
from resources.definitions import RESOURCE_TYPES
from resources.errors import FhirError, not_found
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
    where: tuple[Condition, ...] = ()
    if rule.params:
        if types is None:
            return None  # a granular filter needs one type's parameters
        where = tuple(_granular(rule.resource_type, rule.params))
    if compartments is None:
        return Grant(types, None, frozenset(), where)
    return Grant(types, compartments, patient_member_types(), where, DIRECTORY_TYPES)


def _compartments(policy: PolicyLike, context: str) -> tuple[str, ...] | None:
    """The Patient compartments a scope's context limits it to (None: no limit)."""
    if context == "system":
        return None
    if context == "patient":
        return (f"{MEMBERSHIP_COMPARTMENT}/{policy.patient}",) if policy.patient else ()
    # user/ scopes: what the user is - a patient sees its own compartment, a caregiver
    # (RelatedPerson, or a Person linking several) the patient it launched for; staff
    # see everything the scope names; a user who is none of these sees nothing
    user = policy.fhir_user or ""
    if user.startswith("Patient/"):
        return (user,)
    if user.startswith(("RelatedPerson/", "Person/")):
        return (f"{MEMBERSHIP_COMPARTMENT}/{policy.patient}",) if policy.patient else ()
    if user.startswith(_STAFF):
        return None
    return ()


_STAFF = ("Practitioner/", "PractitionerRole/")
"""``fhirUser`` kinds whose ``user/`` scopes are not limited to a patient's compartment."""


def with_own_records(policy: PolicyLike, clause: AccessClause) -> AccessClause:
    """``clause`` (one letter's grants) and, for a caregiver's token (``fhirUser``
    ``RelatedPerson/x`` with a patient in context, which the sign-in and every refresh
    check it acts for) whose patient-context grants cover ``Basic`` without a granular
    filter, a grant of its own notification preferences: the ``Basic`` versions that are
    members of ``RelatedPerson/x`` (``resources.compartments.memberships``). Reads and
    writes then treat them as a patient's own records (:func:`write_access`,
    :func:`allows_content`): changing one needs the version replaced to be its own, and
    the new version to be its own preferences (or in the patient's compartment)."""
    user = policy.fhir_user or ""
    kind, _, id_ = user.partition("/")
    type_ = CAREGIVER_RECORD[0]
    if kind != CAREGIVER or not _ID.fullmatch(id_) or not policy.patient:
        return clause
    if not any(
        g.compartments and not g.where and (g.types is None or type_ in g.types)
        for g in clause.grants
    ):
        return clause
    own = Grant(frozenset({type_}), (f"{CAREGIVER}/{id_}",), patient_member_types())
    return AccessClause((*clause.grants, own))


def with_own_subscriptions(policy: PolicyLike, clause: AccessClause) -> AccessClause:
    """``clause`` and, for a patient-context token whose grants cover ``Subscription``
    without a granular filter, a grant of the Subscriptions it wrote: those whose owner
    membership (``resources.compartments.subscription_owner``: its app, user and patients)
    is its own. A patient-context token's Subscription is a member of that owner and of
    its patients, so the patient grants (members of the patients and of nothing else) do
    not show it to other tokens acting for the patient (another app, a caregiver): each
    reads and changes only its own. Subscriptions written before owners were recorded
    have no owner membership and stay readable by the patient's tokens until written
    again (the dispatcher's status writes do)."""
    patients = [
        c
        for g in clause.grants
        if g.compartments and not g.where and (g.types is None or SUBSCRIPTION in g.types)
        for c in g.compartments
        if c.startswith(f"{MEMBERSHIP_COMPARTMENT}/")
    ]
    if not patients:
        return clause
    read = compile_access(policy, "r")
    if not read.grants or any(g.compartments is None for g in read.grants):
        return clause
    recorded = sorted({c for g in read.grants for c in g.compartments or ()})
    client = getattr(policy, "client_id", None)
    owner = subscription_owner(str(client) if client else None, policy.fhir_user, recorded)
    own = Grant(frozenset({SUBSCRIPTION}), (owner, *recorded))
    return AccessClause((*clause.grants, own))


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


def write_access(clause: AccessClause, type_: str, method: str) -> AccessClause:
    """The grants of ``clause`` (for the write's letter) under which a ``method`` of
    ``type_`` may change a resource, as the clause the version it replaces must be
    visible under. A patient-context grant (issue: a patient changing other people's
    data) never writes directory types nor those that grant access (Person,
    RelatedPerson), never deletes a Patient, and changes a version only when it belongs
    to the patient in context and to no other patient (the version it replaces must be
    a member of the patient's compartment and of no other one)."""
    grants: list[Grant] = []
    for grant in clause.grants:
        if grant.where or (grant.types is not None and type_ not in grant.types):
            continue  # granular scopes do not write (they need the current index)
        if grant.compartments is None:
            grants.append(grant)
        elif type_ not in _READ_ONLY and not (method == "delete" and type_ == "Patient"):
            grants.append(Grant(frozenset({type_}), grant.compartments))
    return AccessClause(tuple(grants))


_READ_ONLY = DIRECTORY_TYPES | ACCESS_GRANTING_TYPES
"""What patient-context tokens never write (see :func:`write_access`)."""


def allows_content(
    clause: AccessClause, compartments: Iterable[str], patients: Iterable[str]
) -> bool:
    """Whether a new version in ``compartments`` that refers to ``patients`` may be
    written under the grants of :func:`write_access`: a patient-context grant needs it
    to be in the patient's compartment and to refer to no other patient, anywhere."""
    members, referred = set(compartments), set(patients)
    for grant in clause.grants:
        if grant.compartments is None:
            return True
        own = set(grant.compartments)
        if members & own and members <= own and referred <= own:
            return True
    return False


def _covers(clause: AccessClause, types: Iterable[str]) -> bool:
    wanted = set(types)
    return any(g.types is None or g.types & wanted for g in clause.grants)


class GuardedStore:
    """The store as one caller may use it: every call carries the caller's grants."""

    def __init__(
        self,
        inner: Store,
        policy: PolicyLike,
        prepare: Callable[[WriteRequest], WriteRequest] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self._clauses: dict[str, AccessClause] = {}
        self._prepare = prepare
        """Write rules applied before the access checks (a Subscription records who
        wrote it: ``fhir_server.events.subscriptions``)."""

    def clause(self, letter: str, types: Iterable[str], what: str) -> AccessClause | None:
        """The grants for ``letter`` on ``types`` (None: unrestricted), a caregiver's
        own records included (:func:`with_own_records`); 403 when the token has no
        scope for any of the types."""
        clause = self._clauses.get(letter)
        if clause is None:
            clause = with_own_records(self.policy, compile_access(self.policy, letter))
            clause = with_own_subscriptions(self.policy, clause)
            self._clauses[letter] = clause
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
        if self._prepare is not None:
            request = self._prepare(request)
        guarded = self._guard(request)
        await self._check_targets([guarded])
        try:
            return await self.inner.write(guarded)
        except AccessDenied:
            if request.method == "delete" and not await self._visible(request):
                return WriteResult(None, False, None, changed=False)  # as if absent
            raise await self._refusal(request) from None

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        if self._prepare is not None:
            requests = [self._prepare(r) for r in requests]
        guarded = [self._guard(r) for r in requests]
        await self._check_targets(guarded)
        absent: set[int] = set()  # deletes of resources the caller cannot see
        while True:
            live = [g for i, g in enumerate(guarded) if i not in absent]
            try:
                results = iter(await self.inner.write_batch(live))
            except AccessDenied as error:
                failed = error.args[0] if error.args else None
                at = next((i for i, g in enumerate(guarded) if g is failed), None)
                if at is None:
                    raise forbidden(_NOT_YOURS.format("a resource it changes")) from None
                if requests[at].method == "delete" and not await self._visible(requests[at]):
                    absent.add(at)  # answered as for a resource that does not exist
                    continue
                raise await self._refusal(requests[at]) from None
            return [
                WriteResult(None, False, None, changed=False) if i in absent else next(results)
                for i in range(len(guarded))
            ]

    async def _check_targets(self, requests: Sequence[WriteRequest]) -> None:
        """A patient-context write refers only to resources that patient may read (or to
        ones the same request creates): no Provenance, Communication or report of hers
        pointing at another patient's data, which staff would then see linked to it. A
        target that does not exist is refused alike, so the answer tells nothing."""
        written = {(r.type, r.id) for r in requests if r.method != "delete"}
        for request in requests:
            readable = _readable_by_context(request.access)
            if request.method == "delete" or readable is None:
                continue
            for type_, id_ in _content_targets(request):
                if type_ == MEMBERSHIP_COMPARTMENT or (type_, id_) in written:
                    continue  # patients: checked with the content (allows_content)
                if type_ not in RESOURCE_TYPES or not _ID.fullmatch(id_):
                    found = None
                else:
                    found = await self.inner.read(type_, id_, readable)
                if found is None:
                    raise forbidden(
                        f"The access token does not allow writing this {request.type}: it"
                        f" refers to {type_}/{id_}, which is not a resource the patient in"
                        " context may read"
                    )

    async def _visible(self, request: WriteRequest) -> bool:
        try:
            found = await self.read(request.type, request.id)
        except FhirError:
            return False
        return found is not None

    async def _refusal(self, request: WriteRequest) -> FhirError:
        """A change refused on the version it replaces: "not found" when the caller
        cannot read it either (so the answer is the same as a read's), else 403."""
        if not await self._visible(request):
            return not_found(f"{request.type}/{request.id} is not known")
        return forbidden(_NOT_YOURS.format(f"{request.type}/{request.id}"))

    def _guard(self, request: WriteRequest) -> WriteRequest:
        letter = _WRITE_LETTER[request.method]
        verb = {"c": "creating", "u": "updating", "d": "deleting"}[letter]
        clause = self.clause(letter, [request.type], verb)
        if clause is None:
            return request
        writes = write_access(clause, request.type, request.method)
        if not writes.grants:
            raise forbidden(_read_only_message(request.type, verb))
        if request.method != "delete":
            compartments = request.index.compartments if request.index is not None else ()
            if not allows_content(writes, compartments, _content_patients(request)):
                raise forbidden(
                    f"The access token does not allow {verb} this {request.type}: it must"
                    " be in the compartment of the patient in context and refer to no"
                    " other patient"
                )
        unless = request.unless_exists
        if unless is not None:
            unless = replace(unless, access=clause)
        return replace(request, access=writes, unless_exists=unless)

    # -- the rest of the Store protocol ------------------------------------------------

    async def open(self) -> None:  # pragma: no cover - the app opens the real store
        await self.inner.open()

    async def close(self) -> None:  # pragma: no cover
        await self.inner.close()

    async def ping(self) -> None:  # pragma: no cover - readiness pings the real store
        await self.inner.ping()


_NOT_YOURS = (
    "The access token does not allow changing {}: it is not only in the compartment of"
    " the patient in context"
)


def _read_only_message(type_: str, verb: str) -> str:
    if type_ in DIRECTORY_TYPES:
        why = "directory and definitional resources are written by staff and backend services"
    elif type_ in ACCESS_GRANTING_TYPES:
        why = f"a {type_} decides who may act for a patient; staff and backend services write it"
    elif type_ == "Patient":
        why = "a patient's record is deleted by staff"
    else:
        why = "the token's scopes for it are limited by search parameters"
    return f"The access token does not allow {verb} {type_}: {why}"


def _content_patients(request: WriteRequest) -> tuple[str, ...]:
    """Every patient the new content refers to (only patient-context writes ask: it
    serialises and walks the resource)."""
    if request.build is None:
        return ()
    return patient_references(fhir_json.loads(request.build(0, "")))


def _content_targets(request: WriteRequest) -> tuple[tuple[str, str], ...]:
    """What :meth:`GuardedStore._check_targets` checks: the content's literal references,
    less an Appointment's ``slot`` references (the scheduling rule checks those, and
    answers a Slot the caller may not read as one that does not exist, 422:
    ``fhir_server.workflows._scheduling_access``)."""
    if request.build is None:
        return ()
    content = fhir_json.loads(request.build(0, ""))
    targets = literal_references(content)
    if request.type == "Appointment":
        slots = set(literal_references({"slot": content.get("slot") or []}))
        targets = tuple(t for t in targets if t[0] != "Slot" or t not in slots)
    return targets


def _readable_by_context(access: AccessClause | None) -> AccessClause | None:
    """What the patients of a write's patient-context grants may read, whatever the
    scope letters (None: the write has a grant without a compartment limit)."""
    if access is None or not access.grants:
        return None
    grants: list[Grant] = []
    for grant in access.grants:
        if grant.compartments is None:
            return None
        grants.append(Grant(None, grant.compartments, patient_member_types(), (), DIRECTORY_TYPES))
    return AccessClause(tuple(grants))


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _granular_for(clause: AccessClause, type_: str) -> bool:
    return any(g.where and g.types and type_ in g.types for g in clause.grants)


def _all_types() -> list[str]:
    from capability.support import support_table

    return sorted(support_table().types)
