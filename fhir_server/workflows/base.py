"""What a workflow rule sees and may do: the caller, the writes of one request, and the
store inside the write (``../shared/DESIGN.md``, "Operations, workflows and events").

A rule is an async function registered for resource types with :func:`rule`. For every
write of those types, on every path that writes through the API (create, update, patch,
delete, conditional interactions, batch and transaction entries, operations) and bulk
import, the rule is called with the :class:`Transaction` and the :class:`Change` before
the write is committed. It may

- refuse the whole request: raise a ``FhirError`` (an OperationOutcome; nothing is
  written);
- change what is written: :meth:`Change.set` (e.g. a server-set ``sent`` time);
- add writes to the same store transaction: :meth:`Transaction.update` /
  :meth:`Transaction.create` (a Slot made ``busy`` by a booking). Added writes are the
  server's: they are not checked against the caller's scopes and go through no rule;
- depend on what it read: :meth:`Transaction.current` returns the current version of a
  resource; writes added with ``if_match`` of the version read, and
  :meth:`Transaction.previous` (the version a change replaces), make the commit a
  compare-and-set on it. When another request
  changed it in between, the whole request is evaluated again from the start (a few
  times), so the rule decides on what is really current: of twenty concurrent bookings
  of one free Slot, one commits and the others see the Slot ``busy``;
- require that nothing matches a search at commit time: :meth:`Transaction.exclusive`
  (one open refill request per prescription), checked atomically by the store like a
  conditional create.

On bulk import (``Transaction.origin == "import"``) the data is an EHR's record: rules
record what follows from it (a booked Appointment's Slot busy) and should not refuse it.

Rules run in the request's process, before the store's transaction, with optimistic
concurrency (the compare-and-sets above) instead of holding the store's write lock while
they read: the store's transaction stays as short as before.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from fhir_server.access import compile_access
from fhir_server.interactions.write import content_builder, create_request, index_entries
from fhir_server.storage.base import StoredVersion, WriteRequest
from resources import fhir_json
from resources.errors import FhirError
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery
from resources.terminology import value_set_codes

Origin = Literal["api", "import"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is writing, as the rules need it.

    ``patients``: the Patient references a patient-context caller acts for (a patient,
    or a caregiver for the patient it launched for); ``staff``: a caller not limited to
    patients' compartments (a Practitioner user, a backend service, the server itself,
    a server without authorization)."""

    staff: bool
    patients: frozenset[str] = frozenset()
    fhir_user: str | None = None
    client_id: str | None = None

    @classmethod
    def system(cls) -> Caller:
        return cls(staff=True)

    @classmethod
    def from_policy(cls, policy: Any) -> Caller:
        """The caller of an access policy (``smart_auth.scopes.AccessPolicy``)."""
        staff = False
        patients: set[str] = set()
        for letter in "crud":
            for grant in compile_access(policy, letter).grants:
                if grant.compartments is None:
                    staff = True
                else:
                    patients.update(grant.compartments)
        return cls(
            staff=staff,
            patients=frozenset() if staff else frozenset(patients),
            fhir_user=getattr(policy, "fhir_user", None),
            client_id=getattr(policy, "client_id", None),
        )

    @property
    def caregiver(self) -> bool:
        """A patient-side caller who is not the patient (RelatedPerson, Person)."""
        return not self.staff and not (self.fhir_user or "").startswith("Patient/")


@dataclass(slots=True)
class Change:
    """One write of the request, as the rules see it."""

    request: WriteRequest
    resource: dict[str, Any] | None
    """The content about to be written (None for a delete)."""
    changed: bool = False

    @property
    def type(self) -> str:
        return self.request.type

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def reference(self) -> str:
        return f"{self.request.type}/{self.request.id}"

    def set(self, resource: dict[str, Any]) -> None:
        """Write ``resource`` instead of what the caller sent."""
        self.resource = resource
        self.changed = True


RuleFn = Callable[["Transaction", Change], Awaitable[None]]
Refusal = FhirError | Callable[[list[StoredVersion]], FhirError]
"""What :meth:`Transaction.exclusive` answers when something matches at commit time."""

_RULES: dict[str, list[RuleFn]] = {}


def rule(*types: str) -> Callable[[RuleFn], RuleFn]:
    """Register the decorated async function for writes of ``types``."""

    def register(fn: RuleFn) -> RuleFn:
        global _ruled
        for type_ in types:
            _RULES.setdefault(type_, []).append(fn)
        if _loaded:
            _ruled = frozenset(_RULES)
        return fn

    return register


