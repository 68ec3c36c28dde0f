"""The durable outbox: one event per committed version, written by the store in the same
transaction as the version (DESIGN.md, "Operations, workflows and events").

An event names the version (``seq``, type, id, version, method); its content is in the
history, never copied. Readers keep their own position in the outbox (a cursor per
Subscription, :class:`CursorState`) and claim it with a compare-and-set lease, so that
one process at a time works on a subscription, whichever server it runs in.

Both stores implement :class:`Outbox` (``SQLiteStore.outbox``, ``MongoStore.outbox``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Event:
    """A committed version: ``seq`` is its history sequence number (commit order)."""

    seq: int
    type: str
    id: str
    version: int
    method: str


@dataclass(frozen=True, slots=True)
class CursorState:
    """A reader's place in the outbox: the last event ``position`` it handled, how many
    events it has delivered (``number``: the last event number sent), and its failures."""

    key: str
    position: int
    number: int
    attempts: int = 0
    next_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Notification:
    """What one notification is about: the version's resource (``content``, None when
    it is not sent) or its deletion."""

    type: str
    id: str
    content: bytes | None
    deleted: bool = False

    @property
    def path(self) -> str:
        return f"{self.type}/{self.id}"


class Outbox(Protocol):
    async def last_seq(self) -> int:
        """The seq of the newest event (0 when there is none)."""
        ...

    async def events_after(self, seq: int, limit: int) -> list[Event]:
        """Events with a seq above ``seq``, oldest first."""
        ...

    async def open_cursor(self, key: str, position: int) -> None:
        """Create the cursor ``key`` at ``position``, or move an existing one forward to
        it (events before ``position`` are skipped; its event number goes on)."""
        ...

    async def claim(
        self, keys: Sequence[str], owner: str, now: float, until: float
    ) -> list[CursorState]:
        """Lease the cursors of ``keys`` that are free, expired, or already ``owner``'s to
        ``owner`` until ``until`` (one compare-and-set for all); the ones it holds now."""
        ...

    async def advance(self, key: str, owner: str, position: int, number: int) -> bool:
        """Move ``owner``'s cursor past an event (and its failures are forgotten);
        False when the lease was lost."""
        ...

    async def advance_many(self, owner: str, states: Sequence[tuple[str, int, int]]) -> set[str]:
        """:meth:`advance` for several cursors (``(key, position, number)``) in one write;
        the keys whose lease was lost."""
        ...

    async def failed(self, key: str, owner: str, attempts: int, next_at: float) -> bool:
        """Record a failed delivery and when to try again."""
        ...

    async def release(self, key: str, owner: str) -> None:
        """End ``owner``'s lease (another process may claim the cursor at once)."""
        ...

    async def drop_cursor(self, key: str) -> None: ...

    async def min_position(self, keys: Sequence[str]) -> int | None:
        """The smallest position of the cursors of ``keys`` (None: none of them exists)."""
        ...

    async def seq_updated_before(self, instant: str) -> int:
        """The seq of a newest version last updated before ``instant`` (0: none)."""
        ...

    async def prune(self, through: int) -> int:
        """Delete the events with a seq up to ``through``; how many were deleted."""
        ...
