"""transaction: https://hl7.org/fhir/R4/http.html#transaction (processing rules:
https://hl7.org/fhir/R4/http.html#trules; references: https://hl7.org/fhir/R4/bundle.html#references)

All of the writes of a ``transaction`` Bundle, or none. Every write is prepared first:
targets resolved (conditional URLs and ``ifNoneExist`` searched), ids assigned, ``fullUrl``
placeholders and conditional references rewritten in every resource, resources
validated, index entries and content builders computed. Then one ``store.write_batch``
applies them in the spec's order (DELETE, POST, PUT/PATCH); GET and HEAD entries run
after it and see the bundle's writes. Any failure is a 4xx OperationOutcome naming the
entry (``Bundle.entry[3]`` and its fullUrl), and nothing is stored.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.interactions.bundle_batch import dispatch
from fhir_server.interactions.bundle_entries import (
    BundleEntry,
    error_entry,
    from_response,
    named,
    parse_bundle,
    parse_entry,
)
from fhir_server.interactions.bundle_plan import (
    Plan,
    check_full_urls,
    culprit,
    patched,
    tracked_request,
    user_if_match,
    written_entry,
)
from fhir_server.interactions.conditional import create_criteria, criteria, matches
from fhir_server.interactions.context import Context, check_id
from fhir_server.interactions.references import (
    conditional_reference,
    criteria_key,
    is_placeholder,
    iter_references,
    placeholders_in,
    rewrite_references,
    substitute,
)
from fhir_server.interactions.write import check_valid, content_builder, index_entries
from fhir_server.storage.base import (
    AlreadyExists,
    ConditionMatched,
    TransactionsUnavailable,
    VersionConflict,
    WriteRequest,
)
from resources.errors import FhirError, invalid, precondition_failed
from resources.search.query import SearchQuery

_ATTEMPTS = 3
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2}


async def transaction(
    ctx: Context, raw_entries: list[dict[str, Any]], body: bytes
) -> list[dict[str, Any]]:
    """The response entries of a transaction, or a FhirError naming the failing entry."""
    for attempt in range(_ATTEMPTS):
        if attempt:  # a concurrent write got in between: prepare again from the body
            raw_entries = parse_bundle(body)[1]
        run = _Transaction(ctx, [parse_entry(ctx, i, raw) for i, raw in enumerate(raw_entries)])
        await run.prepare()
        try:
            await run.commit()
        except _Race as race:
            if attempt + 1 < _ATTEMPTS:
                continue
            raise FhirError(
                409,
                "conflict",
                f"{race.plan.entry.label}: concurrent writes kept changing its target; try again",
                (race.plan.entry.where,),
            ) from None
        return await run.respond()
    raise AssertionError("unreachable")


class _Race(Exception):
    def __init__(self, plan: Plan) -> None:
        self.plan = plan


class _Transaction:
    def __init__(self, ctx: Context, entries: list[BundleEntry]) -> None:
        self.ctx = ctx
        self.plans = [Plan(e) for e in entries]
        self.full_urls = check_full_urls(entries)
        self.mapping: dict[str, str] = {}
        self.by_criteria: dict[tuple[Any, ...], Plan] = {}

    # -- preparation -------------------------------------------------------------------

    async def prepare(self) -> None:
        await self._identify_all()
        self._check_overlaps()
        await self._rewrite_references()
        for plan in sorted(self._writes(), key=lambda p: _ORDER[p.entry.method]):
            try:
                await self._build(plan)
            except FhirError as error:
                raise named(plan.entry, error) from None

    def _writes(self) -> list[Plan]:
        return [p for p in self.plans if p.entry.method not in ("GET", "HEAD")]

    async def _identify_all(self) -> None:
        """Resolve every write's target in an order where criteria that mention another
        entry's placeholder wait for it; a cycle of such waits is an error."""
        pending = self._writes()
        while pending:
            ready = [p for p in pending if self._dependencies(p) <= self.mapping.keys()]
            if not ready:
                labels = "; ".join(p.entry.label for p in pending)
                raise invalid(
                    f"Circular conditional references: the criteria of these entries depend"
                    f" on each other's placeholders: {labels}",
                    *(p.entry.where for p in pending),
                )
            for plan in ready:
                try:
                    await self._identify(plan)
                except FhirError as error:
                    raise named(plan.entry, error) from None
                pending.remove(plan)

    def _dependencies(self, plan: Plan) -> set[str]:
        entry = plan.entry
        text = entry.query + " " + (entry.request_field("ifNoneExist") or "")
        return (placeholders_in(text) & self.full_urls) - {entry.full_url or ""}

    def _criteria(self, plan: Plan, text: str) -> tuple[SearchQuery, tuple[Any, ...]]:
        text = substitute(text.lstrip("?"), self.mapping)
        items = parse_qsl(text, keep_blank_values=True)
        return criteria(self.ctx, plan.type, items), criteria_key(plan.type, text)

    async def _identify(self, plan: Plan) -> None:
        entry = plan.entry
        plan.type = entry.segments[0]
        conditional = len(entry.segments) == 1 and entry.method != "POST"
        if len(entry.segments) == 2:
            plan.id = check_id(entry.segments[1], f"{entry.where}.request.url")
        if entry.method == "DELETE":
            plan.kind = "delete"
            await self._identify_delete(plan, conditional)
            return
        if entry.method == "POST":
            await self._identify_create(plan)
        elif conditional:
            query, key = self._criteria(plan, entry.query)
            found = await matches(self.ctx, query, 2)
            if len(found) > 1:
                raise _many("the conditional URL")
            plan.kind = "update" if entry.method == "PUT" else "patch"
            if found:
                plan.id = found[0].id
            elif entry.method == "PATCH":
                raise FhirError(404, "not-found", f"No {plan.type} matches the conditional patch")
            else:
                body_id = (entry.resource or {}).get("id")
                plan.id = body_id if isinstance(body_id, str) else str(uuid.uuid4())
                plan.unless = None if body_id else query
            self.by_criteria.setdefault(key, plan)
        else:
            plan.kind = "update" if entry.method == "PUT" else "patch"
        self._map(plan)

    async def _identify_create(self, plan: Plan) -> None:
        entry = plan.entry
        # request.url Patient?identifier=... is read as ifNoneExist (as POST [type]?criteria)
        header = create_criteria(
            entry.request_field("ifNoneExist"), entry.query, f"{entry.where}.request.url"
        )
        plan.kind = "create"
        if header is not None:
            query, key = self._criteria(plan, header)
            found = await matches(self.ctx, query, 2)
            if len(found) > 1:
                raise _many("ifNoneExist")
            if found:
                plan.kind, plan.existing, plan.id = "existing", found[0], found[0].id
                return self._map(plan)
            earlier = self.by_criteria.get(key)
            if earlier is not None:  # the same conditional create twice in this bundle
                plan.kind, plan.same_as, plan.id = "existing", earlier, earlier.id
                return self._map(plan)
            self.by_criteria[key] = plan
            plan.unless = query
        plan.id = str(uuid.uuid4())
        self._map(plan)

    async def _identify_delete(self, plan: Plan, conditional: bool) -> None:
        if not conditional:
            plan.targets = [plan.id]
            return
        query, _ = self._criteria(plan, plan.entry.query)
        limit = self.ctx.settings.conditional_delete_max
        found = await matches(self.ctx, query, limit + 1)
        if len(found) > limit:
            raise FhirError(412, "too-costly", f"More than {limit} {plan.type} resources match")
        plan.targets = [s.id for s in found]

    def _map(self, plan: Plan) -> None:
        full_url = plan.entry.full_url
        if not full_url:
            return
        target = f"{plan.type}/{plan.id}"
        self.mapping[full_url] = target
        tail = "/".join(full_url.rsplit("/", 2)[-2:])
        if plan.entry.method == "POST" and "://" in full_url and tail.startswith(plan.type + "/"):
            self.mapping.setdefault(tail, target)  # relative references to the old id

    def _check_overlaps(self) -> None:
        seen: dict[tuple[str, str], Plan] = {}
        for plan in self._writes():
            if plan.kind == "existing":
                continue
            for id_ in plan.targets or [plan.id]:
                other = seen.setdefault((plan.type, id_), plan)
                if other is not plan:
                    raise invalid(
                        f"{plan.entry.label} and {other.entry.label} both write"
                        f" {plan.type}/{id_}; a transaction writes each resource once",
                        plan.entry.where,
                        other.entry.where,
                    )

    async def _rewrite_references(self) -> None:
        resolved: dict[str, str] = {}
        for plan in self._writes():
            resource = plan.entry.resource
            if resource is None or plan.kind in ("existing", "delete"):
                continue
            for reference in set(iter_references(resource)):
                if reference in resolved or reference in self.mapping:
                    continue
                try:
                    resolved[reference] = await self._resolve(reference)
                except FhirError as error:
                    raise named(plan.entry, error) from None

            def resolve(ref: str) -> str | None:
                return self.mapping.get(ref) or resolved.get(ref)

            rewrite_references(resource, resolve)

    async def _resolve(self, reference: str) -> str:
        if is_placeholder(reference):
            raise invalid(
                f"The reference {reference!r} names no entry of the bundle (no entry has it"
                " as fullUrl)"
            )
        split = conditional_reference(reference)
        if split is None:
            return reference
        type_, query = split
        text = substitute(query, self.mapping)
        search = criteria(self.ctx, type_, parse_qsl(text, keep_blank_values=True))
        found = await matches(self.ctx, search, 2)
        if len(found) > 1:
            raise FhirError(
                412,
                "multiple-matches",
                f"The conditional reference {reference!r} matches several resources",
            )
        if found:
            return f"{type_}/{found[0].id}"
        local = self.by_criteria.get(criteria_key(type_, text))
        if local is not None:  # created by this bundle with the same criteria
            return f"{type_}/{local.id}"
        raise FhirError(
            412, "not-found", f"The conditional reference {reference!r} matches no resource"
        )

    async def _build(self, plan: Plan) -> None:
        entry, resource = plan.entry, plan.entry.resource
        if plan.kind == "existing":
            return
        if plan.kind == "delete":
            if_match = user_if_match(plan)
            for id_ in plan.targets:
                plan.requests.append(WriteRequest(plan.type, id_, "delete", if_match=if_match))
            return
        if plan.kind == "patch":
            resource = await patched(self.ctx, plan)
        assert resource is not None
        if plan.kind == "create":
            resource.pop("id", None)
        elif plan.kind == "update":
            body_id = resource.get("id")
            if body_id is None and len(entry.segments) == 2:
                raise invalid(
                    f"The resource has no id; it must be {plan.id!r} as in the URL",
                    f"{plan.type}.id",
                )
            if body_id is not None and body_id != plan.id:
                raise invalid(
                    f"The resource id {body_id!r} does not match {plan.id!r}", f"{plan.type}.id"
                )
            resource["id"] = plan.id
        check_valid(resource)
        if_match = await self._checked_if_match(plan) if plan.kind == "update" else None
        if plan.kind == "patch":
            assert plan.existing is not None
            if_match = plan.existing.version
        request = WriteRequest(
            plan.type,
            plan.id,
            "create" if plan.kind == "create" else plan.kind,  # type: ignore[arg-type]
            content_builder(resource, plan.id),
            if_match=if_match,
            must_not_exist=plan.kind == "create",
            index=index_entries(resource, plan.id),
            unless_exists=plan.unless,
        )
        plan.requests.append(request)

    async def _checked_if_match(self, plan: Plan) -> int | None:
        if_match = user_if_match(plan)
        if if_match is not None:
            current = await self.ctx.store.read(plan.type, plan.id)
            version = None if current is None or current.deleted else current.version
            if version != if_match:
                raise precondition_failed(
                    f"ifMatch {plan.entry.request_field('ifMatch')} does not match the current"
                    f" version of {plan.type}/{plan.id} ({version if version else 'none'})"
                )
        return if_match

    # -- commit ------------------------------------------------------------------------

    async def commit(self) -> None:
        ordered = sorted(self._writes(), key=lambda p: _ORDER[p.entry.method])
        pairs = [(plan, request) for plan in ordered for request in plan.requests]
        progress = [0]
        requests = [
            tracked_request(request, position, progress)
            for position, (_, request) in enumerate(pairs)
        ]
        try:
            results = await self.ctx.store.write_batch(requests)
        except TransactionsUnavailable as exc:
            raise FhirError(
                400, "not-supported", f"This server's store cannot run transactions: {exc}"
            ) from None
        except (VersionConflict, ConditionMatched, AlreadyExists) as exc:
            plan = culprit(pairs, progress[0], exc)
            if isinstance(exc, VersionConflict) and plan.user_if_match:
                raise named(
                    plan.entry,
                    precondition_failed(
                        f"ifMatch {plan.entry.request_field('ifMatch')} does not match the current"
                        f" version of {plan.type}/{plan.id}"
                    ),
                ) from None
            raise _Race(plan) from None
        for (plan, _), result in zip(pairs, results, strict=True):
            plan.results.append(result)

    # -- response ----------------------------------------------------------------------

    async def respond(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for plan in self.plans:
            entry = plan.entry
            if entry.method in ("GET", "HEAD"):
                entry.query = substitute(entry.query, self.mapping)
                try:
                    out.append(
                        from_response(await dispatch(self.ctx, entry), entry.method == "HEAD")
                    )
                except FhirError as error:
                    out.append(error_entry(error))
            else:
                out.append(written_entry(self.ctx, plan))
        return out


def _many(what: str) -> FhirError:
    return FhirError(412, "multiple-matches", f"More than one resource matches {what}")