def unregister(fn: RuleFn) -> None:
    """Remove a rule registered with :func:`rule` (tests register rules of their own)."""
    global _ruled
    load_rules()
    for type_, fns in list(_RULES.items()):
        if fn in fns:
            fns.remove(fn)
        if not fns:
            del _RULES[type_]
    _ruled = frozenset(_RULES)


def rules_for(type_: str) -> list[RuleFn]:
    load_rules()
    return _RULES.get(type_, [])


def ruled_types() -> frozenset[str]:
    load_rules()
    return _ruled


_ruled: frozenset[str] = frozenset()
_loaded = False
_INFRASTRUCTURE = frozenset({"base", "store"})


def load_rules() -> None:
    """Import every workflow module of the package (once), registering its rules."""
    global _loaded, _ruled
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module("fhir_server.workflows")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRASTRUCTURE and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    _ruled = frozenset(_RULES)


@dataclass
class Transaction:
    """The writes of one request, while the rules look at them."""

    store: Any
    """The store under every access check (rules see everything)."""
    caller: Caller
    origin: Origin
    changes: list[Change]
    added: list[WriteRequest] = field(default_factory=list)
    pins: dict[tuple[str, str], int | None] = field(default_factory=dict)
    exclusions: list[tuple[Change, SearchQuery, Refusal]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    """Scratch space shared by the rules of one evaluation (e.g. slots claimed)."""
    settings: Any = None
    """The server's ``fhir_server.config.Settings`` (None: bulk import, the defaults)."""
    _current: dict[tuple[str, str], StoredVersion | None] = field(default_factory=dict)

    async def current(self, type_: str, id_: str) -> tuple[dict[str, Any] | None, int | None]:
        """The current content and version of ``type_/id_`` ((None, None): absent or
        deleted), as committed before this request."""
        key = (type_, id_)
        if key not in self._current:
            self._current[key] = await self.store.read(type_, id_)
        stored = self._current[key]
        if stored is None or stored.deleted or stored.content is None:
            return None, None
        return fhir_json.loads(stored.content), stored.version

    async def previous(self, change: Change) -> dict[str, Any] | None:
        """The version ``change`` replaces (None: a create), pinned: if it changes before
        the commit, the request is evaluated again. A create of a new id (``POST``, a
        transaction's create: ``must_not_exist``) replaces nothing, without a read: if the
        id exists at the commit, the write itself fails."""
        if change.request.must_not_exist:
            return None
        resource, version = await self.current(change.type, change.id)
        self.pins.setdefault((change.type, change.id), version)
        return resource

    @staticmethod
    def query(type_: str, items: Sequence[tuple[str, str]]) -> SearchQuery:
        """A search of ``type_`` by ``items`` (``[("focus", "MedicationRequest/1")]``)."""
        return parse_search(
            (type_,),
            items,
            strict=True,
            params_for=search_params,
            max_count=1000,
            default_count=100,
            value_set=value_set_codes,
        )

    async def search(self, query: SearchQuery, count: int = 100) -> list[StoredVersion]:
        """The current resources matching ``query`` (no access limits)."""
        return list((await self.store.search(query, None, count, False)).entries)

    def update(self, resource: dict[str, Any], if_match: int | None) -> None:
        """Add a write of ``resource`` (its ``resourceType`` and ``id``) to the request's
        transaction, committed only if the resource is still at version ``if_match``."""
        type_, id_ = resource["resourceType"], resource["id"]
        self.added.append(
            WriteRequest(
                type_,
                id_,
                "update",
                content_builder(resource, id_),
                if_match=if_match,
                index=index_entries(resource, id_),
            )
        )

    def create(self, resource: dict[str, Any]) -> str:
        """Add the create of ``resource`` under a new id; returns ``Type/id``."""
        request = create_request(resource)
        self.added.append(request)
        return f"{request.type}/{request.id}"

    def exclusive(self, change: Change, query: SearchQuery, refusal: Refusal) -> None:
        """Commit the create ``change`` only if nothing matches ``query`` at commit time
        (atomically, as a conditional create); ``refusal`` otherwise (or what it returns
        for the resources that matched, when it is a function: a message naming them)."""
        self.exclusions.append((change, query, refusal))

    def changing(self, types: Iterable[str]) -> list[Change]:
        wanted = set(types)
        return [c for c in self.changes if c.type in wanted]


def decode(request: WriteRequest) -> dict[str, Any] | None:
    """The content a write request would store (None for a delete)."""
    if request.method == "delete" or request.build is None:
        return None
    return fhir_json.loads(request.build(0, ""))


def rebuilt(change: Change) -> WriteRequest:
    """The change's request with the content a rule set."""
    if not change.changed or change.resource is None:
        return change.request
    resource = change.resource
    return replace(
        change.request,
        build=content_builder(resource, change.id),
        index=index_entries(resource, change.id),
    )
