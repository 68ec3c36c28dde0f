"""SMART App Launch 2.x scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
parsing v1 and v2 scopes, narrowing to what a client may ask, the access policy of a
token, and the plain words of the consent page."""

from __future__ import annotations

import pytest

from smart_auth.scopes import (
    AccessPolicy,
    ScopeError,
    ScopeRule,
    narrow_scopes,
    parse_scope,
    parse_scopes,
    plain_words,
)

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "interactions"),
    [
        ("patient/Observation.read", "rs"),
        ("patient/Observation.write", "cud"),
        ("patient/Observation.*", "cruds"),
        ("patient/Observation.rs", "rs"),
        ("patient/Observation.c", "c"),
        ("patient/Observation.cruds", "cruds"),
        ("patient/Observation.cud", "cud"),
        ("patient/Observation.ds", "ds"),
    ],
)
def test_v1_and_v2_permissions(text: str, interactions: str) -> None:
    rule = parse_scope(text)
    assert rule is not None
    assert rule.interactions == frozenset(interactions)
    assert (rule.context, rule.resource_type, rule.params) == ("patient", "Observation", ())


def test_v1_read_equals_v2_rs() -> None:
    assert parse_scope("user/Patient.read") == parse_scope("user/Patient.rs")
    assert parse_scope("user/Patient.read") != parse_scope("patient/Patient.rs")


def test_contexts_and_wildcard_type() -> None:
    system = parse_scope("system/*.rs")
    assert system is not None and system.context == "system" and system.resource_type == "*"
    user = parse_scope("user/*.cruds")
    assert user is not None and user.allows("Encounter", "d")


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    ],
)
def test_non_resource_scopes_are_not_rules(text: str) -> None:
    assert parse_scope(text) is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("patient/Observation.sr", "in that order"),
        ("patient/Observation.rr", "in that order"),
        ("patient/Observation.rx", "letters"),
        ("patient/Observation.", "letters"),
        ("patient/Observation.READ", "letters"),
        ("foo/Observation.read", "context must be patient, user or system"),
        ("Patient/Observation.read", "context"),
        ("patient/observation.rs", "not a resource type"),
        ("patient/Obs-ervation.rs", "not a resource type"),
        ("patient/.rs", "not a resource type"),
        ("patient/Observation", "expected context/ResourceType.permissions"),
        ("patient/Observation.read?category=laboratory", "needs v2 permissions"),
        ("patient/Observation.*?category=laboratory", "needs v2 permissions"),
        ("patient/Observation.rs?", "empty"),
        ("patient/Observation.rs?category", "malformed"),
        ("patient/Observation.rs?category=", "name and a value"),
        ("patient/Observation.rs?=laboratory", "name and a value"),
    ],
)
def test_malformed_resource_scopes(text: str, complaint: str) -> None:
    with pytest.raises(ScopeError, match=complaint):
        parse_scope(text)


def test_v2_granular_scope_with_a_system_and_code() -> None:
    rule = parse_scope(f"patient/Observation.rs?category={LAB}")
    assert rule is not None
    assert rule.params == (("category", LAB),)
    assert rule.interactions == frozenset("rs")
    assert rule.text == f"patient/Observation.rs?category={LAB}"


def test_granular_parameters_are_decoded_and_repeats_kept() -> None:
    rule = parse_scope("patient/Observation.rs?category=a%7Cb&code=1&code=2")
    assert rule is not None
    assert rule.params == (("category", "a|b"), ("code", "1"), ("code", "2"))


def test_allows_checks_type_and_interaction() -> None:
    rule = parse_scope("patient/Observation.rs")
    assert rule is not None
    assert rule.allows("Observation", "r") and rule.allows("Observation", "s")
    assert not rule.allows("Observation", "c")
    assert not rule.allows("Condition", "r")


def test_parse_scopes_splits_removes_duplicates_and_keeps_order() -> None:
    granted = parse_scopes(
        "openid  patient/Observation.rs launch/patient patient/Observation.rs"
        " patient/Observation.read fhirUser"
    )
    assert granted.text == (
        "openid patient/Observation.rs launch/patient patient/Observation.read fhirUser"
    )
    assert len(granted.rules) == 1  # .read and .rs are the same rule
    assert granted.others == {"openid", "launch/patient", "fhirUser"}
    assert granted.has("openid") and not granted.has("offline_access")


def test_parse_scopes_strict_and_lenient() -> None:
    with pytest.raises(ScopeError):
        parse_scopes("openid patient/Observation.sr")
    lenient = parse_scopes("openid patient/Observation.sr patient/Patient.r", strict=False)
    assert lenient.text == "openid patient/Patient.r"


def test_unknown_plain_scopes_are_others() -> None:
    assert parse_scopes("email https://example.org/scope").others == {
        "email",
        "https://example.org/scope",
    }


