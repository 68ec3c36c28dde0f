"""Unexpected failures as OperationOutcomes (https://hl7.org/fhir/R4/operationoutcome.html).

A store out of space refuses the write with ``507 Insufficient Storage``
(https://www.rfc-editor.org/rfc/rfc4918#section-11.5) and the issue code ``no-store``
("the persistent store is unavailable", https://hl7.org/fhir/R4/valueset-issue-type.html):
nothing of the request is stored (the store's transaction is rolled back), and the same
request succeeds once space is freed. SQLite reports it as ``SQLITE_FULL`` (the disk, or
``PRAGMA max_page_count``); MongoDB as ``OutOfDiskSpace`` (code 14031). Any other failure
is a ``500`` without internals, logged with its traceback.
"""

from __future__ import annotations

import logging
import sqlite3

from pymongo.errors import PyMongoError

from resources.errors import FhirError

log = logging.getLogger("fhir_server")

_MONGO_OUT_OF_DISK_SPACE = 14031
"""MongoDB's error code ``OutOfDiskSpace``."""


def storage_full(error: BaseException) -> bool:
    """Whether ``error`` is the store saying it has no space left."""
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    if isinstance(error, PyMongoError):
        return getattr(error, "code", None) == _MONGO_OUT_OF_DISK_SPACE
    return False


def unexpected_failure(error: BaseException, where: str) -> FhirError:
    """The error to answer for an exception no interaction turned into a FhirError,
    logged (``where``: the request or entry it happened in)."""
    if storage_full(error):
        log.error("storage full in %s: %s", where, error)
        return FhirError(
            507, "no-store", "The server has no storage space left; nothing was stored"
        )
    log.error("unexpected failure in %s", where, exc_info=error)
    return internal_error()


def internal_error() -> FhirError:
    return FhirError(500, "exception", "Internal server error; the failure has been logged")
