"""The rules the validator checks besides the structure: the R4 invariants
(https://hl7.org/fhir/R4/conformance-rules.html#constraints), the narrative's XHTML
(https://hl7.org/fhir/R4/narrative.html#xhtml), the 1 MB string limit
(https://hl7.org/fhir/R4/datatypes.html#string) and the rules of Bundles kept as resources
(https://hl7.org/fhir/R4/bundle.html).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhir_server.demo_data import Population, write_ndjson
from resources import fhir_json
from resources.validation import invariants, narrative, structure, validate
from resources.validation.fhirpath_env import Env, truth
from tests.conftest import JSON

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / ".cache" / "r4-examples" / "package"
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
BP = {"system": "http://loinc.org", "code": "85354-9"}


def where(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(code, expression) of each issue."""
    return [(i.code, i.expression[0] if i.expression else "") for i in validate(resource)]


def keys(resource: dict[str, Any]) -> list[str]:
    """The constraint keys of the failed invariants."""
    return [
        i.diagnostics.split(":")[1].strip()
        for i in validate(resource)
        if i.code == "invariant" and i.diagnostics.startswith("Constraint failed")
    ]


def encounter(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, **elements}


def with_div(div: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": div}}


# --------------------------------------------------------------------------- invariants


def test_period_ending_before_it_starts_breaks_per_1() -> None:
    resource = encounter(period={"start": "2024-05-02", "end": "2024-05-01"})
    assert where(resource) == [("invariant", "Encounter.period")]
    assert keys(resource) == ["per-1"]


@pytest.mark.parametrize(
    "period",
    [
        {"start": "2024-05-01", "end": "2024-05-01"},
        {"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00+01:00"},
        {"start": "2024-05-01T10:00:00+02:00", "end": "2024-05-01T09:00:00Z"},
        {"start": "2024-05-01"},
        {"end": "2024-05-01"},
    ],
)
def test_periods_in_order_pass_per_1(period: dict[str, str]) -> None:
    assert validate(encounter(period=period)) == []


def test_per_1_compares_instants_in_utc() -> None:
    late_start = {"start": "2024-05-01T10:00:00+00:00", "end": "2024-05-01T11:00:00+02:00"}
    assert keys(encounter(period=late_start)) == ["per-1"]


def test_per_1_of_different_precisions_that_agree_is_unknown_and_passes() -> None:
    same_day = {"start": "2023-06-21", "end": "2023-06-21T06:20:00Z"}
    assert validate(encounter(period=same_day)) == []
    assert keys(encounter(period={"start": "2023-06-22", "end": "2023-06-21T06:20:00Z"})) == [
        "per-1"
    ]


def test_probability_over_100_breaks_ras_2() -> None:
    def risk(probability: Any) -> dict[str, Any]:
        prediction = [{"probabilityDecimal": fhir_json.loads(probability)}]
        return {"resourceType": "RiskAssessment", "status": "final", "subject": {
            "reference": "Patient/1"}, "prediction": prediction}  # fmt: skip

    assert where(risk("100.5")) == [("invariant", "RiskAssessment.prediction[0]")]
    assert validate(risk("100")) == []
    assert validate(risk("0.25")) == []


def test_invariant_of_a_backbone_element() -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "referenceRange": [{"appliesTo": [{"text": "adults"}]}]}  # fmt: skip
    assert where(resource) == [("invariant", "Observation.referenceRange[0]")]
    assert keys(resource) == ["obs-3"]


def test_invariant_of_an_element_is_checked_on_each_value() -> None:
    resource = {"resourceType": "Organization", "name": "x", "address": [{"use": "home"}]}
    assert where(resource) == [("invariant", "Organization.address[0]")]
    assert keys(resource) == ["org-2"]


def test_invariant_of_a_specialized_datatype_includes_its_base() -> None:
    age = {"value": -1, "unit": "a", "code": "a"}  # qty-3: a code needs a system; age-1: > 0
    resource = {"resourceType": "Condition", "subject": {"reference": "Patient/1"},
                "onsetAge": age}  # fmt: skip
    assert sorted(keys(resource)) == ["age-1", "qty-3"]


def test_simple_quantity_has_no_comparator() -> None:
    dose = {"value": 1, "comparator": "<"}
    immunization = {"resourceType": "Immunization", "status": "completed",
                    "vaccineCode": {"text": "x"}, "patient": {"reference": "Patient/1"},
                    "occurrenceString": "x", "doseQuantity": dose}  # fmt: skip
    assert where(immunization) == [("invariant", "Immunization.doseQuantity")]
    assert keys(immunization) == ["sqty-1"]
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": 1, "comparator": "<"}}  # fmt: skip
    assert validate(observation) == []  # a Quantity, not a SimpleQuantity


