"""The search query IR compiled to MongoDB filters over the index fields of
``mongo_index``, and run with keyset paging (https://hl7.org/fhir/R4/search.html).

- A :class:`~resources.search.query.Clause` is one ``$elemMatch`` on ``i.<kind>`` per
  alternative of its values (``mongo_match``), ORed at the top level; ``:not`` wraps it
  in ``$nor`` (so resources without any value match, as the spec says), ``:missing``
  tests whether any element names the parameter.
- Chains and ``_has`` run their inner query first and collect the ``Type/id`` keys it
  finds (at most :data:`MAX_JOIN_KEYS`, beyond which the search is refused as too
  costly), then match references to them with ``$in``: the equivalent of the SQLite
  store's joins, in the query language both MongoDB and mongomock share.
- Sorting uses the explicit sort keys (``s.<field>.lo`` ascending, ``.hi`` descending:
  the spec's min/max rule for repeating elements), copied into scalar fields by
  ``$addFields`` with ``$ifNull`` giving documents without a value a sentinel of the
  same BSON type that sorts after every real value in the requested direction, so they
  come last both ways and the keyset comparisons stay within one type. The keys of
  ``mongo_index.STORED_SORTS`` (``date``) already hold those sentinels, so they are
  sorted on as stored, like ``last_updated`` (``_lastUpdated``) and ``id`` (``_id``):
  a sort on stored fields alone can walk an index (``sort_date_*``,
  ``search_last_updated``) and stop after one page. ``_id`` (``Type/id``) breaks ties,
  ascending, or descending when every key is (so that the whole order is an index order
  or its reverse); the order is total and paging is keyset paging on ``(keys..., _id)``:
  no skip, same cost on every page, stable while data changes. The keyset filter also
  bounds the first key on its own (``key0 >= cursor0`` going forward on an ascending
  key), redundant but the form that gives an index scan its start. A single-type search
  is also bounded by its ``_id`` range (``"Type/" <= _id < "Type0"``), so the default
  ``_id`` order walks the ``_id`` index.
- ``_include`` / ``_revinclude`` (with ``:iterate``) are follow-up queries on ``_id`` and
  on ``i.ref`` (``mongo_include``).

No user input becomes an operator or a field name: parameter codes and search values are
only ever values (``{"p": code}``); the only code-derived field names are the sort keys,
escaped by ``mongo_index.sort_field``; cursor keys are checked to be strings or numbers.

MongoDB features used, each with the same semantics in mongomock 4.3 (verified by
``tests/test_mongo_search/``) and MongoDB: query operators ``$and $or $nor $in $nin
$elemMatch $exists $gt $gte $lt $lte`` and ``$regex`` (``mongo_match``); aggregation
stages ``$match $addFields $sort $limit $project $unwind $group`` and the expression
``$ifNull`` (https://www.mongodb.com/docs/manual/reference/operator/aggregation/);
``find`` with projection/sort/limit and ``count_documents``. Sorting never touches an
array field or a ``Decimal128``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server.storage.mongo_access import access_filter, member_condition
from fhir_server.storage.mongo_include import run_includes
from fhir_server.storage.mongo_index import (
    INDEX,
    KIND_OF_TYPE,
    NO_VALUE_LAST,
    NUMERIC_SORT_TYPES,
    REFS,
    SORT,
    STORED_FIELDS,
    STORED_SORTS,
    sort_field,
    stored_version,
)
from fhir_server.storage.mongo_match import MATCH_NOTHING, alternatives, any_of
from fhir_server.storage.search_page import Cursor, SearchPage
from resources.errors import FhirError, invalid
from resources.search.query import (
    AccessClause,
    AnyOf,
    ChainClause,
    Clause,
    Condition,
    DateMatch,
    GrantClause,
    HasClause,
    IdClause,
    LastUpdatedClause,
    MissingMatch,
    SearchQuery,
    Sort,
)

RESOURCES = "resources"
"""The collection of current resource versions (tombstones included)."""
MAX_JOIN_KEYS = 10_000
"""Most resources a chain or ``_has`` may match before the search is refused."""
_NO_VALUE = {
    (False, False): NO_VALUE_LAST,
    (True, False): "",
    (False, True): math.inf,
    (True, True): -math.inf,
}
"""(descending, numeric) -> the sentinel that sorts last for a document without a key."""


def too_costly(what: str) -> FhirError:
    return FhirError(
        400, "too-costly", f"{what} matches more than {MAX_JOIN_KEYS} resources; narrow it"
    )


@dataclass
class FilterCompiler:
    """Compiles conditions to a filter, running the inner queries of chains and ``_has``."""

    collection: Any
    session: Any = None
    access: AccessClause | None = None
    """Added to every resource the query selects: matches, chain and ``_has`` targets
    (and, in ``run_search``, included resources)."""

    async def access_filter(self) -> dict | None:
        """The access filter (None when everything is visible)."""
        if self.access is None or self.access.unrestricted:
            return None
        return await access_filter(self.access, self._granted)

    async def _granted(self, types: Sequence[str], cond: Condition) -> dict:
        """A granular scope's condition: compiled without the access filter itself."""
        access, self.access = self.access, None
        try:
            return await self.condition(types, cond)
        finally:
            self.access = access

    async def filter(self, types: Sequence[str], conditions: Sequence[Condition]) -> dict:
        """Live (not deleted) resources of one of ``types`` meeting every condition."""
        where: dict[str, Any] = {
            "type": types[0] if len(types) == 1 else {"$in": [str(t) for t in types]},
            "method": {"$ne": "delete"},
        }
        if len(types) == 1:  # the same set, as a range the _id index serves (in _id order)
            where["_id"] = {"$gte": f"{types[0]}/", "$lt": f"{types[0]}0"}
        parts = [await self.condition(types, c) for c in conditions]
        allowed = await self.access_filter()
        if allowed is not None:
            assert self.access is not None
            members = member_condition(self.access, types)
            if members is not None:
                where.update(members)
            parts.append(allowed)
        if parts:
            where["$and"] = parts
        return where

    async def condition(self, types: Sequence[str], cond: Condition) -> dict:
        """A condition on resources of ``types``."""
        if isinstance(cond, Clause):
            return clause_filter(cond)
        if isinstance(cond, IdClause):
            keys = [f"{t}/{i}" for t in types for i in cond.ids]
            return {"_id": {"$nin" if cond.negate else "$in": keys}}
        if isinstance(cond, LastUpdatedClause):
            return any_of(last_updated(value) for value in cond.values)
        if isinstance(cond, ChainClause):
            return await self._chain(cond)
        if isinstance(cond, HasClause):
            return await self._has(cond)
        if isinstance(cond, AnyOf):
            return any_of([await self.condition(types, c) for c in cond.conditions])
        if isinstance(cond, GrantClause):
            return await self._granted_to(types, cond)
        raise TypeError(f"unknown condition {cond!r}")

    @staticmethod
    async def _granted_to(types: Sequence[str], cond: GrantClause) -> dict:
        """What ``cond.grant`` allows, by the memberships of the version (``m``), with
        ``m: {$in: compartments}`` on its own when it is a necessary condition (a
        patient's record: the ``member_type`` index serves it)."""
        clause = AccessClause((cond.grant,))
        allowed = await access_filter(clause)
        members = member_condition(clause, types)
        return allowed if members is None else {"$and": [members, allowed]}

    async def _chain(self, chain: ChainClause) -> dict:
        """References through ``chain.param`` to targets that meet ``chain.inner``."""
        if not chain.target_types:
            return MATCH_NOTHING
        inner = await self.filter(chain.target_types, [chain.inner])
        found = self.collection.find(
            inner, {"type": 1, "id": 1}, limit=MAX_JOIN_KEYS + 1, session=self.session
        )
        targets = await found.to_list(None)
        if len(targets) > MAX_JOIN_KEYS:
            raise too_costly(f"The chained parameter {chain.param.code!r}")
        ids_by_type: dict[str, list[str]] = {}
        for doc in targets:
            ids_by_type.setdefault(doc["type"], []).append(doc["id"])
        return any_of(
            {REFS: {"$elemMatch": {"p": chain.param.code, "t": type_, "id": {"$in": ids}}}}
            for type_, ids in sorted(ids_by_type.items())
        )

    async def _has(self, has: HasClause) -> dict:
        """Resources referred to through ``has.reference_param`` by a ``has.source_type``
        resource that meets ``has.inner``."""
        code = has.reference_param.code
        inner = await self.filter([has.source_type], [has.inner])
        inner["$and"] = [*inner.get("$and", []), {REFS: {"$elemMatch": {"p": code}}}]
        pipeline = [
            {"$match": inner},
            {"$unwind": f"${REFS}"},
            {"$match": {f"{REFS}.p": code}},
            {"$group": {"_id": {"t": f"${REFS}.t", "id": f"${REFS}.id"}}},
            {"$limit": MAX_JOIN_KEYS + 1},
        ]
        found = await self.collection.aggregate(pipeline, session=self.session)
        groups = await found.to_list(None)
        if len(groups) > MAX_JOIN_KEYS:
            raise too_costly(f"_has:{has.source_type}:{code}")
        keys = sorted(
            f"{g['_id']['t']}/{g['_id']['id']}"
            for g in groups
            if isinstance(g["_id"].get("t"), str) and isinstance(g["_id"].get("id"), str)
        )
        return {"_id": {"$in": keys}}