def test_scope_text_renders_v1_and_v2() -> None:
    assert ScopeRule("user", "Patient", frozenset("rs"), version=1).scope_text() == (
        "user/Patient.read"
    )
    rule = ScopeRule("patient", "Observation", frozenset("sr"), (("category", LAB),))
    assert rule.scope_text() == f"patient/Observation.rs?category={LAB}"


# -- narrowing -------------------------------------------------------------------------


def test_narrow_keeps_covered_scopes_as_written() -> None:
    allowed = "openid fhirUser launch/patient offline_access patient/*.rs"
    requested = "openid fhirUser launch/patient patient/Observation.read patient/Patient.rs"
    assert narrow_scopes(requested, allowed) == requested


def test_narrow_drops_what_is_not_allowed() -> None:
    allowed = "openid patient/Observation.rs"
    requested = "openid offline_access patient/Condition.rs user/Observation.rs"
    assert narrow_scopes(requested, allowed) == "openid"


def test_narrow_intersects_wider_requests() -> None:
    assert narrow_scopes("patient/Observation.cruds", "patient/*.rs") == ("patient/Observation.rs")
    assert narrow_scopes("patient/*.read", "patient/Observation.rs patient/Condition.r") == (
        "patient/Observation.read patient/Condition.r"
    )
    assert narrow_scopes("patient/Observation.write", "patient/*.rs") == ""


def test_narrow_keeps_the_allowed_filter() -> None:
    allowed = "patient/Observation.rs?category=laboratory"
    assert narrow_scopes("patient/Observation.rs", allowed) == (
        "patient/Observation.rs?category=laboratory"
    )
    requested = "patient/Observation.rs?category=laboratory&code=1234-5"
    assert narrow_scopes(requested, allowed) == requested


def test_narrow_does_not_widen_context() -> None:
    assert narrow_scopes("user/Observation.rs", "patient/*.cruds") == ""
    assert narrow_scopes("patient/Observation.rs", "user/*.cruds system/*.rs") == ""


def test_narrow_refuses_malformed_requests() -> None:
    with pytest.raises(ScopeError):
        narrow_scopes("patient/Observation.sr", "patient/*.cruds")


# -- access policy ---------------------------------------------------------------------


def test_access_policy_from_claims() -> None:
    policy = AccessPolicy.from_claims(
        {
            "client_id": "app",
            "sub": "user-1",
            "scope": f"openid fhirUser patient/Observation.rs?category={LAB} patient/Patient.r",
            "fhirUser": "https://ehr.example/fhir/RelatedPerson/4",
            "patient": "123",
            "jti": "abc",
        }
    )
    assert policy.subject == "user-1"
    assert policy.fhir_user == "RelatedPerson/4"
    assert policy.patient == "123" and policy.encounter is None
    assert policy.jti == "abc"
    (lab,) = policy.rules_for("Observation", "s")
    assert lab.params == (("category", LAB),)
    assert policy.allows("Patient", "r") and not policy.allows("Patient", "s")
    assert policy.rules_for("Observation", "c") == ()


def test_access_policy_of_a_backend_service_has_no_subject() -> None:
    policy = AccessPolicy.from_claims({"client_id": "sync", "sub": "sync", "scope": "system/*.rs"})
    assert policy.subject is None and policy.fhir_user is None
    assert policy.allows("Practitioner", "r")


def test_several_rules_are_alternatives() -> None:
    policy = AccessPolicy.from_claims(
        {
            "client_id": "a",
            "scope": "patient/Observation.rs?category=laboratory"
            " patient/Observation.rs?category=vital-signs",
        }
    )
    assert len(policy.rules_for("Observation", "r")) == 2


# -- plain words -----------------------------------------------------------------------


def test_plain_words_of_a_granular_scope() -> None:
    assert plain_words(f"patient/Observation.rs?category={LAB}") == (
        "Read and search your lab results (Observation, category=laboratory)"
    )


@pytest.mark.parametrize(
    ("scope", "words"),
    [
        ("patient/*.cruds", "Create, read, update, delete and search your health records"),
        ("user/Patient.read", "Read and search the demographics"),
        ("system/Encounter.rs", "Read and search all visits and encounters"),
        ("patient/ServiceRequest.r", "Read your service request records (ServiceRequest)"),
        ("offline_access", "Keep access when you are not using the app"),
        ("launch/patient", "Know which patient's record you chose"),
    ],
)
def test_plain_words(scope: str, words: str) -> None:
    assert words in plain_words(scope)


def test_plain_words_of_a_rule() -> None:
    rule = parse_scope("user/Observation.c")
    assert rule is not None
    assert plain_words(rule).startswith("Create the observations")
