"""Operations (https://hl7.org/fhir/R4/operations.html): one module per operation.

How to add one (``$everything`` as the example):

1. Write ``fhir_server/operations/everything.py`` with its declaration::

       from fhir_server.operations.base import (
           Context, FhirResponse, Invocation, Operation, OperationDefinition,
           OperationParameter,
       )

       async def handle(ctx: Context, call: Invocation) -> FhirResponse:
           ...  # call.type, call.id, call.value("_since"), call.values("_type")
           ...  # read through ctx.store: it is the GuardedStore of the caller's token
           return FhirResponse(200, bundle)

       OPERATION = Operation(
           definitions=(
               OperationDefinition(
                   "everything",
                   "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                   "instance",
                   resource_types=("Patient",),
                   parameters=(OperationParameter("_since", "instant"),),
                   scopes=("patient/*.rs", "user/*.rs", "system/*.rs"),
               ),
           ),
           handler=handle,
       )

2. Add ``everything.OPERATION`` to :data:`OPERATIONS` below.

That is all: :func:`support_table` lists each definition, so the routes
(``[base]/$name``, ``[base]/Type/$name``, ``[base]/Type/{id}/$name``, for the definition's
``methods``) and the CapabilityStatement (``rest.operation`` / ``rest.resource.operation``
with the canonical) come from the same declaration.

The handler gets the request's :class:`~fhir_server.interactions.context.Context` (store,
settings, base URL, headers, query parameters) and an :class:`~.base.Invocation`: the
definition it was called through (its level), the method, type and id, and the
parameters of the query and of a POSTed ``Parameters`` body merged into one list of
``(name, value)``. ``ctx.store`` is the caller's ``GuardedStore`` (with SMART on): every
read, search, history and write carries the token's grants, so the compartment rules
apply to what the operation returns; :func:`~.base.policy_of` gives the token's policy
for checks of its own (a level only some callers may use). A ``FhirError`` raised
anywhere becomes an OperationOutcome with its status; anything else a 500 without
internals. A handler returns a ``FhirResponse`` (rendered like an interaction's, in
``application/fhir+json``) or a ready Starlette ``Response`` (a file). Endpoints an
operation owns besides its invocation paths (the status URL of an async request) are
declared as ``ExtraRoute`` in ``Operation.routes`` and are served the same way.
"""

from __future__ import annotations

from capability.support import SupportTable
from capability.support import support_table as _type_table
from fhir_server.operations import (
    book,
    education,
    everything,
    export,
    find,
    get_ws_binding_token,
    immunization_record,
    pay,
    subscription_status,
    summary,
    visit_summary,
)
from fhir_server.operations.base import Operation

OPERATIONS: tuple[Operation, ...] = (
    export.OPERATION,
    everything.OPERATION,
    pay.OPERATION,
    summary.OPERATION,
    immunization_record.OPERATION,
    visit_summary.OPERATION,
    education.OPERATION,
    find.OPERATION,
    book.OPERATION,
    get_ws_binding_token.OPERATION,
    subscription_status.STATUS_OPERATION,
    subscription_status.EVENTS_OPERATION,
)
"""Every operation the server offers."""


def support_table() -> SupportTable:
    """The support table with every operation of :data:`OPERATIONS`: what the routes and
    the CapabilityStatement read."""
    return _type_table().with_operations(tuple(d for op in OPERATIONS for d in op.definitions))