def clause_filter(clause: Clause) -> dict:
    """One parameter: any of its values (``$nor`` of that for ``:not``), or ``:missing``."""
    kind = KIND_OF_TYPE.get(clause.param.type)
    if kind is None:
        return MATCH_NOTHING
    path, code = f"{INDEX}.{kind}", clause.param.code
    missing = [v for v in clause.values if isinstance(v, MissingMatch)]
    if missing:
        present = {path: {"$elemMatch": {"p": code}}}
        return {"$nor": [present]} if missing[0].missing else present
    matches = any_of(
        {path: {"$elemMatch": {"p": code, **alternative}}}
        for value in clause.values
        for alternative in alternatives(value)
    )
    return {"$nor": [matches]} if clause.negate else matches


def last_updated(value: DateMatch) -> dict:
    """``meta.lastUpdated`` is an instant: a point ``t`` against ``[low, high)``."""
    low, high = value.low, value.high
    return {
        "eq": {"last_updated": {"$gte": low, "$lt": high}},
        "ap": {"last_updated": {"$gte": low, "$lt": high}},
        "ne": {"$or": [{"last_updated": {"$lt": low}}, {"last_updated": {"$gte": high}}]},
        "gt": {"last_updated": {"$gte": high}},
        "sa": {"last_updated": {"$gte": high}},
        "lt": {"last_updated": {"$lt": low}},
        "eb": {"last_updated": {"$lt": low}},
        "ge": {"last_updated": {"$gte": low}},
        "le": {"last_updated": {"$lt": high}},
    }[value.prefix]


