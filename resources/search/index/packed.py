"""Index rows and sort keys as plain tuples, for sending between processes.

A bulk import extracts index values in worker processes and writes them in one process
(``fhir_server.bulk_import``). The row classes of :mod:`resources.search.model` are
slotted dataclasses: pickling them costs more than extracting them, and even building
them again from tuples costs the writer ~100 µs a resource. So they travel as tuples
(:func:`pack_rows`, :func:`pack_sort_keys`) and arrive as :class:`PackedRows` /
:class:`PackedSortKeys`: sequences of the same rows, made from the tuples only when
someone reads them, whose tuples a store may read directly instead (the SQLite store
does: a packed row is ``(kind, code, *columns)``, the columns of its row class in field
order; a composite's columns are its packed parts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Any, overload

from resources.search.model import (
    CompositeRow,
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    SortKey,
    StringRow,
    TokenRow,
    UriRow,
)

ROW_CLASSES: tuple[type, ...] = (
    TokenRow,
    StringRow,
    DateRow,
    ReferenceRow,
    QuantityRow,
    NumberRow,
    UriRow,
    CompositeRow,
)
"""Row class by kind (the first element of a packed row)."""

KIND = {cls: kind for kind, cls in enumerate(ROW_CLASSES)}
COMPOSITE = KIND[CompositeRow]
FIELDS = [attrgetter(*cls.__slots__) for cls in ROW_CLASSES]  # type: ignore[attr-defined]
"""By kind: the field values of a row, as a tuple in field order."""

PackedRow = tuple[Any, ...]
PackedKey = tuple[str, Any, Any]


def pack_row(row: IndexRow) -> PackedRow:
    kind = KIND[type(row)]
    if kind == COMPOSITE:
        return (kind, row.code, tuple(pack_row(part) for part in row.parts))  # type: ignore[union-attr]
    return (kind, *FIELDS[kind](row))


def unpack_row(packed: PackedRow) -> IndexRow:
    kind = packed[0]
    if kind == COMPOSITE:
        return CompositeRow(packed[1], tuple(unpack_row(part) for part in packed[2]))
    return ROW_CLASSES[kind](*packed[1:])  # type: ignore[no-any-return]


def pack_rows(rows: Sequence[IndexRow]) -> list[PackedRow]:
    return [pack_row(row) for row in rows]


def pack_sort_keys(keys: Sequence[SortKey]) -> list[PackedKey]:
    return [(k.code, k.low, k.high) for k in keys]


class _Lazy(Sequence[Any]):
    __slots__ = ("_items", "packed")

    def __init__(self, packed: list[Any]) -> None:
        self.packed = packed
        """The tuples, as packed."""
        self._items: list[Any] | None = None

    def _unpack(self, packed: list[Any]) -> list[Any]:
        raise NotImplementedError

    @property
    def items(self) -> list[Any]:
        if self._items is None:
            self._items = self._unpack(self.packed)
        return self._items

    def __len__(self) -> int:
        return len(self.packed)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.items[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Lazy):
            return self.items == other.items
        return isinstance(other, list | tuple) and self.items == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.items!r})"


class PackedRows(_Lazy):
    """Index rows made from packed tuples when first read."""

    __slots__ = ()

    def _unpack(self, packed: list[PackedRow]) -> list[IndexRow]:
        return [unpack_row(row) for row in packed]


class PackedSortKeys(_Lazy):
    """Sort keys made from ``(code, low, high)`` tuples when first read."""

    __slots__ = ()

    def _unpack(self, packed: list[PackedKey]) -> list[SortKey]:
        return [SortKey(code, low, high) for code, low, high in packed]