def test_extension_with_a_value_and_extensions_breaks_ext_1() -> None:
    extension = {"url": "http://x.org/e", "valueString": "a", "extension": [
        {"url": "b", "valueString": "b"}]}  # fmt: skip
    assert keys({"resourceType": "Patient", "extension": [extension]}) == ["ext-1"]


def test_extension_whose_value_has_only_extensions_passes_ext_1() -> None:
    value = {"extension": [{"url": "http://x.org/t", "valueString": "t"}]}
    extension = {"url": "http://x.org/e", "_valueString": value}
    assert validate({"resourceType": "Patient", "extension": [extension]}) == []


def test_local_reference_needs_the_contained_resource() -> None:
    resource = {"resourceType": "Patient", "managingOrganization": {"reference": "#org"}}
    assert where(resource) == [("invariant", "Patient.managingOrganization")]
    contained = [{"resourceType": "Organization", "id": "org", "name": "x"}]
    assert validate({**resource, "contained": contained}) == []


def test_contained_resource_nothing_refers_to_breaks_dom_3() -> None:
    contained = [{"resourceType": "Organization", "id": "org", "name": "x"}]
    resource = {"resourceType": "Patient", "contained": contained}
    assert where(resource) == [("invariant", "Patient.contained[0]")]
    back = {**contained[0], "partOf": {"reference": "#"}}  # it refers to its container
    assert validate({"resourceType": "Patient", "contained": [back]}) == []


def test_invariants_are_reported_when_the_structure_is_valid() -> None:
    resource = encounter(period={"start": "2024-05-02", "end": "2024-05-01"}, bogus=1)
    assert where(resource) == [("structure", "Encounter.bogus")]


def test_which_constraints_are_checked() -> None:
    """Every error constraint but the skip-list compiles; the counts the README gives."""
    assert invariants.not_compiled() == {}
    checked = invariants.checked()
    assert len(checked) == 202
    assert len(invariants.SKIPPED) == 6
    total = sum(
        1
        for type_ in invariants._types()
        for rule in invariants.constraints(type_)
        if rule[2] == "error"
    )
    assert total == 207
    assert invariants.profile_constraints() == {
        "SimpleQuantity": [["", "sqty-1", "error", "comparator.empty()",
                            "The comparator is not used on a SimpleQuantity"]]
    }  # fmt: skip
    assert len(checked) + len(invariants.SKIPPED) == total + 1
    assert {"per-1@Period", "ras-2@RiskAssessment.prediction", "ref-1@Reference"} <= set(checked)


def test_skip_list_names_constraints_of_the_package() -> None:
    names = {
        f"{rule[1]}@{type_}{'.' + rule[0] if rule[0] else ''}"
        for type_ in invariants._types()
        for rule in invariants.constraints(type_)
    }
    assert set(invariants.SKIPPED) <= names
    assert set(invariants.NATIVE) <= names


def _examples() -> list[Path]:
    if not (EXAMPLES / "package.json").exists():
        pytest.skip("the R4 examples are not fetched (scripts/fetch_r4_examples.sh)")
    return sorted(EXAMPLES.glob("*.json"))


