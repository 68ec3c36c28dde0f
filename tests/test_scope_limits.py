"""Scope containment (smart_auth.scope_limits): when held SMART scopes cover a requested
one - v1 and v2 syntax, wildcards, contexts, granular v2 filters - the caps applied to
what a registering token may hand on, and user/ scopes dropped for a user without a
fhirUser (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import pytest

from smart_auth.scope_limits import cap_scopes, rule_within, scopes_beyond, without_user_scopes
from smart_auth.scopes import ScopeError, parse_scope, parse_scopes

LAB = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
VITALS = "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def within(requested: str, held: str) -> bool:
    rule = parse_scope(requested)
    assert rule is not None
    return rule_within(rule, parse_scopes(held).rules)


@pytest.mark.parametrize(
    ("requested", "held"),
    [
        ("system/*.rs", "system/*.rs"),
        ("system/*.read", "system/*.rs"),  # v1 read = rs
        ("system/*.rs", "system/*.read"),
        ("system/*.cruds", "system/*.*"),  # v1 * = cruds
        ("system/*.cud", "system/*.write"),
        ("system/Observation.rs", "system/*.rs"),  # a type under *
        ("system/Observation.r", "system/Observation.rs"),  # fewer letters
        ("system/*.crs", "system/*.rs system/*.c"),  # letters from several scopes
        ("user/*.rs", "system/*.rs"),  # system reaches every user's records
        ("patient/*.rs", "system/*.rs"),
        ("patient/*.rs", "user/*.rs"),  # staff reach every patient
        (f"patient/Observation.rs?{LAB}", "patient/Observation.rs"),  # narrower filter
        (f"patient/Observation.rs?{LAB}", f"patient/Observation.rs?{LAB}"),
        (f"patient/Observation.rs?{LAB}&code=1234-5", f"user/Observation.rs?{LAB}"),
        (f"patient/Observation.rs?{LAB}", "patient/Observation.rs?category=x patient/*.rs"),
    ],
)
def test_within(requested: str, held: str) -> None:
    assert within(requested, held)


@pytest.mark.parametrize(
    ("requested", "held"),
    [
        ("system/*.cruds", "system/*.rs"),  # more letters
        ("system/*.d", "system/*.rs"),
        ("system/*.rs", "user/*.rs"),  # a user's scope never reaches system
        ("system/*.rs", "patient/*.rs"),
        ("user/*.rs", "patient/*.rs"),
        ("system/*.rs", "system/Observation.rs"),  # * is not within one type
        ("system/Patient.rs", "system/Observation.rs"),
        ("system/*.write", "system/*.read"),
        ("system/*.*", "system/*.rs"),
        ("patient/Observation.rs", f"patient/Observation.rs?{LAB}"),  # wider than the filter
        (f"patient/Observation.rs?{VITALS}", f"patient/Observation.rs?{LAB}"),
        ("system/*.crs", "system/Observation.c system/*.rs"),  # c only for Observation
        ("system/*.rs", ""),
        ("system/*.rs", "openid fhirUser launch"),
    ],
)
def test_not_within(requested: str, held: str) -> None:
    assert not within(requested, held)


def test_scopes_beyond_names_what_is_not_covered_as_written() -> None:
    requested = "openid fhirUser launch/patient system/*.read system/*.cruds patient/Observation.rs"
    assert scopes_beyond(requested, parse_scopes("system/*.rs").rules) == ["system/*.cruds"]
    assert scopes_beyond("openid offline_access", ()) == []  # not resource scopes
    with pytest.raises(ScopeError):
        scopes_beyond("patient/Observation.sr", ())


def test_cap_scopes_narrows_to_what_is_held() -> None:
    default = "openid fhirUser launch/patient offline_access patient/*.cruds user/*.cruds"
    held = parse_scopes("user/*.rs").rules
    assert cap_scopes(default, held) == (
        "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs"
    )
    system = parse_scopes("system/Observation.rs system/Patient.r").rules
    assert cap_scopes("patient/*.cruds", system) == "patient/Observation.rs patient/Patient.r"
    assert cap_scopes("user/*.cruds system/*.rs", ()) == ""
    granular = parse_scopes(f"user/Observation.rs?{LAB}").rules
    assert cap_scopes("patient/*.rs", granular) == f"patient/Observation.rs?{LAB}"


def test_without_user_scopes() -> None:
    scope = "openid fhirUser launch/patient user/*.cruds patient/*.rs user/Observation.rs"
    assert without_user_scopes(scope) == "openid fhirUser launch/patient patient/*.rs"
    assert without_user_scopes("user/*.rs") == ""
    assert without_user_scopes("user/*.sr openid") == "openid"  # malformed: dropped too
