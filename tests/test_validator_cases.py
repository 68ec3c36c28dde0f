"""The official validator test cases of base-spec structure (fhir-test-cases ``validator/``,
R4 JSON cases without profiles, packages or terminology; ``tests/data/fhir-test-cases/
validator/``, see the README there): each case is written to the server and must be
accepted or refused as the reference validator's outcome says (refused: some issue of
severity error), except the documented differences of :data:`DIFFERENT`.

https://hl7.org/fhir/R4/validation.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from resources import fhir_json
from resources.errors import FhirError
from resources.validation import validate
from tests.conftest import JSON

CASES = Path(__file__).resolve().parent / "data" / "fhir-test-cases" / "validator"
MANIFEST = json.loads((CASES / "manifest-r4-structural.json").read_text())["test-cases"]

REFUSED, ACCEPTED = "refused", "accepted"

DIFFERENT: dict[str, tuple[str, str]] = {
    # The reference validator refuses these for rules outside the base specification.
    "dr-example-org": (
        ACCEPTED,
        "refused for an example.org URL under the reference validator's option "
        "'examples: false', a policy, not an R4 rule",
    ),
    "pat-dob-ext": (ACCEPTED, "an extension whose definition the validator cannot find"),
    "pat-example-extensions": (
        ACCEPTED,
        "an extension whose definition cannot be found, with an example.org URL",
    ),
    "maiden-name-extension": (
        ACCEPTED,
        "an extension used outside its definition's context: needs the extension's "
        "StructureDefinition; the server accepts any extension (R4 extensibility.html)",
    ),
    "ips-htmlrefs-backwards": (
        ACCEPTED,
        "an extension's value type against its definition, and narrative links "
        "(narrativeLink fragments) resolved in the document: neither is checked",
    ),
    "bundle-id-2": (
        ACCEPTED,
        "a search set with two 'self' and two 'first' links: a reference-validator rule "
        "that R4 bundle.html does not state",
    ),
    "bundle-id-5": (ACCEPTED, "only display names, checked against a terminology server"),
    "uk-msg": (ACCEPTED, "only display names and SNOMED CT codes (terminology server)"),
    "bad-markdown-no-html": (
        ACCEPTED,
        "the reference validator's option noHtmlInMarkdown; without it (the case "
        "bad-markdown) the same resource is valid",
    ),
    "encounter-period": (
        ACCEPTED,
        "per-1 on start 2023-06-21 and end 2023-06-21T06:20:00Z: FHIRPath compares values "
        "of different precisions that agree as far as both go as unknown (empty), and a "
        "constraint that gives empty is not failed; by R4 datatypes.html#Period the day "
        "of the start can hold the end. per-1 itself is checked (test_validation_rules)",
    ),
    # The reference validator accepts this under one of its options.
    "contained-resource-bad-id-ignore": (
        REFUSED,
        "the reference validator's option validateContains=IGNORE; the contained "
        "resource's id has 65 characters, more than the 64 of the R4 id type (the same "
        "resource is refused by the case contained-resource-bad-id)",
    ),
    # No reference outcome: the upstream outcome file is empty.
    "params-resource": (ACCEPTED, "no reference outcome; a valid Parameters resource"),
    "patient-hs-1": (
        REFUSED,
        "no reference outcome; '_given' has two items for one given "
        "(https://hl7.org/fhir/R4/json.html#primitive: the arrays align)",
    ),
    "patient-id-extensions": (
        REFUSED,
        "no reference outcome; a resource id is a FHIRPath System.String in R4 "
        "(Resource.id), without the '_id' of primitive extensions",
    ),
}
"""Cases whose verdict here differs from the reference validator's (or that have none)."""

EXPRESSIONS: dict[str, set[str]] = {
    "risk-assessment-probability-range": {"RiskAssessment.prediction[0]"},
    "resource-invalid-eid-2": {"Location.position.id"},
    "xml-bad-entities-json": {"Encounter.text.div"},
    "bundle-duplicate-id": {"Bundle.entry[0].fullUrl", "Bundle.entry[1].fullUrl"},
    "bundle-id-3": {"Bundle.entry[0].resource"},
    "bundle-id-4": {"Bundle.entry[0].resource", "Bundle.entry[1].resource"},
    "attachment-with-wrong-size": {"Media.content"},
    "bundle-document-versioned-references-bad": {
        "Bundle.entry[0].resource.section[0].entry[0]",
        "Bundle.entry[0].resource.section[0].entry[1]",
    },
}
"""For some refused cases, the exact expressions of the issues."""