def test_native_constraints_agree_with_their_expressions(monkeypatch, tmp_path: Path) -> None:
    """Each native function gives its constraint's verdict on every value the validator
    hands it while validating the official examples, demo data and made-up values."""
    calls: dict[str, int] = {}
    disagreements: list[tuple[str, Any]] = []

    def comparing(name: str) -> Any:
        key, _, path = name.partition("@")
        type_, _, below = path.partition(".")
        rule = next(r for r in invariants.constraints(type_) if r[1] == key and r[0] == below)
        expression = invariants.compiled(rule[3], *invariants._context(type_, below))
        native = invariants.NATIVE[name]

        def run(value: Any, env: Env) -> bool:
            expected = truth(expression([value], env)) is not False
            if native(value, env) is not expected:
                disagreements.append((name, value))
            calls[name] = calls.get(name, 0) + 1
            return expected

        return run

    monkeypatch.setattr(invariants, "NATIVE", {name: comparing(name) for name in invariants.NATIVE})
    monkeypatch.setattr(structure, "_SHAPES", {})  # shapes compiled again, with the comparers
    made_up = [
        encounter(period={"start": "2024-05-02", "end": "2024-05-01"}),
        encounter(
            period={"start": "2024", "end": "2024-05-01"},
            contained=[{"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"}}],
        ),  # fmt: skip
        {"resourceType": "Patient", "managingOrganization": {"reference": "#x"}},
        {"resourceType": "Patient", "managingOrganization": {"reference": "#"}},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {
                "value": 1,
                "_code": {"extension": [{"url": "http://x.org/e", "valueString": "e"}]},
            },
        },  # fmt: skip
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [BP]},
            "valueString": "x",
            "dataAbsentReason": {"text": "x"},
            "component": [{"code": {"coding": [BP]}, "valueString": "y"}],
            "referenceRange": [
                {"appliesTo": [{"text": "a"}]},
                {"_text": {"extension": [{"url": "http://x.org/e", "valueString": "e"}]}},
            ],
        },  # fmt: skip
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [BP]},
            "_valueString": {"extension": [{"url": "http://x.org/e", "valueString": "e"}]},
            "component": [{"code": {"coding": [{**BP, "display": "other"}]}}],
        },  # fmt: skip
    ]
    folder = tmp_path / "demo"
    write_ndjson(Population(20, 1, date(2025, 3, 12)), folder)
    for file in sorted(folder.iterdir()):
        for line in file.read_bytes().splitlines():
            made_up.append(fhir_json.loads_resource(line))
    for resource in made_up:
        validate(resource)
    for file in _examples()[::2]:
        validate(fhir_json.loads_resource(file.read_bytes()))
    assert disagreements == []
    assert set(calls) == set(invariants.NATIVE)
    assert min(calls.values()) > 50, calls


def test_an_invariant_that_breaks_does_not_refuse_the_write(monkeypatch) -> None:
    def broken(value: Any, env: Env) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(invariants, "NATIVE", {**invariants.NATIVE, "per-1@Period": broken})
    monkeypatch.setattr(structure, "_SHAPES", {})
    assert validate(encounter(period={"start": "2024-05-02", "end": "2024-05-01"})) == []


# --------------------------------------------------------------------------- narrative


def test_valid_narrative() -> None:
    div = (
        f'<div {XHTML}><p class="x" style="color: red">A <b>bold</b> &amp; &#233; '
        '<a href="http://example.org">link</a></p><table><tr><td colspan="2">1</td></tr>'
        '</table><img src="#pic" alt="x"/><ul><li>one</li></ul></div>'
    )
    assert narrative.problems(div) == []
    assert validate(with_div(div)) == []


@pytest.mark.parametrize(
    ("div", "part"),
    [
        (f"<div {XHTML}><script>alert(1)</script></div>", "'script' is not allowed"),
        (f'<div {XHTML}><p onclick="alert(1)">x</p></div>', "Event handler attribute 'onclick'"),
        (f'<div {XHTML}><img src="x" onerror="alert(1)"/></div>', "'onerror'"),
        (f"<div {XHTML}><iframe src='x'></iframe></div>", "'iframe' is not allowed"),
        (f"<div {XHTML}><form><input/></form></div>", "'form' is not allowed"),
        (f"<div {XHTML}><object data='x'></object></div>", "'object' is not allowed"),
        (f"<div {XHTML}><foo>x</foo></div>", "'foo' is not allowed"),
        (f'<div {XHTML}><a href="javascript:alert(1)">x</a></div>', "script URL"),
        (f'<div {XHTML}><a href=" JaVa&#x09;Script:alert(1)">x</a></div>', "script URL"),
        (f'<div {XHTML}><p bogus="1">x</p></div>', "'bogus' is not allowed"),
        ("<div>no namespace</div>", "XHTML namespace"),
        (f"<p {XHTML}>x</p>", "must be a 'div'"),
        (f"<div {XHTML}><p>x</div>", "not well-formed"),
        (f"<div {XHTML}>a &reg; b</div>", "undefined entity"),
        ("not xml at all", "not well-formed"),
        (f'<div {XHTML}><svg xmlns="http://www.w3.org/2000/svg"/></div>', "XHTML namespace"),
        (
            f'<div {XHTML} xmlns:x="http://www.w3.org/1999/xlink"><a x:href="y">z</a></div>',
            "namespace",
        ),  # fmt: skip
        (f"<div {XHTML}><?php echo 1 ?></div>", "processing instructions"),
    ],
)
def test_narrative_rules(div: str, part: str) -> None:
    found = narrative.problems(div)
    assert found and any(part in message for message in found), found
    assert ("value", "Patient.text.div") in where(with_div(div))


def test_each_narrative_problem_is_an_issue() -> None:
    div = f'<div {XHTML}><script>x</script><p onclick="y">z</p></div>'
    assert where(with_div(div)) == [("value", "Patient.text.div")] * 2