async def compile_filter(db: Any, query: SearchQuery, session: Any = None) -> dict:
    """The filter selecting every match of ``query`` (chains and ``_has`` are resolved
    against ``db`` while compiling)."""
    compiler = FilterCompiler(db[RESOURCES], session)
    return await compiler.filter(query.types, query.conditions)


# -- sorting and paging -----------------------------------------------------------------


@dataclass
class SortPlan:
    """The order of a search: ``fields`` (``_id`` last) with their directions, and the
    ``$addFields`` expressions of the computed sort keys."""

    fields: list[str] = field(default_factory=list)
    descending: list[bool] = field(default_factory=list)
    computed: dict[str, Any] = field(default_factory=dict)

    def spec(self, reverse: bool = False) -> dict[str, int]:
        pairs = zip(self.fields, self.descending, strict=True)
        return {name: -1 if descending != reverse else 1 for name, descending in pairs}


def sort_plan(sort: Sequence[Sort]) -> SortPlan:
    plan = SortPlan()
    for item in sort:
        end = "hi" if item.descending else "lo"
        if item.special == "_id":
            name = "id"
        elif item.special == "_lastUpdated":
            name = "last_updated"
        else:
            assert item.param is not None
            path = f"{SORT}.{sort_field(item.param.code)}.{end}"
            if item.param.code in STORED_SORTS and item.param.type == "date":
                name = path  # stored with its sentinel: sorted on as it is
            else:
                name = f"_k{len(plan.computed)}"
                numeric = item.param.type in NUMERIC_SORT_TYPES
                sentinel = _NO_VALUE[(item.descending, numeric)]
                plan.computed[name] = {"$ifNull": [f"${path}", {"$literal": sentinel}]}
        if name not in plan.fields:
            plan.fields.append(name)
            plan.descending.append(item.descending)
    plan.fields.append("_id")
    plan.descending.append(bool(plan.descending) and all(plan.descending))
    return plan


