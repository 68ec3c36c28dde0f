"""The store with the workflow rules applied to its writes (``fhir_server.workflows``).

:class:`WorkflowStore` wraps the store under the access checks (``GuardedStore`` wraps
it in turn), so rules see every write of a request after the caller's scopes allowed
it, and the writes rules add are the server's own. Reads pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fhir_server.storage.base import (
    AccessDenied,
    AlreadyExists,
    ConditionMatched,
    VersionConflict,
    WriteRequest,
    WriteResult,
)
from fhir_server.workflows.base import (
    Caller,
    Change,
    Origin,
    Transaction,
    decode,
    rebuilt,
    ruled_types,
    rules_for,
)
from resources.errors import FhirError

ATTEMPTS = 8
"""How many times a request is evaluated again when what its rules read changed before
the commit (a concurrent request won the compare-and-set)."""


class _Retry(Exception):
    """What the rules read changed before the commit: evaluate again."""


class WorkflowStore:
    """``inner`` with the rules of ``fhir_server.workflows`` run on every write."""

    def __init__(
        self,
        inner: Any,
        caller: Caller | None = None,
        origin: Origin = "api",
        policy: Any = None,
        settings: Any = None,
    ) -> None:
        """``caller``, or the ``policy`` (an access policy) it is made of when a write
        first needs it; neither: the server itself (staff). ``settings``: the server's,
        handed to the rules (``Transaction.settings``)."""
        self.inner = inner
        self.settings = settings
        self._caller = caller
        self._policy = policy
        self.origin: Origin = origin

    @property
    def caller(self) -> Caller:
        if self._caller is None:
            policy = self._policy
            self._caller = Caller.system() if policy is None else Caller.from_policy(policy)
        return self._caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, request: WriteRequest) -> WriteResult:
        if request.type not in ruled_types():
            return await self.inner.write(request)
        return (await self.write_batch([request]))[0]

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        ruled = ruled_types()
        if not any(r.type in ruled for r in requests):
            return await self.inner.write_batch(requests)
        for attempt in range(ATTEMPTS):
            tx = await self._evaluate(requests)
            try:
                return await self._commit(tx, requests)
            except _Retry:
                if attempt == ATTEMPTS - 1:
                    break
        raise FhirError(
            409,
            "conflict",
            "What this request depends on was changed by concurrent requests; try again",
        )

    async def _evaluate(self, requests: Sequence[WriteRequest]) -> Transaction:
        changes = [Change(r, decode(r) if rules_for(r.type) else None) for r in requests]
        tx = Transaction(self.inner, self.caller, self.origin, changes, settings=self.settings)
        for change in changes:
            for fn in rules_for(change.type):
                await fn(tx, change)
        return tx

    async def _commit(
        self, tx: Transaction, originals: Sequence[WriteRequest]
    ) -> list[WriteResult]:
        excluded = {id(change): (query, refusal) for change, query, refusal in tx.exclusions}
        batch: list[WriteRequest] = []
        pinned: set[int] = set()  # positions whose preconditions the rules added
        source: dict[int, WriteRequest] = {}
        for position, change in enumerate(tx.changes):
            request = rebuilt(change)
            key = (change.type, change.id)
            if key in tx.pins and request.if_match is None and not request.must_not_exist:
                version = tx.pins[key]
                if version is None:
                    request = replace(request, must_not_exist=True)
                else:
                    request = replace(request, if_match=version)
                pinned.add(position)
            if id(change) in excluded and request.unless_exists is None:
                request = replace(request, unless_exists=excluded[id(change)][0])
            batch.append(request)
            source[id(request)] = originals[position]
        pinned.update(range(len(batch), len(batch) + len(tx.added)))
        batch.extend(tx.added)
        try:
            results = await self.inner.write_batch(batch)
        except AccessDenied as error:
            failed = error.args[0] if error.args else None
            raise AccessDenied(source.get(id(failed), failed)) from None
        except ConditionMatched:
            for change, query, refusal in tx.exclusions:
                found = await tx.search(query, 1)
                if found and change.request.unless_exists is None:
                    raise (refusal if isinstance(refusal, FhirError) else refusal(found)) from None
            raise
        except (VersionConflict, AlreadyExists):
            if pinned and not await self._client_conditions_failed(originals):
                raise _Retry from None
            raise
        return list(results[: len(originals)])

    async def _client_conditions_failed(self, requests: Sequence[WriteRequest]) -> bool:
        """Whether a precondition the caller sent (If-Match, create of a new id) no
        longer holds: then the conflict is the caller's, not the rules'."""
        for request in requests:
            if request.if_match is None and not request.must_not_exist:
                continue
            stored = await self.inner.read(request.type, request.id)
            live = stored is not None and not stored.deleted
            if request.must_not_exist and stored is not None:
                return True
            if request.if_match is not None and (not live or stored.version != request.if_match):
                return True
        return False
