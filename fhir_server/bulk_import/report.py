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
MAX_NAMED_FILES = 10
"""Files named in a notice about skipped files (the rest are counted)."""
NOT_RESOURCE = "skipped: not a FHIR resource (no resourceType)"
"""What an item or a prepared resource says when its JSON object has no ``resourceType``
(e.g. the lines of a bulk-data client's ``log.ndjson``): skipped with a notice."""


@dataclass
class ImportReport:
    """Counts per type and outcome (created, updated, unchanged, invalid), plus problems."""

    counts: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[tuple[str, str]] = field(default_factory=list)
    problem_count: int = 0
    skipped: int = 0
    seconds: float = 0.0
    not_resources: Counter[str] = field(default_factory=Counter)
    """Lines or entries without ``resourceType`` (not FHIR resources), by file."""
    ignored_files: list[str] = field(default_factory=list)
    """Files in the folders imported that are neither NDJSON nor JSON."""
    waited: int = 0
    """Resources whose conditional references waited for resources read later."""
    passes: int = 1
    """Passes over the input: the first, then one per retry of what waited."""

    def count(self, type_: str, outcome: str, n: int = 1) -> None:
        self.counts[type_][outcome] += n

    def problem(self, where: str, message: str, type_: str | None = None) -> None:
        self.problem_count += 1
        if type_ is not None:
            self.count(type_, "invalid")
        if len(self.problems) < MAX_MESSAGES:
            self.problems.append((where, message))

    def not_resource(self, where: str) -> None:
        """``where`` (``file:line``, ``file#entry[i]`` or a file) is not a FHIR resource."""
        self.not_resources[_file_of(where)] += 1

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
        lines.extend(self.notices())
        for where, message in self.problems:
            lines.append(f"  {where}: {message}")
        if self.problem_count > len(self.problems):
            lines.append(f"  … and {self.problem_count - len(self.problems):,} more")
        return "\n".join(lines)

    def notices(self) -> list[str]:
        """What was skipped without being a problem, and resources that waited."""
        lines = []
        if self.waited:
            lines.append(
                f"{self.waited:,} resource(s) waited for the targets of their conditional"
                f" references, read later ({self.passes} passes)"
            )
        for path, n in sorted(self.not_resources.items()):
            what = f"{n:,} line(s) without resourceType (not FHIR resources)"
            lines.append(f"  notice: {path}: {what} skipped")
        if self.ignored_files:
            named = ", ".join(self.ignored_files[:MAX_NAMED_FILES])
            more = len(self.ignored_files) - MAX_NAMED_FILES
            if more > 0:
                named += f" and {more:,} more"
            lines.append(f"  notice: not NDJSON or JSON, skipped: {named}")
        return lines


def _file_of(where: str) -> str:
    """The file of ``file:line`` or ``file#entry[i]``."""
    if "#entry[" in where:
        return where.rsplit("#entry[", 1)[0]
    path, _, line = where.rpartition(":")
    return path if path and line.isdigit() else where


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

    def note(self, text: str) -> None:
        """A line of its own (after the progress line, which goes on)."""
        if self._enabled:
            self._stream.write(("\n" if self._tty else "") + text + "\n")
            self._stream.flush()

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
