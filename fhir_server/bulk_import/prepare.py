"""Everything an import does to one resource before the write, runnable in a worker.

Each resource goes the way of an API update (https://hl7.org/fhir/R4/http.html#update):
parsed losslessly, validated (``check_valid``), given its id (its own, or one derived from
its content so that a re-import finds it), indexed (``index_entries``: rows, sort keys,
compartments) and serialised once with a hole for its ``versionId`` and ``lastUpdated``
(``content_template``). What comes out is :class:`Prepared`: all the store's
``write_batch`` needs, so the process that writes does nothing else.

With worker processes, a chunk of prepared resources travels back as plain tuples
(:func:`prepare_chunk`, :func:`unpack`, :mod:`resources.search.index.packed`): pickling
the slotted row classes themselves costs more than extracting them, and the SQLite store
writes packed rows without making them again. A resource with a conditional reference
(``Practitioner?identifier=…``, https://hl7.org/fhir/R4/http.html#trules) needs the
store to be resolved: the writer sends along the references it has resolved already
(``known``), which are rewritten here; when some remain, its index and content are made
by the writer, after it resolves them (``conditional`` is set, nothing else is sent).
A resource tried again (it waited for the targets of its references) was validated the
first time: ``validate`` is off.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.bulk_import.report import NOT_RESOURCE
from fhir_server.interactions.context import check_id
from fhir_server.interactions.references import (
    conditional_reference,
    iter_references,
    rewrite_references,
)
from fhir_server.interactions.write import (
    check_valid,
    content_template,
    index_entries,
    template_builder,
)
from fhir_server.storage.base import IndexEntries, WriteRequest
from resources import fhir_json
from resources.errors import FhirError
from resources.search.index.packed import (
    PackedRows,
    PackedSortKeys,
    pack_rows,
    pack_sort_keys,
)


@dataclass(slots=True)
class Prepared:
    """One resource ready to be written, or what is wrong with it."""

    type: str | None
    id: str | None
    error: str | None = None
    resource: dict[str, Any] | None = None
    """The parsed resource, when it has conditional references (else not kept)."""
    head: bytes = b""
    tail: bytes = b""
    index: IndexEntries | None = None
    conditional: bool = False
    """It has conditional references: the writer resolves them, then indexes it."""

    def request(self) -> WriteRequest:
        """The write (an update by id) of a resource prepared without conditional refs."""
        assert self.type is not None and self.id is not None
        build = template_builder(self.head, self.tail)
        return WriteRequest(self.type, self.id, "update", build, index=self.index)


def parse_item(data: bytes, validate: bool = True) -> Prepared:
    """Parse and validate one resource; its id set (derived from the content if absent)."""
    type_: str | None = None
    try:
        resource = fhir_json.loads_resource(data)
        found = resource.get("resourceType")
        if found is None:  # e.g. a line of a bulk-data client's log.ndjson
            return Prepared(None, None, NOT_RESOURCE)
        type_ = found if isinstance(found, str) else None
        if type_ is None:
            return Prepared(None, None, "the resource has no resourceType")
        id_ = resource.get("id")
        if id_ is None:  # derive one from the content, so that a re-import finds it
            id_ = hashlib.sha256(fhir_json.dumps(resource)).hexdigest()[:32]
            resource = {**resource, "id": id_}
        if not isinstance(id_, str):
            return Prepared(type_, None, "id must be a string")
        check_id(id_)
        if validate:
            check_valid(resource)
    except FhirError as exc:
        return Prepared(type_, None, message(exc))
    return Prepared(type_, id_, None, resource)


def prepare_item(
    data: bytes, known: dict[str, str] | None = None, validate: bool = True
) -> Prepared:
    """Parse, validate, index and serialise one resource (see the module docstring);
    ``known``: conditional references already resolved (``Type?…`` -> ``Type/id``)."""
    prepared = parse_item(data, validate)
    resource = prepared.resource
    if resource is None or prepared.id is None:
        return prepared
    if known:  # after the id is derived (if absent) from the content as it was read
        rewrite_references(resource, known.get)
    if b"?" in data and has_conditional_references(resource):
        prepared.conditional = True
        return prepared
    try:
        prepared.index = index_entries(resource, prepared.id)
        prepared.head, prepared.tail = content_template(resource, prepared.id)
    except FhirError as exc:
        return Prepared(prepared.type, None, message(exc))
    prepared.resource = None
    return prepared


def has_conditional_references(resource: dict[str, Any]) -> bool:
    return any(conditional_reference(r) is not None for r in iter_references(resource))


def message(exc: FhirError) -> str:
    """The diagnostics of an error, each prefixed with the element it is about."""
    parts = []
    for issue in exc.issues:
        where = f"{', '.join(issue.expression)}: " if issue.expression else ""
        parts.append(f"{where}{issue.diagnostics}")
    return "; ".join(parts) or exc.diagnostics


# -- worker processes ------------------------------------------------------------------


def start_worker() -> None:
    """Process pool initializer: what is loaded now (definitions, compiled validators)
    lives as long as the worker, so the cyclic GC need not scan it again and again."""
    gc.collect()
    gc.freeze()


def prepare_chunk(
    chunk: Sequence[bytes],
    known: dict[int, dict[str, str]] | None = None,
    validate: bool = True,
) -> list[tuple[Any, ...]]:
    """Prepare a chunk in a worker; each resource as :func:`pack` makes it (``known``:
    the resolved references of the resources at these positions)."""
    known = known or {}
    return [pack(prepare_item(data, known.get(i), validate)) for i, data in enumerate(chunk)]


def pack(prepared: Prepared) -> tuple[Any, ...]:
    """A :class:`Prepared` as plain tuples (cheap to pickle)."""
    if prepared.error is not None or prepared.id is None:
        return (prepared.type, None, prepared.error or "invalid")
    if prepared.conditional:
        return (prepared.type, prepared.id, None, True)
    index = prepared.index
    assert index is not None
    rows = pack_rows(index.rows)
    keys = pack_sort_keys(index.sort_keys)
    compartments = tuple(index.compartments)
    head, tail = prepared.head, prepared.tail
    return (prepared.type, prepared.id, None, False, head, tail, rows, keys, compartments)


def unpack(packed: tuple[Any, ...]) -> Prepared:
    """The :class:`Prepared` that :func:`pack` was given (without the parsed resource)."""
    type_, id_, error = packed[0], packed[1], packed[2]
    if error is not None:
        return Prepared(type_, None, error)
    if packed[3]:
        return Prepared(type_, id_, conditional=True)
    _t, _i, _e, _c, head, tail, rows, keys, compartments = packed
    index = IndexEntries(PackedRows(rows), PackedSortKeys(keys), compartments)
    return Prepared(type_, id_, None, None, head, tail, index)
