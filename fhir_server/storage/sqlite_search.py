"""The search query IR compiled to SQL over the SQLite index tables.

https://hl7.org/fhir/R4/search.html. Each condition becomes a predicate on one resource
alias: parameter matches are ``pk IN (SELECT res_pk FROM idx_* ...)`` sub-selects served
by the ``(pid, value)`` indexes, chains join ``idx_reference`` to the target resource,
``_has`` looks for referring resources. Sorting uses the explicit ``idx_sort`` keys (the
lowest value ascending, the highest descending, as the spec says for repeating elements),
with a sentinel for "no value" so that missing values sort last and keyset paging has a
total order. All user values are bound parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server.storage.sqlite_access import access_sql, member_driver
from fhir_server.storage.sqlite_index import TABLE_OF_TYPE, ParamIds
from fhir_server.storage.sqlite_match import Sql, match_sql
from resources.definitions import RESOURCE_TYPES
from resources.search.model import SearchParam
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
    Sort,
)

COLUMNS = "{a}.type, {a}.id, {a}.version, {a}.last_updated, {a}.method, {a}.content, {a}.seq"

NO_VALUE_ASC = b"\xff"
"""Sorts after every number and text (SQLite orders NULL < numbers < text < blobs)."""
NO_VALUE_DESC = -1.0e308
"""Sorts before every number and text."""


@dataclass
class Compiler:
    """Compiles conditions for one connection (parameter ids are looked up as needed)."""

    conn: sqlite3.Connection
    ids: ParamIds
    access: AccessClause | None = None
    """Added to every resource the query selects: matches, chain and ``_has`` targets,
    included resources."""
    _aliases: int = field(default=0)

    def alias(self, stem: str) -> str:
        self._aliases += 1
        return f"{stem}{self._aliases}"

    def pids(self, types: Sequence[str], code: str) -> list[int]:
        found = (self.ids.lookup(self.conn, t, code) for t in types)
        return [pid for pid in found if pid is not None]

    # -- conditions ------------------------------------------------------------------

    def where(self, alias: str, types: Sequence[str], conditions: Sequence[Condition]) -> Sql:
        """``alias`` is a live resource of one of ``types`` meeting every condition."""
        marks = ",".join("?" * len(types))
        members = self.member_driver(alias, types)
        driver = None if members is not None else choose_driver(conditions)
        # with a driving condition, the type must not steer the plan to the (type, id)
        # index (a walk over every resource of the type): unary + keeps it a filter
        plus = "+" if driver is not None or members is not None else ""
        clauses = [f"{alias}.method != 'delete'"]
        params: list[Any] = []
        if not plus or len(types) < len(_EVERY_TYPE) or not _EVERY_TYPE.issubset(types):
            # (a filter on every type, behind a driving condition, is no filter: $everything)
            clauses.insert(0, f"{plus}{alias}.type IN ({marks})")
            params += types
        if members is not None:
            clauses.append(members[0])
            params += members[1]
        # the probes that look at the index rows only go inside the driving sub-select,
        # so a resource row is read only for candidates that pass them all
        # (an ``_id`` list drives by the resource row: its probes stay outside)
        probes = driver is not None and not isinstance(conditions[driver], IdClause)
        inside = [i for i, c in enumerate(conditions) if by_pk(c)] if probes else []
        for index, condition in enumerate(conditions):
            if index == driver:
                filters = [c for i, c in enumerate(conditions) if i in inside and i != index]
                sql, more = self.condition(alias, types, condition, True, filters)
            elif index not in inside:
                sql, more = self.condition(alias, types, condition)
            else:
                continue
            clauses.append(f"({sql})")
            params += more
        access_where, access_params = self.access_where(alias)
        if access_where:
            clauses.append(f"({access_where})")
            params += access_params
        return " AND ".join(clauses), params

    def access_where(self, alias: str) -> Sql:
        """The access predicate on ``alias`` ("" when everything is visible)."""
        if self.access is None or self.access.unrestricted:
            return "", []
        return access_sql(alias, self.access, lambda types, cond: self._granted(alias, types, cond))

    def member_driver(self, alias: str, types: Sequence[str]) -> Sql | None:
        """The caller's compartments as the driving condition, when they limit every
        type searched (see ``sqlite_access.member_driver``)."""
        if self.access is None or self.access.unrestricted:
            return None
        return member_driver(alias, self.access, types)

    def _granted(self, alias: str, types: Sequence[str], cond: Condition) -> Sql:
        """A granular scope's condition: compiled without the access predicate itself."""
        access, self.access = self.access, None
        try:
            return self.condition(alias, types, cond)
        finally:
            self.access = access

    def condition(
        self,
        alias: str,
        types: Sequence[str],
        cond: Condition,
        drive: bool = False,
        filters: Sequence[Condition] = (),
        pk: str | None = None,
    ) -> Sql:
        """A predicate on ``alias``. The driving condition is an ``IN`` list the planner
        starts from (``filters``, conditions for which :func:`by_pk` holds, are probed
        inside it); the others are correlated ``EXISTS`` probes of the matched rows, so
        no condition materialises every resource it matches. ``pk`` is the expression
        of the resource's ``pk`` (default ``alias.pk``)."""
        pk = pk or f"{alias}.pk"
        if isinstance(cond, Clause):
            return self._clause(alias, types, cond, drive, filters, pk)
        if isinstance(cond, IdClause):
            marks = ",".join("?" * len(cond.ids))
            if drive and not cond.negate:
                # the (type, id) index: the type alone (resource_live) would walk the type
                kinds = ",".join("?" * len(types))
                return (
                    f"{alias}.pk IN (SELECT pk FROM resource"
                    f" WHERE type IN ({kinds}) AND id IN ({marks}))",
                    [*types, *cond.ids],
                )
            negate = "NOT " if cond.negate else ""
            return f"{alias}.id {negate}IN ({marks})", list(cond.ids)
        if isinstance(cond, LastUpdatedClause):
            return self._any_of([self._last_updated(alias, value) for value in cond.values])
        if isinstance(cond, ChainClause):
            return self._chain(alias, types, cond, drive, filters, pk)
        if isinstance(cond, HasClause):
            return self._has(alias, cond)
        if isinstance(cond, AnyOf):
            return self._any_of([self.condition(alias, types, c, pk=pk) for c in cond.conditions])
        if isinstance(cond, GrantClause):
            return self._granted_to(alias, types, cond, drive, filters)
        raise TypeError(f"unknown condition {cond!r}")

    def _granted_to(
        self,
        alias: str,
        types: Sequence[str],
        cond: GrantClause,
        drive: bool,
        filters: Sequence[Condition],
    ) -> Sql:
        """What ``cond.grant`` allows, by the ``member`` rows of the version; driving,
        the rows of its compartments (a patient's record) are where the plan starts."""
        clause = AccessClause((cond.grant,))
        sql, params = access_sql(alias, clause)
        if not drive:
            return sql, params
        start = member_driver(alias, clause, types) or ("1", [])
        more_sql, more = self._filters(alias, types, filters, f"{alias}.pk")
        return f"{start[0]} AND ({sql}){more_sql}", [*start[1], *params, *more]

    @staticmethod
    def _any_of(parts: list[Sql]) -> Sql:
        if not parts:
            return "0", []
        return " OR ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps]

    def driving_select(
        self, alias: str, types: Sequence[str], clause: Clause, filters: Sequence[Condition]
    ) -> Sql | None:
        """``SELECT res_pk`` of the index rows ``clause`` matches that pass ``filters``
        (None when the clause cannot drive: a negation, ``:missing``, no index table)."""
        table = TABLE_OF_TYPE.get(clause.param.type)
        if table is None or clause.negate:
            return None
        if any(isinstance(v, MissingMatch) for v in clause.values):
            return None
        pids = self.pids(types, clause.param.code)
        pid_sql = f"pid IN ({','.join('?' * len(pids))})" if pids else "0"
        matches = [match_sql(value) for value in clause.values]
        ors = " OR ".join(f"({sql})" for sql, _ in matches) or "0"
        params = [*pids, *(p for _, ps in matches for p in ps)]
        return self._driving(alias, types, table, pid_sql, ors, params, filters)

    def _driving(
        self,
        alias: str,
        types: Sequence[str],
        table: str,
        pid_sql: str,
        ors: str,
        params: list[Any],
        filters: Sequence[Condition],
    ) -> Sql:
        driving = self.alias("d")
        more_sql, more = self._filters(alias, types, filters, f"{driving}.res_pk")
        sub = (
            f"SELECT {driving}.res_pk FROM {table} {driving} WHERE {pid_sql} AND ({ors}){more_sql}"
        )
        return sub, [*params, *more]

    def _filters(
        self, alias: str, types: Sequence[str], filters: Sequence[Condition], pk: str
    ) -> Sql:
        """`` AND``-prefixed probes of ``filters`` on the resource whose pk is ``pk``."""
        sql, params = "", []
        for condition in filters:
            more_sql, more = self.condition(alias, types, condition, pk=pk)
            sql += f" AND ({more_sql})"
            params += more
        return sql, params

    def _clause(
        self,
        alias: str,
        types: Sequence[str],
        clause: Clause,
        drive: bool,
        filters: Sequence[Condition],
        pk: str,
    ) -> Sql:
        param = clause.param
        table = TABLE_OF_TYPE.get(param.type)
        pids = self.pids(types, param.code)
        if table is None:
            return "0", []
        pid_sql = f"pid IN ({','.join('?' * len(pids))})" if pids else "0"
        missing = [v for v in clause.values if isinstance(v, MissingMatch)]
        if missing:
            exists = (
                f"EXISTS (SELECT 1 FROM {table} INDEXED BY {table}_res"
                f" WHERE res_pk = {pk} AND {pid_sql})"
            )
            return (f"NOT {exists}" if missing[0].missing else exists), list(pids)
        matches = [match_sql(value) for value in clause.values]
        ors = " OR ".join(f"({sql})" for sql, _ in matches) or "0"
        params = [*pids, *(p for _, ps in matches for p in ps)]
        negate = "NOT " if clause.negate else ""
        if drive and not clause.negate:
            sub, sub_params = self._driving(alias, types, table, pid_sql, ors, params, filters)
            return f"{pk} IN ({sub})", sub_params
        # a probe of one resource's rows: by res_pk, whatever the statistics say
        probe = (
            f"SELECT 1 FROM {table} INDEXED BY {table}_res"
            f" WHERE res_pk = {pk} AND {pid_sql} AND ({ors})"
        )
        return f"{negate}EXISTS ({probe})", params

    @staticmethod
    def _last_updated(alias: str, value: DateMatch) -> Sql:
        """``meta.lastUpdated`` is an instant: a point ``t`` against ``[low, high)``."""
        t = f"{alias}.last_updated"
        low, high = value.low, value.high
        return {
            "eq": (f"{t} >= ? AND {t} < ?", [low, high]),
            "ap": (f"{t} >= ? AND {t} < ?", [low, high]),
            "ne": (f"NOT ({t} >= ? AND {t} < ?)", [low, high]),
            "gt": (f"{t} >= ?", [high]),
            "sa": (f"{t} >= ?", [high]),
            "lt": (f"{t} < ?", [low]),
            "eb": (f"{t} < ?", [low]),
            "ge": (f"{t} >= ?", [low]),
            "le": (f"{t} < ?", [high]),
        }[value.prefix]

    def _chain(
        self,
        alias: str,
        types: Sequence[str],
        chain: ChainClause,
        drive: bool,
        filters: Sequence[Condition],
        pk: str,
    ) -> Sql:
        ref, target = self.alias("i"), self.alias("t")
        pids = self.pids(types, chain.param.code)
        if not pids or not chain.target_types:
            return "0", []
        inner_sql, inner_params = self.where(target, chain.target_types, [chain.inner])
        on = f"{target}.type = {ref}.target_type AND {target}.id = {ref}.target_id"
        where = f"{ref}.pid IN ({','.join('?' * len(pids))}) AND {inner_sql}"
        # CROSS JOIN fixes the loop order: driving, from the targets the inner condition
        # finds to the references to them; probing, from one resource's references
        if drive:
            more_sql, more = self._filters(alias, types, filters, f"{ref}.res_pk")
            sql = (
                f"{pk} IN (SELECT {ref}.res_pk FROM resource {target}"
                f" CROSS JOIN idx_reference {ref} ON {on} WHERE {where}{more_sql})"
            )
            return sql, [*pids, *inner_params, *more]
        sql = (
            f"EXISTS (SELECT 1 FROM idx_reference {ref} INDEXED BY idx_reference_res"
            f" CROSS JOIN resource {target} ON {on} WHERE {ref}.res_pk = {pk} AND {where})"
        )
        return sql, [*pids, *inner_params]

    def _has(self, alias: str, has: HasClause) -> Sql:
        ref, source = self.alias("i"), self.alias("s")
        pids = self.pids([has.source_type], has.reference_param.code)
        if not pids:
            return "0", []
        inner_sql, inner_params = self.where(source, [has.source_type], [has.inner])
        sql = (
            f"EXISTS (SELECT 1 FROM idx_reference {ref}"
            f" JOIN resource {source} ON {source}.pk = {ref}.res_pk"
            f" WHERE {ref}.target_id = {alias}.id AND {ref}.target_type = {alias}.type"
            f" AND {ref}.pid IN ({','.join('?' * len(pids))}) AND {inner_sql})"
        )
        return sql, [*pids, *inner_params]

    # -- sorting and paging ----------------------------------------------------------

    def sort_terms(
        self, alias: str, types: Sequence[str], sort: Sequence[Sort]
    ) -> tuple[list[str], list[str], list[Any], list[bool]]:
        """(joins, key expressions, join params, descending flags); ``pk`` breaks ties."""
        joins: list[str] = []
        keys: list[str] = []
        params: list[Any] = []
        descending: list[bool] = []
        for item in sort:
            if item.special == "_id":
                keys.append(f"{alias}.id")
            elif item.special == "_lastUpdated":
                keys.append(f"{alias}.last_updated")
            else:
                assert item.param is not None
                key = self._sort_join(alias, types, item.param, item.descending, joins, params)
                keys.append(key)
            descending.append(item.descending)
        keys.append(f"{alias}.pk")
        descending.append(False)
        return joins, keys, params, descending

    def _sort_join(
        self,
        alias: str,
        types: Sequence[str],
        param: SearchParam,
        descending: bool,
        joins: list[str],
        params: list[Any],
    ) -> str:
        pids = self.pids(types, param.code)
        sort_alias = self.alias("k")
        pid_sql = f"{sort_alias}.pid IN ({','.join('?' * len(pids))})" if pids else "0"
        joins.append(
            f"LEFT JOIN idx_sort {sort_alias} ON {sort_alias}.res_pk = {alias}.pk AND {pid_sql}"
        )
        params += pids
        if descending:
            return f"coalesce({sort_alias}.high, {NO_VALUE_DESC!r})"
        return f"coalesce({sort_alias}.low, x'ff')"


