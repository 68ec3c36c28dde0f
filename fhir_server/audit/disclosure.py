"""The patients whose data a bulk export (``$export``, FHIR Bulk Data Access,
https://hl7.org/fhir/uv/bulkdata/export.html) put in its files, in the audit trail.

The kick-off request is audited by the hook like any operation, but its answer holds no
data: the resources go to NDJSON files that a background job writes later. The job
(``fhir_server.operations.export_run``) notes each resource it writes here
(:meth:`Disclosure.note`: the patients the resource is about: itself for a Patient, and
every Patient its references name, found in its bytes with one regular expression) and,
once complete, hands the trail
one :class:`Disclosed`; the trail's writer turns it into one AuditEvent per patient
(:func:`fhir_server.audit.balp.export_event`, BALP's Privacy Disclosure at the source,
https://profiles.ihe.net/ITI/BALP/): who asked (the kick-off's user, app and address),
the query, the job and the files holding resources of that patient. Each event names one
patient, so each patient finds the export in her access report
(``AuditEvent?patient=Patient/X``) and no one else's; an event stays small however big
the export is (a file per resource type and size limit, not per resource).
"""

from __future__ import annotations

import re
import time
from typing import Any, NamedTuple

from fhir_server.audit.hook import OPERATION
from fhir_server.audit.record import Activity, Captured
from fhir_server.request_log import POLICY_KEY

_PATIENT_REFERENCE = re.compile(
    rb'"reference"\s*:\s*"(?:[^"\\]*/)?Patient/([A-Za-z0-9\-.]{1,64})[/"]'
)
"""The ids of the Patients a stored resource refers to (``Reference.reference``, relative
or absolute, versioned or not): one C call per resource (an export writes ~100,000 a
second; the same pattern as ``fhir_server.operations.export_blocks``)."""


class Disclosed(NamedTuple):
    """A completed export, as queued on the trail."""

    activity: Activity
    """The kick-off (who, the request), ``recorded`` when the export completed."""
    job: str
    patients: dict[bytes, set[str]]
    """A Patient's id -> the resource types of hers in the files."""
    files: dict[str | None, list[str]]
    """Resource type -> the output files of that type (None: the files of blocks of an
    export organized by patient, which hold every type)."""


class Disclosure:
    """The patients of one export job so far."""

    def __init__(self, trail: Any, code: str, scope: Any) -> None:
        self.trail = trail
        self._request = Captured(
            code,
            scope.get(POLICY_KEY),
            scope.get("client"),
            200,
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            None,
            None,
            time.time(),
            [],
        )
        self.patients: dict[bytes, set[str]] = {}

    @classmethod
    def of_request(cls) -> Disclosure | None:
        """The disclosure of the operation being run (in its request, or a task started
        there); None when audit is off or not in an audited operation."""
        running = OPERATION.get()
        return cls(*running) if running is not None else None

    def note(self, stored: Any) -> None:
        """A resource written to a file (a ``StoredVersion``)."""
        type_ = stored.type
        patients = self.patients
        ids = _PATIENT_REFERENCE.findall(stored.content or b"")
        if type_ == "Patient":
            ids.append(stored.id.encode())
        for id_ in ids:
            types = patients.get(id_)
            if types is None:
                types = patients[id_] = set()
            types.add(type_)

    def finish(self, job: Any) -> None:
        """Queue the AuditEvents of a completed job (``export_jobs.Job``)."""
        files: dict[str | None, list[str]] = {}
        for item in job.output:
            files.setdefault(item.get("type"), []).append(item["file"])
        activity = self._request.activity()
        activity.recorded = time.time()
        self.trail.record_disclosed(Disclosed(activity, job.id, self.patients, files))