def sort_value(doc: dict, name: str) -> Any:
    """A plan field of a (projected) document; stored sort keys are dotted paths."""
    value: Any = doc
    for part in name.split(".") if name.startswith(f"{SORT}.") else (name,):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def keyset(plan: SortPlan, cursor: Cursor) -> dict:
    """Documents strictly after (``next``) or before (``prev``) the cursor's key."""
    if len(cursor.key) != len(plan.fields) or not all(_key_value(v) for v in cursor.key):
        raise invalid("The paging cursor does not belong to this search", "_cursor")
    forward = cursor.direction == "next"
    branches: list[dict[str, Any]] = []
    for i, name in enumerate(plan.fields):
        branch: dict[str, Any] = {plan.fields[j]: cursor.key[j] for j in range(i)}
        after = (not plan.descending[i]) == forward
        branch[name] = {"$gt" if after else "$lt": cursor.key[i]}
        branches.append(branch)
    if len(branches) == 1:
        return branches[0]
    first_after = (not plan.descending[0]) == forward
    bound = {plan.fields[0]: {"$gte" if first_after else "$lte": cursor.key[0]}}
    return {"$and": [bound, any_of(branches)]}


def _key_value(value: Any) -> bool:
    return isinstance(value, str | float) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def page_pipeline(
    where: dict, plan: SortPlan, cursor: Cursor | None, limit: int, projection: dict
) -> list[dict]:
    """``$match`` the filter, compute the sort keys, ``$match`` the keyset, sort, limit."""
    pipeline: list[dict[str, Any]] = []
    after = keyset(plan, cursor) if cursor is not None else None
    if plan.computed:
        pipeline += [{"$match": where}, {"$addFields": plan.computed}]
        if after is not None:
            pipeline.append({"$match": after})
    else:
        pipeline.append({"$match": where if after is None else {"$and": [where, after]}})
    reverse = cursor is not None and cursor.direction == "prev"
    pipeline += [{"$sort": plan.spec(reverse)}, {"$limit": limit}, {"$project": projection}]
    return pipeline


# -- running a search -------------------------------------------------------------------


async def run_search(
    db: Any,
    query: SearchQuery,
    cursor: Cursor | None,
    count: int,
    with_total: bool,
    session: Any = None,
) -> SearchPage:
    """One page of a search, its links' cursors, the total and the included resources."""
    collection = db[RESOURCES]
    compiler = FilterCompiler(collection, session, query.access)
    where = await compiler.filter(query.types, query.conditions)
    if count == 0:
        total = await collection.count_documents(where, session=session) if with_total else None
        return SearchPage([], total)
    plan = sort_plan(query.sort)
    projection = dict.fromkeys((*STORED_FIELDS, *plan.fields), 1)
    if query.includes:
        projection[REFS] = 1
    pipeline = page_pipeline(where, plan, cursor, count + 1, projection)
    docs = await (await collection.aggregate(pipeline, session=session)).to_list(None)
    more = len(docs) > count
    docs = docs[:count]
    total = None
    if with_total:
        # a first page that holds every match is its own count (no second query)
        if cursor is None and not more:
            total = len(docs)
        else:
            total = await collection.count_documents(where, session=session)
    backwards = cursor is not None and cursor.direction == "prev"
    if backwards:
        docs.reverse()
    page = SearchPage([stored_version(d) for d in docs], total)
    if docs:
        keys = [tuple(sort_value(d, name) for name in plan.fields) for d in docs]
        if more or backwards:
            page.next_cursor = Cursor(keys[-1], "next")
        if (cursor is not None and not backwards) or (backwards and more):
            page.prev_cursor = Cursor(keys[0], "prev")
    if query.includes:
        page.included = await run_includes(
            collection, query.includes, docs, session, await compiler.access_filter()
        )
    return page