def test_billion_laughs_is_refused_without_expanding() -> None:
    entities = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    div = (
        f'<?xml version="1.0"?><!DOCTYPE div [<!ENTITY l0 "ha">{entities}]><div {XHTML}>&l9;</div>'
    )
    found = narrative.problems(div)
    assert found and ("DOCTYPE" in found[0] or "processing" in found[0]), found
    bomb = f'<!DOCTYPE div [<!ENTITY l0 "ha">{entities}]><div {XHTML}>&l9;</div>'
    assert narrative.problems(bomb) == [
        "A narrative must not have a DOCTYPE (no DTDs or entity declarations)"
    ]


def test_external_entity_is_refused() -> None:
    xxe = f'<!DOCTYPE div [<!ENTITY x SYSTEM "file:///etc/passwd">]><div {XHTML}>&x;</div>'
    assert "DOCTYPE" in narrative.problems(xxe)[0]


# --------------------------------------------------------------------------- strings


def test_string_of_1_mb_is_valid_and_longer_is_not() -> None:
    limit = 1024 * 1024
    assert validate({"resourceType": "Patient", "gender": "other", "name": [
        {"text": "a" * limit}]}) == []  # fmt: skip
    too_long = {"resourceType": "Patient", "name": [{"text": "a" * (limit + 1)}]}
    assert where(too_long) == [("value", "Patient.name[0].text")]
    element_id = {"resourceType": "Patient", "name": [{"id": "x" * (limit + 1), "text": "a"}]}
    assert where(element_id) == [("value", "Patient.name[0].id")]
    markdown = {"resourceType": "Patient", "contact": [], "extension": [
        {"url": "http://x.org/e", "valueMarkdown": "m" * (limit + 1)}]}  # fmt: skip
    assert ("value", "Patient.extension[0].valueMarkdown") in where(markdown)


def test_base64_is_not_limited_to_1_mb() -> None:
    data = "QUJD" * (300 * 1024)  # 1.2 MB of base64
    photo = {"contentType": "text/plain", "data": data, "size": 3 * 300 * 1024}
    assert validate({"resourceType": "Patient", "photo": [photo]}) == []


# --------------------------------------------------------------------------- Bundles


def bundle(kind: str, *entries: dict[str, Any], **elements: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries), **elements}


def patient_entry(full_url: str | None, id_: str = "p1", **meta: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id_}
    if meta:
        resource["meta"] = meta
    return {"fullUrl": full_url, "resource": resource} if full_url else {"resource": resource}


def test_full_url_must_be_absolute() -> None:
    assert where(bundle("collection", patient_entry("Patient/p1"))) == [
        ("invalid", "Bundle.entry[0].fullUrl")
    ]
    assert (
        validate(
            bundle(
                "collection", patient_entry("urn:uuid:" + "1" * 8 + "-1111-1111-1111-" + "1" * 12)
            )
        )
        == []
    )
    assert validate(bundle("collection", patient_entry("http://x.org/fhir/Patient/p1"))) == []


def test_restful_full_url_agrees_with_the_resource() -> None:
    wrong = bundle("collection", patient_entry("http://x.org/fhir/Patient/other"))
    assert where(wrong) == [("invalid", "Bundle.entry[0].fullUrl")]
    other_type = bundle("collection", patient_entry("http://x.org/fhir/Observation/p1"))
    assert where(other_type) == [("invalid", "Bundle.entry[0].fullUrl")]


def test_the_same_resource_twice_is_refused() -> None:
    twice = bundle(
        "collection",
        patient_entry("http://x.org/fhir/Patient/p1"),
        patient_entry("http://x.org/fhir/Patient/p1"),
    )
    assert ("invalid", "Bundle.entry[1]") in where(twice)
    without_urls = bundle("collection", patient_entry(None), patient_entry(None))
    assert where(without_urls) == [("invalid", "Bundle.entry[1]")]
    versions = bundle(
        "collection",
        patient_entry("http://x.org/fhir/Patient/p1", versionId="1"),
        patient_entry("http://x.org/fhir/Patient/p1", versionId="2"),
    )
    assert validate(versions) == []
    history = bundle(
        "history",
        {
            **patient_entry("http://x.org/fhir/Patient/p1"),
            "request": {"method": "PUT", "url": "Patient/p1"},
            "response": {"status": "200"},
        },
        {
            **patient_entry("http://x.org/fhir/Patient/p1"),
            "request": {"method": "PUT", "url": "Patient/p1"},
            "response": {"status": "200"},
        },
    )
    assert validate(history) == []


