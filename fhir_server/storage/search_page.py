"""What a store returns for a search, and the opaque paging cursor shared by the stores.

Paging is keyset paging (https://hl7.org/fhir/R4/http.html#paging leaves the mechanism to
the server): a cursor holds the sort key of the last (or first) row of a page and a
direction, so a page costs the same wherever it is and stays stable while data changes.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from fhir_server.storage.base import StoredVersion
from resources.errors import invalid


@dataclass(frozen=True, slots=True)
class Cursor:
    key: tuple[Any, ...]
    direction: Literal["next", "prev"] = "next"

    def encode(self) -> str:
        payload = {"k": [_encode_value(v) for v in self.key], "d": self.direction[0]}
        return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            payload = orjson.loads(raw)
            key = tuple(_decode_value(v) for v in payload["k"])
            direction: Literal["next", "prev"] = "prev" if payload["d"] == "p" else "next"
        except (ValueError, KeyError, TypeError):
            raise invalid("Invalid paging cursor (_cursor)", "_cursor") from None
        return cls(key, direction)


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"f": repr(value)}
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot encode {value!r} in a cursor")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "f" in value:
        return float(value["f"])
    if isinstance(value, dict):
        return bytes.fromhex(value["b"])
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError("bad cursor value")


@dataclass
class SearchPage:
    """One page of matches, the links' cursors, the total, and included resources."""

    entries: list[StoredVersion]
    total: int | None = None
    next_cursor: Cursor | None = None
    prev_cursor: Cursor | None = None
    included: list[StoredVersion] = field(default_factory=list)
