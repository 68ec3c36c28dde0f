"""The result parameters: how matches are sorted, paged, included and shaped.

https://hl7.org/fhir/R4/search.html#return: ``_sort`` (#sort), ``_count`` (#count; ``0``
asks for the count only, as ``_summary=count``), ``_include`` / ``_revinclude`` with
``:iterate`` (#include; ``:recurse`` is its STU3 name), ``_total`` (#total), ``_summary``
(#summary) and ``_elements`` (#elements). ``_cursor`` is this server's paging cursor,
passed through opaque. Each may be given once, except the includes: a repeated include
counts once (in the query and the ``self`` link), and more distinct ones than
``MAX_INCLUDES``, or more sort keys than ``MAX_SORT_KEYS``
(:mod:`resources.search.limits`), are a 400 ``too-costly``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from resources.definitions import is_resource_type
from resources.search.limits import MAX_INCLUDES, MAX_SORT_KEYS, too_costly
from resources.search.model import SearchParam
from resources.search.query import Include, SearchQuery, Sort
from resources.search.values.common import UnknownParameter, Unsupported, bad
from resources.search.values.reference import accepts

Lookup = Callable[[Sequence[str], str], SearchParam]
"""The parameter of a code for resource types; raises :class:`UnknownParameter`."""

NAMES = frozenset(
    {"_sort", "_count", "_include", "_revinclude", "_total", "_summary", "_elements", "_cursor"}
)
_UNSUPPORTED = frozenset({"_contained", "_containedType"})
_TOTALS = ("none", "estimate", "accurate")
_SUMMARIES = ("true", "text", "data", "count", "false")
_ELEMENT = re.compile(r"(?:[A-Z][A-Za-z]*\.)?[A-Za-z][A-Za-z0-9]*(?:\[x\])?")
_SORTABLE = frozenset({"number", "date", "string", "token", "reference", "quantity", "uri"})


def is_result_parameter(code: str) -> bool:
    return code in NAMES or code in _UNSUPPORTED


@dataclass
class ResultParser:
    """Adds result parameters to ``query`` (``applied``/``ignored`` included)."""

    query: SearchQuery
    lookup: Lookup
    strict: bool
    max_count: int
    _seen: set[str] = field(default_factory=set)
    _includes: set[tuple[str, str]] = field(default_factory=set)
    """The include parameters given so far, as (canonical name, value)."""

    def add(self, name: str, value: str) -> None:
        code, _, modifier = name.partition(":")
        if code in _UNSUPPORTED:
            raise Unsupported(f"The result parameter '{code}' is not supported")
        if code in ("_include", "_revinclude"):
            self._include(name, code, modifier, value)
            return
        if modifier or name != code:
            raise Unsupported(f"The modifier :{modifier} is not supported for '{code}'")
        if code in self._seen:
            raise bad(code, "it may be given only once")
        self._seen.add(code)
        parsers = {
            "_sort": self._sort,
            "_count": self._count,
            "_total": self._total,
            "_summary": self._summary,
            "_elements": self._elements,
            "_cursor": self._cursor,
        }
        parsers[code](value)

    def finish(self, default_count: int) -> None:
        if self.query.count is None:
            self.query.count = max(0, min(default_count, self.max_count))
        elif self.query.count == 0 and self.query.summary is None:
            self.query.summary = "count"

    def _applied(self, name: str, value: str) -> None:
        self.query.applied.append((name, value))

    def _count(self, value: str) -> None:
        if not value.isascii() or not value.isdigit():
            raise bad("_count", f"{value!r} is not a whole number")
        count = self.max_count if len(value) > 9 else min(int(value), self.max_count)
        self.query.count = count
        self._applied("_count", str(count))

    def _cursor(self, value: str) -> None:
        self.query.cursor = value

    def _total(self, value: str) -> None:
        if value not in _TOTALS:
            raise bad("_total", f"{value!r} is not one of {', '.join(_TOTALS)}")
        self.query.total = cast(Literal["none", "estimate", "accurate"], value)
        self._applied("_total", value)

    def _summary(self, value: str) -> None:
        if value not in _SUMMARIES:
            raise bad("_summary", f"{value!r} is not one of {', '.join(_SUMMARIES)}")
        self.query.summary = cast(Literal["true", "text", "data", "count", "false"], value)
        self._applied("_summary", value)

    def _elements(self, value: str) -> None:
        elements = tuple(e.strip() for e in value.split(",") if e.strip())
        for element in elements:
            if _ELEMENT.fullmatch(element) is None:
                raise bad("_elements", f"{element!r} is not an element name")
        self.query.elements = elements
        if elements:
            self._applied("_elements", ",".join(elements))

    def _sort(self, value: str) -> None:
        kept: list[str] = []
        dropped: list[str] = []
        sorts: list[Sort] = []
        keys = value.split(",")
        if len(keys) > MAX_SORT_KEYS:
            raise too_costly("_sort", f"{len(keys)} sort keys; at most {MAX_SORT_KEYS}")
        for key in keys:
            sort = self._sort_key(key)
            if sort is None:
                dropped.append(key)
            else:
                kept.append(key)
                sorts.append(sort)
        if dropped and self.strict:
            raise Unsupported(f"Cannot sort by {', '.join(dropped)}: unknown or not sortable")
        if dropped:
            self.query.ignored.append(("_sort", ",".join(dropped)))
        self.query.sort = tuple(sorts)
        if kept:
            self._applied("_sort", ",".join(kept))

    def _sort_key(self, key: str) -> Sort | None:
        descending = key.startswith("-")
        code = key[1:] if descending else key
        if not code:
            raise bad("_sort", f"empty sort key in {key!r}")
        if code in ("_id", "_lastUpdated"):
            return Sort(None, descending, cast(Literal["_id", "_lastUpdated"], code))
        try:
            param = self.lookup(self.query.types, code)
        except UnknownParameter:
            return None
        if param.type not in _SORTABLE or param.expression is None:
            return None
        return Sort(param, descending)

    def _include(self, name: str, code: str, modifier: str, value: str) -> None:
        if modifier not in ("", "iterate", "recurse") or name.count(":") > 1:
            raise Unsupported(f"The modifier :{modifier} is not supported for '{code}'")
        iterate = modifier != ""
        canonical = code + (":iterate" if iterate else "")
        if (canonical, value) in self._includes:
            return  # the same include again adds nothing
        if len(self._includes) >= MAX_INCLUDES:
            raise too_costly(
                code, f"more than {MAX_INCLUDES} distinct _include and _revinclude values"
            )
        includes = self._include_list(name, value, code == "_revinclude", iterate)
        self._includes.add((canonical, value))
        new = [i for i in includes if i not in self.query.includes]
        self.query.includes = (*self.query.includes, *new)
        self._applied(canonical, value)

    def _include_list(self, name: str, value: str, reverse: bool, iterate: bool) -> list[Include]:
        if value == "*":
            if reverse:  # every resource that refers to a match, whatever its type
                return [Include("*", None, reverse=True, iterate=iterate)]
            return [Include(t, None, iterate=iterate) for t in self.query.types]
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise bad(name, f"{value!r} is not SourceType:parameter[:TargetType]")
        source, code = parts[0], parts[1]
        if not is_resource_type(source):
            raise bad(name, f"{source!r} is not a resource type")
        param = None
        if code != "*":
            param = self.lookup((source,), code)
            if param.type != "reference":
                raise bad(name, f"'{code}' is not a reference parameter of {source}")
        target = parts[2] if len(parts) == 3 else None
        if target is not None and not (
            is_resource_type(target) and (param is None or accepts(target, param.targets))
        ):
            raise bad(name, f"{target!r} is not a target type of {source}:{code}")
        return [Include(source, param, target, reverse, iterate)]
