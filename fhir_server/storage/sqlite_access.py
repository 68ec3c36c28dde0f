"""The access policy as SQL: SMART scopes compiled into the query of every read path
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

A :class:`~resources.search.query.AccessClause` is an OR of grants; each grant limits the
resource type, the Patient compartments a version must be in (the ``member`` table,
written with every version) and, for v2 granular scopes, search conditions on the
current version. The predicate is added to the query that selects rows, so a page, a
total, an included resource or a chained target is never filtered afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from resources.definitions import RESOURCE_TYPES
from resources.search.query import AccessClause, Condition, Grant

Sql = tuple[str, list[Any]]

MEMBER_SCHEMA = """
CREATE TABLE IF NOT EXISTS member (
    compartment TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (compartment, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS member_by_seq ON member (seq);
CREATE INDEX IF NOT EXISTS resource_by_seq ON resource (seq);
"""
"""``member(compartment, seq)``: version ``seq`` of the ``history`` table is in the
compartment (``Patient/1``). The current version of a resource is ``resource.seq``."""

WhereCompiler = Callable[[Sequence[str], Condition], Sql]


def access_sql(alias: str, access: AccessClause, where: WhereCompiler | None = None) -> Sql:
    """A predicate on ``alias`` (a ``resource`` or ``history`` row with ``type`` and
    ``seq`` columns). Without ``where``, grants that carry search conditions grant
    nothing (they need the current search index)."""
    parts: list[Sql] = []
    for grant in access.grants:
        part = _grant_sql(alias, grant, where)
        if part is not None:
            parts.append(part)
    if not parts:
        return "0", []
    return " OR ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps]


def _grant_sql(alias: str, grant: Grant, where: WhereCompiler | None) -> Sql | None:
    clauses: list[str] = []
    params: list[Any] = []
    if grant.types is not None:
        if not grant.types:
            return None
        types = sorted(grant.types)
        clauses.append(f"{alias}.type IN ({_marks(types)})")
        params += types
    if grant.compartments is not None:
        sql, more = _patient_sql(alias, grant)
        clauses.append(sql)
        params += more
    if grant.where:
        if where is None or grant.types is None:
            return None
        for condition in grant.where:
            sql, more = where(sorted(grant.types), condition)
            clauses.append(f"({sql})")
            params += more
    return (" AND ".join(clauses) or "1"), params


def _patient_sql(alias: str, grant: Grant) -> Sql:
    """A patient-context grant's rule (see ``Grant``): the compartment's types by
    membership, any other type by "no other patient, and this one or directory data"."""
    assert grant.compartments is not None
    inside = _member_sql(alias, grant.compartments)
    types, member_types = grant.types, grant.member_types
    if types is not None and types <= member_types:
        return inside  # a patient's record: the portal's searches
    public = grant.public_types if types is None else grant.public_types & types
    exclusive = _exclusive_sql(alias, grant.compartments, public, inside)
    if types is not None and not types & member_types:
        return exclusive
    listed = sorted(member_types if types is None else member_types & types)
    marks = _marks(listed)
    return (
        f"(({alias}.type IN ({marks}) AND {inside[0]})"
        f" OR ({alias}.type NOT IN ({marks}) AND {exclusive[0]}))",
        [*listed, *inside[1], *listed, *exclusive[1]],
    )


def _exclusive_sql(
    alias: str, compartments: Sequence[str], public: frozenset[str], inside: Sql
) -> Sql:
    """Member of no compartment but ``compartments``, and of one of them unless the type
    is one of ``public``."""
    others = f"SELECT 1 FROM member WHERE member.seq = {alias}.seq"
    if compartments:
        others += f" AND member.compartment NOT IN ({_marks(compartments)})"
    sql, params = f"NOT EXISTS ({others})", list(compartments)
    if not public:
        return f"{sql} AND {inside[0]}", [*params, *inside[1]]
    listed = sorted(public)
    return (
        f"{sql} AND ({alias}.type IN ({_marks(listed)}) OR {inside[0]})",
        [*params, *listed, *inside[1]],
    )


def _member_sql(alias: str, compartments: Sequence[str]) -> Sql:
    if not compartments:
        return "0", []
    return (
        f"EXISTS (SELECT 1 FROM member WHERE member.compartment IN ({_marks(compartments)})"
        f" AND member.seq = {alias}.seq)",
        list(compartments),
    )


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def member_driver(alias: str, access: AccessClause, types: Sequence[str] | None) -> Sql | None:
    """When every grant limits ``types`` to compartments, the rows of those compartments
    (a patient's record: hundreds of rows, where a type or a code can have millions) are
    the place to start: ``alias.seq IN (…)``, a necessary condition to which the exact
    predicate is added. None when some grant does not need membership for these types
    (no compartment limit, or directory types it shows without one)."""
    if not access.grants or types is None:
        return None
    compartments: dict[str, None] = {}
    for grant in access.grants:
        if grant.compartments is None or grant.public_types.intersection(types):
            return None
        compartments.update(dict.fromkeys(grant.compartments))
    if not compartments:
        return "0", []
    marks = _marks(list(compartments))
    return (
        f"{alias}.seq IN (SELECT seq FROM member WHERE compartment IN ({marks}))",
        list(compartments),
    )


def any_type_driver(alias: str, access: AccessClause) -> Sql | None:
    """For a query over every type (system-level history): a necessary condition that
    indexes serve, the rows of the grants' compartments (``member``) or of the types a
    grant shows without one (``type IN``, the ``(type, seq)`` index), so a patient's
    system history reads that patient's rows and the rows of the directory types, never
    the whole table (it walked all 1M versions: 4.2 s). None when
    some grant shows every type without a compartment."""
    compartments: dict[str, None] = {}
    types: set[str] = set()
    for grant in access.grants:
        if grant.where:
            continue  # granular grants show no history (see access_sql)
        granted = set(RESOURCE_TYPES) if grant.types is None else set(grant.types)
        if grant.compartments is None:
            if grant.types is None:
                return None
            types |= granted
        else:
            compartments.update(dict.fromkeys(grant.compartments))
            types |= granted & grant.public_types
    parts: list[Sql] = []
    if compartments:
        marks = _marks(list(compartments))
        parts.append(
            (
                f"{alias}.seq IN (SELECT seq FROM member WHERE compartment IN ({marks}))",
                list(compartments),
            )
        )
    if types:
        ordered = sorted(types)
        parts.append((f"{alias}.type IN ({_marks(ordered)})", ordered))
    if not parts:
        return "0", []
    return " OR ".join(sql for sql, _ in parts), [p for _, ps in parts for p in ps]