def composition(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Composition", "id": "c", "status": "final", "type": {"text": "x"},
            "date": "2024-01-01", "author": [{"reference": "Patient/p1"}], "title": "t",
            **elements}  # fmt: skip


def document(*entries: dict[str, Any]) -> dict[str, Any]:
    return bundle(
        "document",
        *entries,
        identifier={
            "system": "urn:ietf:rfc:3986",
            "value": "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000001",
        },
        timestamp="2024-01-01T00:00:00Z",
    )


def test_document_references_resolve_inside_the_bundle() -> None:
    base = "http://x.org/fhir"
    good = document(
        {
            "fullUrl": f"{base}/Composition/c",
            "resource": composition(subject={"reference": "Patient/p1"}),
        },
        patient_entry(f"{base}/Patient/p1"),
    )
    assert validate(good) == []
    missing = document(
        {
            "fullUrl": f"{base}/Composition/c",
            "resource": composition(subject={"reference": "Patient/p2"}),
        },
        patient_entry(f"{base}/Patient/p1"),
    )
    assert where(missing) == [("invalid", "Bundle.entry[0].resource.subject")]


def test_document_starts_with_its_composition() -> None:
    doc = document(patient_entry("http://x.org/fhir/Patient/p1"))
    assert ("invalid", "Bundle.entry[0]") in where(doc)


def test_document_with_urn_full_urls_resolves_by_full_url() -> None:
    patient_url = "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000002"
    doc = document(
        {
            "fullUrl": "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000003",
            "resource": composition(
                subject={"reference": patient_url}, author=[{"reference": patient_url}]
            ),
        },  # fmt: skip
        patient_entry(patient_url),
    )
    assert validate(doc) == []


def test_searchset_entries_and_their_modes() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "information",
               "code": "informational"}]}  # fmt: skip
    ok = bundle(
        "searchset",
        {**patient_entry("http://x.org/fhir/Patient/p1"), "search": {"mode": "match"}},
        {"fullUrl": "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000004", "resource": outcome},
    )
    assert validate(ok) == []
    nameless = {"resourceType": "Patient"}
    no_id = bundle("searchset", {"fullUrl": "http://x.org/a", "resource": nameless,
                                 "search": {"mode": "match"}})  # fmt: skip
    assert where(no_id) == [("invalid", "Bundle.entry[0].resource")]
    not_outcome = bundle("searchset", {**patient_entry("http://x.org/fhir/Patient/p1"),
                                       "search": {"mode": "outcome"}})  # fmt: skip
    assert where(not_outcome) == [("invalid", "Bundle.entry[0].resource")]


def test_transaction_bundles_keep_their_own_rules() -> None:
    """A transaction or batch is processed, not kept: relative or missing fullUrls and
    urn:uuid placeholders are fine here (the transaction interaction checks them)."""
    entry = {"fullUrl": "Patient/relative",
             "resource": {"resourceType": "Patient"},
             "request": {"method": "POST", "url": "Patient"}}  # fmt: skip
    second = {**entry, "fullUrl": "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000005"}
    assert validate(bundle("transaction", entry, second)) == []


# --------------------------------------------------------------------------- over HTTP


async def test_write_breaking_an_invariant_is_a_400_naming_it(client) -> None:
    body = encounter(period={"start": "2024-05-02", "end": "2024-05-01"})
    response = await client.post("Encounter", content=json.dumps(body), headers=JSON)
    assert response.status_code == 400
    issue = response.json()["issue"]
    assert [(i["code"], i["expression"]) for i in issue] == [("invariant", ["Encounter.period"])]
    assert "per-1" in issue[0]["diagnostics"]


async def test_narrative_with_a_script_is_not_stored(client) -> None:
    body = with_div(f'<div {XHTML}><p onmouseover="steal()">hi</p><script>x()</script></div>')
    response = await client.post("Patient", content=json.dumps(body), headers=JSON)
    assert response.status_code == 400
    issues = response.json()["issue"]
    assert len(issues) == 2
    assert all(i["expression"] == ["Patient.text.div"] for i in issues)
    assert (await client.get("Patient")).json().get("total", 0) == 0


async def test_transaction_with_placeholders_is_still_processed(client) -> None:
    patient = "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000006"
    body = bundle(
        "transaction",
        {"fullUrl": patient, "resource": {"resourceType": "Patient", "name": [{"family": "A"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0c3a4b6e-1111-4c2b-9d6e-000000000007",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": patient}},
         "request": {"method": "POST", "url": "Observation"}},
    )  # fmt: skip
    response = await client.post("", content=json.dumps(body), headers=JSON)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"][:3] for e in response.json()["entry"]] == ["201", "201"]
