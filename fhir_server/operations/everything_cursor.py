"""The paging cursor of ``Patient/$everything``
(https://hl7.org/fhir/R4/patient-operation-everything.html): where the next page
starts, and what the record's earlier pages included, so that no resource is included
twice over the pages of a record (``fhir_server.operations.everything``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import orjson

from fhir_server.storage.base import StoredVersion
from resources.errors import invalid


@dataclass(frozen=True)
class Position:
    """Where a page starts: at type level the Patient search's cursor that finds the
    current patient first (None: the first patient); the cursor in the record; and the
    digests of what the record's earlier pages included (``seen``)."""

    patients: str | None = None
    record: str | None = None
    seen: str | None = None

    def encode(self) -> str:
        payload = orjson.dumps({"p": self.patients, "r": self.record, "s": self.seen})
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> Position:
        if not text:
            return cls()
        try:
            payload = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            values = (payload["p"], payload["r"], payload.get("s"))
            if not all(v is None or isinstance(v, str) for v in values):
                raise TypeError
            position = cls(*values)
            position.included()
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise invalid("Invalid paging cursor (_cursor)", "_cursor") from None
        return position

    def included(self) -> set[bytes]:
        """The digests of what the record's earlier pages included."""
        if not self.seen:
            return set()
        raw = base64.urlsafe_b64decode(self.seen + "=" * (-len(self.seen) % 4))
        if len(raw) % _DIGEST:
            raise ValueError("digests")
        return {raw[i : i + _DIGEST] for i in range(0, len(raw), _DIGEST)}


_DIGEST = 6
"""Bytes of a resource's digest in a cursor (48 bits: a record includes a few dozen)."""


def digest_of(stored: StoredVersion) -> bytes:
    return hashlib.blake2b(f"{stored.type}/{stored.id}".encode(), digest_size=_DIGEST).digest()


def digests(seen: set[bytes]) -> str | None:
    if not seen:
        return None
    return base64.urlsafe_b64encode(b"".join(sorted(seen))).decode().rstrip("=")


def not_yet(included: list[StoredVersion], seen: set[bytes]) -> list[StoredVersion]:
    """Those of ``included`` that no earlier page of the record included (``seen`` gets
    them)."""
    fresh = []
    for stored in included:
        digest = digest_of(stored)
        if digest not in seen:
            seen.add(digest)
            fresh.append(stored)
    return fresh
