"""The parameters of ``$everything``
(https://hl7.org/fhir/R4/patient-operation-everything.html): ``_count``, ``_since``,
``_type``, ``start`` and ``end`` (care dates, see :data:`CARE_DATES`), and the paging
cursor; parsed into the conditions the record's search adds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from capability.support import support_table
from fhir_server.headers import prefer_handling
from fhir_server.interactions.context import Context
from resources.errors import FhirError, invalid
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AnyOf, Clause, Condition, MissingMatch

CARE_DATES: Mapping[str, str] = {
    # the types with the R4 clinical date parameter ``date`` (Observation.effective,
    # Encounter.period, Immunization.occurrence, ...) use it; the others name theirs
    **dict.fromkeys(
        [
            "AdverseEvent",
            "AllergyIntolerance",
            "Appointment",
            "AuditEvent",
            "CarePlan",
            "CareTeam",
            "ClinicalImpression",
            "Composition",
            "Consent",
            "DiagnosticReport",
            "DocumentReference",
            "Encounter",
            "EpisodeOfCare",
            "FamilyMemberHistory",
            "Flag",
            "Immunization",
            "ImmunizationEvaluation",
            "ImmunizationRecommendation",
            "Invoice",
            "List",
            "MeasureReport",
            "MedicationRequest",
            "Observation",
            "Procedure",
            "ResearchSubject",
            "RiskAssessment",
            "SupplyRequest",
        ],
        "date",
    ),
    "ChargeItem": "occurrence",
    "Claim": "created",
    "Communication": "sent",
    "CommunicationRequest": "occurrence",
    "Condition": "onset-date",
    "DeviceRequest": "event-date",
    "ExplanationOfBenefit": "created",
    "Goal": "start-date",
    "ImagingStudy": "started",
    "Media": "created",
    "MedicationAdministration": "effective-time",
    "MedicationDispense": "whenhandedover",
    "MedicationStatement": "effective",
    "NutritionOrder": "datetime",
    "ServiceRequest": "occurrence",
    "Specimen": "collected",
}
"""The care date of each type of the record (the search parameter ``start``/``end`` are
compared with). A resource of another type of the record that has a date parameter of
one of these names is compared on it too (``created`` of a ClaimResponse, ``date`` of a
Schedule)."""

PARAMETERS = frozenset({"_count", "_since", "_type", "start", "end", "_cursor"})
"""The operation's parameters (``_cursor`` carries the paging position)."""
_IGNORED = frozenset({"_format", "_pretty"})


@dataclass(frozen=True)
class EverythingRequest:
    """The operation's parameters, parsed."""

    count: int
    types: tuple[str, ...] | None = None
    """``_type``: only these types (None: every type)."""
    since: tuple[Condition, ...] = ()
    care: tuple[Condition, ...] = ()
    cursor: str | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    """The parameters as they go into the links (``_cursor`` aside)."""


def parse_request(ctx: Context, items: Sequence[tuple[str, str]]) -> EverythingRequest:
    """The parameters (of the query, and of a POSTed ``Parameters`` resource)."""
    strict = prefer_handling(ctx.header("prefer")) == "strict"
    values: dict[str, list[str]] = {}
    for name, value in items:
        if name in PARAMETERS:
            values.setdefault(name, []).append(value)
        elif strict and name not in _IGNORED:
            raise invalid(f"Unknown parameter of $everything: {name}", name)
    for name, given in values.items():
        if len(given) > 1 and name != "_type":
            raise invalid(f"The parameter {name} of $everything is given more than once", name)
    applied: list[tuple[str, str]] = []
    count = _count(ctx, values.get("_count", [None])[0], applied)
    types = _types(values.get("_type", []), applied)
    since = _since(values.get("_since", [None])[0], applied)
    start = values.get("start", [None])[0]
    end = values.get("end", [None])[0]
    care = tuple(_care(start, end, applied))
    cursor = values.get("_cursor", [None])[0]
    return EverythingRequest(count, types, since, care, cursor, applied)


def _count(ctx: Context, given: str | None, applied: list[tuple[str, str]]) -> int:
    if given is None:
        return ctx.settings.default_page_size
    try:
        count = int(given)
    except ValueError:
        count = -1
    if count < 0:
        raise invalid(f"_count must be a non-negative integer, not {given!r}", "_count")
    count = min(count, ctx.settings.max_page_size)
    applied.append(("_count", str(count)))
    return count


def _types(given: list[str], applied: list[tuple[str, str]]) -> tuple[str, ...] | None:
    if not given:
        return None
    names = [t.strip() for value in given for t in value.split(",") if t.strip()]
    known = support_table().types
    unknown = [t for t in names if t not in known]
    if unknown:
        raise invalid(f"_type names unknown resource types: {', '.join(unknown)}", "_type")
    types = tuple(dict.fromkeys(names))
    applied.append(("_type", ",".join(types)))
    return types


def _since(given: str | None, applied: list[tuple[str, str]]) -> tuple[Condition, ...]:
    if given is None:
        return ()
    conditions = _parse("Patient", "_lastUpdated", f"ge{given}", "_since")
    applied.append(("_since", given))
    return conditions


def _care(
    start: str | None, end: str | None, applied: list[tuple[str, str]]
) -> Iterable[Condition]:
    """For each care date parameter: no value, or a value that overlaps the range."""
    bounds = [
        (name, prefix, value)
        for name, prefix, value in (("start", "ge", start), ("end", "le", end))
        if value is not None
    ]
    for name, _, value in bounds:
        applied.append((name, value))
    for code, type_ in _care_codes().items():
        param = search_params(type_)[code]
        for name, prefix, value in bounds:
            (clause,) = _parse(type_, code, f"{prefix}{value}", name)
            missing = Clause(param, (MissingMatch(True),))
            yield AnyOf((clause, missing))


@cache
def _care_codes() -> dict[str, str]:
    """Each care date parameter code, with a type that has it."""
    codes: dict[str, str] = {}
    for type_, code in sorted(CARE_DATES.items()):
        codes.setdefault(code, type_)
    return codes


def _parse(type_: str, name: str, value: str, parameter: str) -> tuple[Condition, ...]:
    try:
        query = parse_search(
            [type_],
            [(name, value)],
            strict=True,
            params_for=search_params,
            max_count=1,
            default_count=1,
        )
    except FhirError as error:
        raise invalid(
            f"The value of {parameter} is not a valid date or instant: {value[2:]!r}",
            parameter,
        ) from error
    return tuple(query.conditions)
