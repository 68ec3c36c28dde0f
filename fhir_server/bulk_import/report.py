"""What an import did: counts per resource type, the problems found (with where), and a
progress line on stderr while it runs."""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TextIO

OUTCOMES = ("created", "updated", "unchanged", "invalid")
MAX_MESSAGES = 1000
"""Problems kept with their message (the rest are only counted), so memory stays bounded."""


@dataclass
class ImportReport:
    """Counts per type and outcome (created, updated, unchanged, invalid), plus problems."""

    counts: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[tuple[str, str]] = field(default_factory=list)
    problem_count: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def count(self, type_: str, outcome: str, n: int = 1) -> None:
        self.counts[type_][outcome] += n

    def problem(self, where: str, message: str, type_: str | None = None) -> None:
        self.problem_count += 1
        if type_ is not None:
            self.count(type_, "invalid")
        if len(self.problems) < MAX_MESSAGES:
            self.problems.append((where, message))

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.counts.values())

    @property
    def written(self) -> int:
        return self.total("created") + self.total("updated")

    @property
    def processed(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def summary(self) -> str:
        """A table of counts per type, then totals and the problems."""
        lines = [f"{'type':<28}" + "".join(f"{o:>11}" for o in OUTCOMES)]
        for type_ in sorted(self.counts):
            row = self.counts[type_]
            lines.append(f"{type_:<28}" + "".join(f"{row[o]:>11,}" for o in OUTCOMES))
        lines.append(f"{'total':<28}" + "".join(f"{self.total(o):>11,}" for o in OUTCOMES))
        rate = self.processed / self.seconds if self.seconds else 0.0
        lines.append(
            f"{self.processed:,} resources in {self.seconds:.1f} s ({rate:,.0f}/s);"
            f" {self.problem_count:,} problem(s), {self.skipped:,} entr(ies) skipped"
        )
        for where, message in self.problems:
            lines.append(f"  {where}: {message}")
        if self.problem_count > len(self.problems):
            lines.append(f"  … and {self.problem_count - len(self.problems):,} more")
        return "\n".join(lines)


class Progress:
    """A progress line on stderr: resources so far, share of the input bytes, rate."""

    def __init__(self, total_bytes: int, stream: TextIO | None = None, enabled: bool = True):
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = self._stream.isatty()
        self._total = total_bytes
        self._bytes = 0
        self._count = 0
        self._start = time.monotonic()
        self._shown = 0.0
        self._shown_count = 0

    def advance(self, resources: int, nbytes: int) -> None:
        self._count += resources
        self._bytes += nbytes
        now = time.monotonic()
        if self._enabled and now - self._shown >= (0.25 if self._tty else 10.0):
            self._shown = now
            self._show(now, end="\r" if self._tty else "\n")

    def close(self) -> None:
        if self._enabled and self._count and (self._tty or self._count != self._shown_count):
            self._show(time.monotonic(), end="\n")

    def _show(self, now: float, end: str) -> None:
        self._shown_count = self._count
        elapsed = max(now - self._start, 1e-9)
        share = f" {min(self._bytes / self._total, 1.0):6.1%}" if self._total else ""
        bar = ""
        if self._total and self._tty:
            done = int(30 * min(self._bytes / self._total, 1.0))
            bar = " [" + "#" * done + "." * (30 - done) + "]"
        self._stream.write(
            f"{bar}{share} {self._count:,} resources, {self._count / elapsed:,.0f}/s{end}"
        )
        self._stream.flush()
