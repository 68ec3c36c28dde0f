"""Workflow rules: the business rules of the portal's workflows, applied to every write
(``../shared/DESIGN.md``, "Operations, workflows and events").

One module per workflow in this package (``scheduling.py``, ``messaging.py``,
``refills.py``, ``billing.py``, ...), each registering its rules with
:func:`~fhir_server.workflows.base.rule`; every module of the package is loaded by
:func:`load_rules`. See :mod:`fhir_server.workflows.base` for what a rule sees and may
do, and :mod:`fhir_server.workflows.store` for how the rules run inside the write path
(the API through ``fhir_server.routes``, operations through their context's store, and
bulk import).

State lives in FHIR resources (Slot.status, Task.status, Communication.received,
Invoice.status), never in side tables an app cannot read.
"""

from __future__ import annotations

from fhir_server.workflows.base import Caller, Change, Transaction, load_rules, rule
from fhir_server.workflows.store import WorkflowStore

__all__ = ["Caller", "Change", "Transaction", "WorkflowStore", "load_rules", "rule"]