def reference_verdict(case: dict[str, Any]) -> str | None:
    """REFUSED when the reference validator's outcome has an error, None without one."""
    java = case.get("java")
    if isinstance(java, dict):
        return REFUSED if java.get("errorCount", 0) else ACCEPTED
    text = (CASES / "outcomes" / java).read_text().strip()
    if not text:
        return None
    issues = json.loads(text).get("issue", [])
    errors = [i for i in issues if i.get("severity") in ("error", "fatal")]
    return REFUSED if errors else ACCEPTED


def expected(case: dict[str, Any]) -> str:
    if case["name"] in DIFFERENT:
        return DIFFERENT[case["name"]][0]
    verdict = reference_verdict(case)
    assert verdict is not None, f"{case['name']} has no reference outcome: add it to DIFFERENT"
    return verdict


def issues_of(case: dict[str, Any]) -> list[Any]:
    """The validator's issues for a case's file (a parse error is one issue)."""
    raw = (CASES / case["file"]).read_bytes()
    try:
        resource = fhir_json.loads_resource(raw)
    except FhirError as error:
        return list(error.issues)
    return [i for i in validate(resource) if i.severity in ("error", "fatal")]


def test_the_manifest_has_the_structural_cases() -> None:
    assert len(MANIFEST) == 74
    assert all((CASES / case["file"]).exists() for case in MANIFEST)


def test_differences_name_cases_of_the_manifest() -> None:
    names = {case["name"] for case in MANIFEST}
    assert set(DIFFERENT) <= names
    for name, (verdict, _reason) in DIFFERENT.items():
        case = next(c for c in MANIFEST if c["name"] == name)
        assert verdict != reference_verdict(case), f"{name} does not differ"


@pytest.mark.parametrize("case", MANIFEST, ids=[c["name"] for c in MANIFEST])
def test_validator_case(case: dict[str, Any]) -> None:
    issues = issues_of(case)
    verdict = REFUSED if issues else ACCEPTED
    assert verdict == expected(case), [(i.expression, i.diagnostics) for i in issues]
    if case["name"] in EXPRESSIONS:
        assert {e for i in issues for e in i.expression} == EXPRESSIONS[case["name"]]


def test_counts() -> None:
    """Of the cases with a reference outcome, how many agree with it."""
    with_outcome = [c for c in MANIFEST if reference_verdict(c) is not None]
    refused = [c for c in with_outcome if reference_verdict(c) == REFUSED]
    agree = [
        c for c in with_outcome if (REFUSED if issues_of(c) else ACCEPTED) == reference_verdict(c)
    ]
    refused_here = [c for c in refused if issues_of(c)]
    print(
        f"{len(with_outcome)} cases with a reference outcome ({len(refused)} refused by it): "
        f"{len(agree)} agree, {len(refused_here)} of the refused are refused here"
    )
    assert len(with_outcome) - len(agree) == len(DIFFERENT) - 3  # three have no outcome


async def test_cases_over_http(client) -> None:
    """Each case written (PUT to its id, or POST): 400 with an OperationOutcome of errors
    (one issue per problem), or stored."""
    for case in MANIFEST:
        raw = (CASES / case["file"]).read_bytes()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = {}
        type_, id_ = body.get("resourceType", "Patient"), body.get("id")
        if isinstance(id_, str):
            url = f"{type_}/{quote(id_, safe='')}"
            response = await client.put(url, content=raw, headers=JSON)
        else:
            response = await client.post(type_, content=raw, headers=JSON)
        if expected(case) == ACCEPTED:
            assert response.status_code in (200, 201), (case["name"], response.text)
            continue
        if isinstance(id_, str) and "/" in id_:  # no URL names it
            assert response.status_code == 404, (case["name"], response.text)
            continue
        assert response.status_code == 400, (case["name"], response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert all(issue["severity"] in ("error", "fatal") for issue in outcome["issue"])
        if case["name"] in EXPRESSIONS:
            found = {e for i in outcome["issue"] for e in i.get("expression", [])}
            assert found == EXPRESSIONS[case["name"]], case["name"]
