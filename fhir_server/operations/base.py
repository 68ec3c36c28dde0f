"""What an operation module declares and what its handler gets
(https://hl7.org/fhir/R4/operations.html); see :mod:`fhir_server.operations`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from capability.support import OperationDefinition, OperationParameter
from fhir_server.interactions.context import Context, FhirResponse
from smart_auth.scopes import AccessPolicy

__all__ = [
    "Context",
    "ExtraRoute",
    "FhirResponse",
    "Invocation",
    "Operation",
    "OperationDefinition",
    "OperationParameter",
    "policy_of",
]


@dataclass(frozen=True)
class Invocation:
    """One call of an operation: which definition (level), how, on what, with what."""

    definition: OperationDefinition
    method: str
    """``GET`` or ``POST``."""
    type: str | None = None
    """The resource type of a type- or instance-level call."""
    id: str | None = None
    """The id of an instance-level call (checked: a valid FHIR id)."""
    params: list[tuple[str, str]] = field(default_factory=list)
    """The parameters in order, repeats kept: the query string's, then those of a POSTed
    ``Parameters`` resource (primitive values as their JSON text, ``true``/``false``,
    a ``valueReference`` as its ``reference``)."""
    body: dict[str, Any] | None = None
    """The POSTed ``Parameters`` resource (for ``part`` and ``resource`` parameters)."""

    def values(self, name: str) -> list[str]:
        """Every value of parameter ``name``."""
        return [value for key, value in self.params if key == name]

    def value(self, name: str) -> str | None:
        """The last value of parameter ``name`` (None when absent)."""
        found = self.values(name)
        return found[-1] if found else None


OperationResult = FhirResponse | Response
"""A FHIR response (rendered like an interaction's), or a ready Starlette response (a
file download)."""

OperationHandler = Callable[[Context, Invocation], Awaitable[OperationResult]]
RouteHandler = Callable[..., Awaitable[OperationResult]]
"""``handler(ctx, method, **path_params)``."""


@dataclass(frozen=True)
class ExtraRoute:
    """An endpoint an operation owns besides its invocation paths, e.g. the status URL
    of an asynchronous request (https://hl7.org/fhir/R4/async.html). ``path`` is below
    the FHIR base and starts with ``/$`` (``/$export-status/{job}``); ``{name}``
    segments are handed to the handler as keyword arguments. It goes through the access
    policy like every FHIR request (``ctx.store`` is guarded)."""

    methods: tuple[str, ...]
    path: str
    handler: RouteHandler


@dataclass(frozen=True)
class Operation:
    """An operation module's declaration: its definitions (one per level it is offered
    at), the handler every level calls, and the extra endpoints it owns."""

    definitions: tuple[OperationDefinition, ...]
    handler: OperationHandler
    routes: tuple[ExtraRoute, ...] = ()
    media: tuple[str, ...] = ()
    """Media types besides FHIR JSON that the handler renders itself (``application/pdf``):
    an ``Accept`` or ``_format`` asking for one of them is handed to the handler instead
    of being refused with ``406``."""


def policy_of(ctx: Context) -> AccessPolicy | None:
    """The caller's SMART access policy (None when authorization is off)."""
    policy = getattr(ctx.store, "policy", None)
    return policy if isinstance(policy, AccessPolicy) else None
