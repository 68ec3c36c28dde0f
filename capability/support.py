"""The support table: resource types x interactions x search parameters.

Both the HTTP routes and the CapabilityStatement
(https://hl7.org/fhir/R4/capabilitystatement.html) are generated from this table, so the
statement can never claim what the routes do not serve, nor hide what they do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from typing import Literal

from resources.definitions import RESOURCE_TYPES
from resources.search.model import SearchParam
from resources.search.parameters import search_params
from resources.validation import validator_covers

TYPE_INTERACTIONS: tuple[str, ...] = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
"""Type-level interaction codes (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html)."""

SYSTEM_INTERACTIONS: tuple[str, ...] = ("transaction", "batch", "history-system", "search-system")
"""System-level interaction codes (https://hl7.org/fhir/R4/valueset-system-restful-interaction.html)."""


APPEND_ONLY = frozenset({"AuditEvent"})
"""Types whose resources are never changed or deleted through the API (the audit trail,
``fhir_server.audit``): no update, patch or delete (405), also not as conditional ones."""
NOT_IN_RECORDS = frozenset({"AuditEvent"})
"""The server's access log: not part of a patient's record in ``Patient/$everything`` or a
Patient or Group ``$export`` unless ``_type`` names it (it changes with every look at the
record)."""
_APPEND_ONLY_INTERACTIONS = tuple(
    i for i in TYPE_INTERACTIONS if i not in ("update", "patch", "delete")
)


@dataclass(frozen=True)
class TypeSupport:
    type: str
    interactions: tuple[str, ...]
    versioning: str = "versioned-update"
    read_history: bool = True
    update_create: bool = True
    conditional_create: bool = True
    conditional_update: bool = True
    conditional_delete: str = "multiple"
    search_params: tuple[SearchParam, ...] = ()
    search_include: tuple[str, ...] = ()
    search_rev_include: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperationParameter:
    """One parameter of an operation (``OperationDefinition.parameter``)."""

    name: str
    type: str = "string"
    """A FHIR type name (``string``, ``instant``, ``Reference``...)."""
    min: int = 0
    max: str = "1"
    documentation: str = ""
    use: Literal["in", "out"] = "in"


@dataclass(frozen=True)
class OperationDefinition:
    """An operation the server offers at one level
    (https://hl7.org/fhir/R4/operationdefinition.html): what the CapabilityStatement lists
    (``rest.operation`` for the system level, ``rest.resource.operation`` for the type and
    instance levels) and what the routes serve (``[base]/$name``, ``[base]/Type/$name``,
    ``[base]/Type/[id]/$name``). Pure data: the handler sits next to it in its module of
    ``fhir_server/operations/``."""

    name: str
    """The code, without the ``$``."""
    canonical: str
    """``OperationDefinition.url``, e.g. http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export."""
    level: Literal["system", "type", "instance"]
    resource_types: tuple[str, ...] = ()
    """The types of a type- or instance-level operation."""
    methods: tuple[str, ...] = ("GET", "POST")
    parameters: tuple[OperationParameter, ...] = ()
    scopes: tuple[str, ...] = ()
    """SMART scopes, any of which lets a caller invoke it (documentation; the access
    policy still applies to everything the operation reads or writes)."""
    affects_state: bool = False
    documentation: str = ""
    instantiates: tuple[str, ...] = ()
    """Canonicals of CapabilityStatements the server meets by offering it (the
    statement's ``instantiates``), e.g. the Bulk Data server's."""

    @property
    def code(self) -> str:
        """The routes' interaction code: ``$name``."""
        return f"${self.name}"


@dataclass(frozen=True)
class SupportTable:
    types: dict[str, TypeSupport]
    system_interactions: tuple[str, ...]
    operations: tuple[OperationDefinition, ...] = field(default=())
    """The operations, one entry per level (see ``fhir_server.operations``)."""

    def supports(self, type_: str, interaction: str) -> bool:
        if interaction.startswith("$"):
            return any(
                op.code == interaction and type_ in op.resource_types for op in self.operations
            )
        support = self.types.get(type_)
        return support is not None and interaction in support.interactions

    def with_operations(self, operations: tuple[OperationDefinition, ...]) -> SupportTable:
        """This table listing ``operations`` too (types they name must be supported)."""
        for op in operations:
            unknown = [t for t in op.resource_types if t not in self.types]
            if unknown or (op.level == "system") == bool(op.resource_types):
                raise ValueError(f"operation ${op.name}: bad resource types {op.resource_types}")
        return replace(self, operations=(*self.operations, *operations))


@cache
def support_table() -> SupportTable:
    """Every R4 resource type the validator covers (all 146), with every implemented
    interaction and all the type's R4 search parameters."""
    covered = [name for name in sorted(RESOURCE_TYPES) if validator_covers(name)]
    references = {name: _reference_codes(name) for name in covered}
    types = {
        name: TypeSupport(
            name,
            _APPEND_ONLY_INTERACTIONS if name in APPEND_ONLY else TYPE_INTERACTIONS,
            search_params=tuple(search_params(name).values()),
            search_include=("*", *(f"{name}:{code}" for code in references[name])),
            search_rev_include=tuple(
                f"{source}:{code}"
                for source in covered
                for code, targets in references[source].items()
                if name in targets
            ),
        )
        for name in covered
    }
    return SupportTable(types, SYSTEM_INTERACTIONS)


def _reference_codes(type_: str) -> dict[str, tuple[str, ...]]:
    return {
        code: param.targets
        for code, param in search_params(type_).items()
        if param.type == "reference"
    }
