"""The support table: resource types x interactions (and, later, search parameters).

Both the HTTP routes and the CapabilityStatement
(https://hl7.org/fhir/R4/capabilitystatement.html) are generated from this table, so the
statement can never claim what the routes do not serve, nor hide what they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from resources.definitions import RESOURCE_TYPES
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
)
"""Type-level interaction codes (https://hl7.org/fhir/R4/valueset-type-restful-interaction.html)."""

SYSTEM_INTERACTIONS: tuple[str, ...] = ("history-system",)
"""System-level interaction codes (https://hl7.org/fhir/R4/valueset-system-restful-interaction.html)."""


@dataclass(frozen=True)
class TypeSupport:
    type: str
    interactions: tuple[str, ...]
    versioning: str = "versioned-update"
    read_history: bool = True
    update_create: bool = True
    conditional_create: bool = False
    conditional_update: bool = False
    conditional_delete: str = "not-supported"


@dataclass(frozen=True)
class SupportTable:
    types: dict[str, TypeSupport]
    system_interactions: tuple[str, ...]

    def supports(self, type_: str, interaction: str) -> bool:
        support = self.types.get(type_)
        return support is not None and interaction in support.interactions


@cache
def support_table() -> SupportTable:
    """Every R4 resource type the validator covers, with every implemented interaction."""
    types = {
        name: TypeSupport(name, TYPE_INTERACTIONS)
        for name in sorted(RESOURCE_TYPES)
        if validator_covers(name)
    }
    return SupportTable(types, SYSTEM_INTERACTIONS)