_EVERY_TYPE = frozenset(RESOURCE_TYPES)


_RANK_BY_TYPE = {"reference": 1, "token": 2, "string": 3, "uri": 3}


def _rank(cond: Condition) -> float | None:
    """How selective a condition usually is (lower drives); None: cannot drive.
    Identifiers name one resource; a chain is about as selective as its inner
    condition (``patient.identifier=…`` finds one patient's resources)."""
    if isinstance(cond, IdClause):
        return None if cond.negate else 0
    if isinstance(cond, Clause):
        if cond.negate or any(isinstance(v, MissingMatch) for v in cond.values):
            return None
        if cond.param.type == "token" and cond.param.code == "identifier":
            return 1
        return _RANK_BY_TYPE.get(cond.param.type, 4)
    if isinstance(cond, ChainClause):
        inner = _rank(cond.inner)
        return 5 if inner is None else inner + 0.5
    if isinstance(cond, GrantClause):
        grant = cond.grant
        return 0 if grant.compartments and not grant.public_types else None
    return None


def by_pk(cond: Condition) -> bool:
    """Whether the condition's probe needs the resource's ``pk`` only (index rows, not
    the resource row), so it can be checked inside the driving sub-select."""
    if isinstance(cond, Clause):
        return TABLE_OF_TYPE.get(cond.param.type) is not None
    if isinstance(cond, ChainClause):
        return True
    if isinstance(cond, AnyOf):
        return all(by_pk(c) for c in cond.conditions)
    return False


def choose_driver(conditions: Sequence[Condition]) -> int | None:
    ranked = [(rank, i) for i, c in enumerate(conditions) if (rank := _rank(c)) is not None]
    return min(ranked)[1] if ranked else None
