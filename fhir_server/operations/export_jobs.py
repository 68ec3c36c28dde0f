"""The records of ``$export`` jobs (https://hl7.org/fhir/uv/bulkdata/export.html): one
folder per job under ``FHIR_SERVER_EXPORT_DIR``, with ``job.json`` (its state, written to
a temporary name and renamed, so it is always whole) and its files.

A file is written as ``NAME.part`` and renamed when it is complete; the manifest is
only given once the job's state is ``complete``. A running job writes a heartbeat into
its record every few seconds; a job ``in-progress`` whose server process is gone, or
whose heartbeat is older than :data:`STALE_AFTER`, was interrupted (the server stopped
or was killed, ``kill -9`` included) and is reported failed, its files removed.
Every server process sharing the folder sees the same jobs.
Jobs whose time is up (``FHIR_SERVER_EXPORT_TTL`` after they ended) are removed with
their files whenever jobs are looked at.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fhir_server.config import Settings, parse_duration
from fhir_server.storage.sqlite import path_from_url

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

HEARTBEAT = 2.0
"""Seconds between a running job's heartbeats."""
STALE_AFTER = 30.0
"""A running job whose heartbeat is older than this was interrupted."""

_JOB_ID = frozenset("0123456789abcdef")
_SAVING = threading.Lock()
"""Job records are written one at a time in this process (a heartbeat on a thread and
the job's final state)."""
_SWEEP_EVERY = 60.0
_swept = 0.0


def export_dir(settings: Settings) -> Path:
    """``FHIR_SERVER_EXPORT_DIR``, or ``exports`` next to the SQLite file, or
    ``./data/exports``."""
    if settings.export_dir:
        return Path(settings.export_dir)
    if settings.storage.startswith("sqlite:///"):
        return path_from_url(settings.storage).parent / "exports"
    return Path("data") / "exports"


@dataclass
class Job:
    """What ``job.json`` holds."""

    id: str
    owner: str
    request: str
    transaction_time: str
    state: str = "in-progress"
    """``in-progress``, ``complete`` or ``failed``."""
    created: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.time)
    finished: float | None = None
    progress: str = "queued"
    output: list[dict[str, Any]] = field(default_factory=list)
    """``{"type", "file", "count"}`` of each complete file."""
    deleted: list[dict[str, Any]] = field(default_factory=list)
    error: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    """The OperationOutcome of a failed job."""
    organized_by: str | None = None
    """``organizeOutputBy`` (``Patient``) of a job whose files are blocks."""
    pid: int = field(default_factory=os.getpid)
    """The server process running it: when that process is gone, so is the job."""


class Jobs:
    """The jobs in one folder."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.ttl = parse_duration(settings.export_ttl)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def files(self, job_id: str) -> Path:
        return self.root / job_id / "files"

    def create(
        self, owner: str, request: str, transaction_time: str, limit: int | None = None
    ) -> Job | None:
        """A new job in progress; None when ``limit`` jobs are running already (counted
        and created under a lock on the folder, so that processes sharing it cannot
        both take the last place)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if limit is not None and self.running() >= limit:
                return None
            job = Job(secrets.token_hex(16), owner, request, transaction_time)
            self.files(job.id).mkdir(parents=True)
            self.save(job)
            return job

    def save(self, job: Job, *, heartbeat: bool = False) -> None:
        """Write the record whole (temporary name, fsync, rename); FileNotFoundError when
        the job's folder is gone (cancelled). A ``heartbeat`` of a job that is no longer
        in progress writes nothing: it never overwrites the final state."""
        folder = self.folder(job.id)
        with _SAVING:
            if heartbeat and job.state != "in-progress":
                return
            temp = folder / f"job.json.{os.getpid()}.{threading.get_ident()}.tmp"
            data = json.dumps(asdict(job)).encode()
            with open(temp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, folder / "job.json")

    def load(self, job_id: str) -> Job | None:
        """The job (an interrupted one reported failed), or None: unknown, or expired."""
        if len(job_id) != 32 or not set(job_id) <= _JOB_ID:
            return None
        try:
            data = json.loads((self.folder(job_id) / "job.json").read_bytes())
        except (OSError, ValueError):
            return None
        job = Job(**data)
        if job.state == "in-progress" and (
            time.time() - job.heartbeat > STALE_AFTER or not _alive(job.pid)
        ):
            self._interrupted(job)
        if job.finished is not None and time.time() > job.finished + self.ttl:
            self.remove(job.id)
            return None
        return job

    def _interrupted(self, job: Job) -> None:
        job.state = "failed"
        job.finished = time.time()
        job.output, job.deleted, job.error = [], [], []
        job.outcome = _outcome(
            "The export was interrupted (the server stopped while it ran); start it again"
        )
        shutil.rmtree(self.files(job.id), ignore_errors=True)
        with contextlib.suppress(OSError):
            self.save(job)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def sweep(self) -> None:
        """Remove expired jobs (and report interrupted ones), at most once a minute."""
        global _swept
        if time.monotonic() - _swept >= _SWEEP_EVERY:
            _swept = time.monotonic()
            self.running()

    def running(self) -> int:
        """Jobs in progress (in every process), after removing expired ones."""
        count = 0
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        for name in names:
            job = self.load(name)
            if job is not None and job.state == "in-progress":
                count += 1
        return count


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine; a folder shared between machines
    relies on the heartbeat)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


def _outcome(text: str, code: str = "exception") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
