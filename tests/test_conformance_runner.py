"""Unit tests of the conformance kit itself: paths, templates, matching, schema and runner.

The runner is driven against a tiny fake FHIR server (``httpx.MockTransport``), so these
tests need no real server. The kit follows https://hl7.org/fhir/R4/http.html.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance import __main__ as cli
from conformance.expect import (
    Response,
    check_assertions,
    check_headers,
    check_outcome,
    check_response,
    subset_mismatches,
)
from conformance.loader import CaseFileError, load_cases, parse_file, select_cases
from conformance.paths import PathError, evaluate, json_equal, loads, text_of
from conformance.runner import run
from conformance.template import TemplateError, render, render_json

BUNDLE = {
    "resourceType": "Bundle",
    "type": "history",
    "link": [
        {"relation": "self", "url": "http://x/fhir/_history"},
        {"relation": "next", "url": "http://x/fhir/_history?page=2"},
    ],
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "abc-1", "meta": {"versionId": "2"}}},
        {"resource": {"resourceType": "Patient", "id": "zzz", "meta": {"versionId": "1"}}},
        {"resource": {"resourceType": "Patient", "id": "abc-1", "meta": {"versionId": "1"}}},
        {"request": {"method": "DELETE", "url": "Patient/q"}},
    ],
}


# --- paths -----------------------------------------------------------------------------


def test_path_flattens_like_fhirpath() -> None:
    assert evaluate(BUNDLE, "entry.resource.meta.versionId") == ["2", "1", "1"]


def test_path_index_and_negative_index() -> None:
    assert evaluate(BUNDLE, "entry[0].resource.id") == ["abc-1"]
    assert evaluate(BUNDLE, "entry[-1].request.method") == ["DELETE"]
    assert evaluate(BUNDLE, "entry[9]") == []


def test_path_filters() -> None:
    assert evaluate(BUNDLE, "link[?relation=next].url") == ["http://x/fhir/_history?page=2"]
    assert evaluate(BUNDLE, "entry[?resource.id^=abc-].resource.meta.versionId") == ["2", "1"]
    assert evaluate(BUNDLE, "link[?relation!=next].relation") == ["self"]


def test_path_root_and_nulls() -> None:
    doc = {"given": ["a", None, "b"]}
    assert evaluate(doc, "") == [doc]
    assert evaluate(doc, "given") == ["a", "b"]


@pytest.mark.parametrize("bad", ["a[", "a]", "a[x]", "a..b", "a[?novalue]"])
def test_path_errors_are_precise(bad: str) -> None:
    with pytest.raises(PathError, match=r"\S"):
        evaluate({}, bad)


def test_decimal_text_is_kept() -> None:
    doc = loads('{"a": 72.50, "b": 1.0e2, "c": 0.010, "d": 7}')
    assert [text_of(doc[k]) for k in "abcd"] == ["72.50", "1.0e2", "0.010", "7"]
    assert doc["a"] == 72.5


def test_json_equal_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal(loads("72.50"), 72.5)
    assert not json_equal(True, 1)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert json_equal([None, {"x": "y"}], [None, {"x": "y"}])


# --- templates -------------------------------------------------------------------------


def test_render_variables_and_pad() -> None:
    assert render("Patient/{{id}}/{{ pad:3 }}", {"id": "p1"}) == "Patient/p1/xxx"


def test_render_escapes_values_in_regexes() -> None:
    assert render("^{{base}}/x$", {"base": "http://a.b/fhir"}, regex=True) == (
        r"^http://a\.b/fhir/x$"
    )


def test_render_unknown_variable_names_the_known_ones() -> None:
    with pytest.raises(TemplateError, match=r"unknown variable \{\{idd\}\} \(known: id\)"):
        render("{{idd}}", {"id": "1"})


def test_render_json_leaves_keys_alone() -> None:
    assert render_json({"{{k}}": ["{{k}}", 1]}, {"k": "v"}) == {"{{k}}": ["v", 1]}


# --- matching --------------------------------------------------------------------------


def _response(
    body: Any = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    text: str | None = None,
) -> Response:
    raw = text if text is not None else ("" if body is None else json.dumps(body))
    return Response.build(status, httpx.Headers(headers or {}), raw.encode(), "GET", "http://x")


def test_subset_reports_the_json_path() -> None:
    assert subset_mismatches({"meta": {"versionId": "1"}}, {"meta": {"versionId": "2"}}) == [
        '$.meta.versionId: expected "1", got "2"'
    ]
    assert subset_mismatches([1, 2], [1]) == ["$: expected 2 items, got 1: [1]"]


@pytest.mark.parametrize(
    ("assertion", "ok"),
    [
        ({"path": "entry", "count": 4}, True),
        ({"path": "entry", "count": 3}, False),
        ({"path": "type", "equals": "history"}, True),
        ({"path": "entry.resource.id", "equals": "abc-1"}, False),  # three items, not one
        ({"path": "type", "not_equals": "searchset"}, True),
        ({"path": "type", "in": ["batch", "history"]}, True),
        ({"path": "entry.resource.meta.versionId", "items": ["2", "1", "1"]}, True),
        ({"path": "entry.resource.meta.versionId", "contains": "2"}, True),
        ({"path": "entry.resource.meta.versionId", "not_contains": "3"}, True),
        ({"path": "entry.resource.meta.versionId", "contains_all": ["1", "3"]}, False),
        ({"path": "entry.resource.id", "matches": "^(abc-1|zzz)$"}, True),
        ({"path": "entry.resource.id", "matches": "^abc"}, False),
        ({"path": "entry.resource.id", "any_matches": "^zz"}, True),
        ({"path": "nothing", "exists": False}, True),
        ({"path": "nothing", "absent": True}, True),
        ({"path": "type", "absent": True}, False),
        ({"path": "entry.resource.meta.versionId", "sorted": "desc"}, True),
        ({"path": "entry.resource.meta.versionId", "sorted": "asc"}, False),
        ({"path": "entry.resource.id", "unique": True}, False),
        ({"path": "link.relation", "unique": True}, True),
        ({"path": "entry.resource.meta.versionId", "same_items": ["1", "2", "1"]}, True),
        ({"path": "entry.resource.meta.versionId", "same_items": ["1", "2"]}, False),
        ({"path": "entry.resource.meta.versionId", "same_items": ["2", "2", "1"]}, False),
        ({"path": "nothing", "same_items": []}, True),
        ({"path": "entry.resource.id", "not_matches": "^q"}, True),
        ({"path": "entry.resource.id", "not_matches": "^zz"}, False),
        ({"path": "nothing", "not_matches": "x"}, True),
    ],
)
def test_assertion_operators(assertion: dict[str, Any], ok: bool) -> None:
    assert (check_assertions([assertion], BUNDLE, {}) == []) is ok


def test_assertion_raw_compares_decimal_text() -> None:
    body = loads('{"valueQuantity": {"value": 72.5}}')
    failures = check_assertions([{"path": "valueQuantity.value", "raw": "72.50"}], body, {})
    assert failures == ['valueQuantity.value: expected raw "72.50", got [72.5]']


def test_sorted_compares_instants_across_zones() -> None:
    body = {"t": ["2024-01-01T09:30:00+02:00", "2024-01-01T08:00:00Z"]}  # 07:30Z, 08:00Z
    assert check_assertions([{"path": "t", "sorted": "asc"}], body, {}) == []


def test_header_checks() -> None:
    response = _response(
        headers={"ETag": 'W/"1"', "Location": "http://x/fhir/Patient/a/_history/1"}
    )
    spec = {
        "etag": 'W/"1"',
        "Location": {"matches": "^{{base}}/Patient/a/_history/1$"},
        "Last-Modified": {"present": True},
    }
    assert check_headers(spec, response, {"base": "http://x/fhir"}) == [
        "header Last-Modified: expected present, got None"
    ]


def test_outcome_check() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "expression": ["Patient.gender"]}],
    }
    response = _response(outcome, status=400)
    assert (
        check_outcome({"code": ["invalid", "structure"], "expression": "gender"}, response, {})
        == []
    )
    failures = check_outcome({"code": "not-found"}, response, {})
    assert failures and failures[0].startswith("OperationOutcome: expected an issue with code in")


def test_error_response_must_be_operation_outcome() -> None:
    failures = check_response({"status": 404}, _response(text="Not Found", status=404), {})
    assert failures == ["error response 404 is not an OperationOutcome: Not Found"]


def test_body_empty_and_text() -> None:
    response = _response(text='{"value": 72.50}')
    assert check_response({"status": 200, "body_empty": True}, response, {}) == [
        'body: expected an empty body, got {"value": 72.50}'
    ]
    assert check_response({"status": 200, "text": {"contains": ["72.50"]}}, response, {}) == []


# --- case files ------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, document: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def _file(steps: list[Any], topic: str = "demo") -> dict[str, Any]:
    return {
        "topic": topic,
        "title": "t",
        "spec": "https://hl7.org/fhir/R4/http.html",
        "cases": [{"name": "one", "title": "t", "steps": steps}],
    }


def test_bundled_case_files_are_valid_and_named_uniquely() -> None:
    cases = load_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)) > 50
    assert all(c.spec.startswith("https://") for c in cases)


def test_bad_case_file_fails_with_a_precise_message(tmp_path: Path) -> None:
    steps = [{"request": {"method": "GET", "path": "metadata"}, "expect": {"status": "ok"}}]
    with pytest.raises(CaseFileError) as info:
        parse_file(_write(tmp_path, "demo.json", _file(steps)))
    assert "demo.json: $.cases[0].steps[0].expect.status:" in str(info.value)


def test_unknown_expectation_key_is_rejected(tmp_path: Path) -> None:
    steps = [{"request": {"method": "GET", "path": "x"}, "expect": {"status": 200, "stauts": 1}}]
    with pytest.raises(CaseFileError, match=r"'stauts' was unexpected"):
        parse_file(_write(tmp_path, "demo.json", _file(steps)))


def test_topic_must_match_file_name(tmp_path: Path) -> None:
    steps = [{"sleep": 0.01}]
    with pytest.raises(CaseFileError, match=r"\$\.topic: 'demo' must equal the file name"):
        parse_file(_write(tmp_path, "other.json", _file(steps)))


def test_select_by_topic_name_or_glob() -> None:
    cases = load_cases()
    assert {c.name.split(".")[0] for c in select_cases(cases, ["delete"])} == {"delete"}
    assert [c.name for c in select_cases(cases, ["create.client-id-ignored"])] == [
        "create.client-id-ignored"
    ]
    assert select_cases(cases, ["*-412"])
    with pytest.raises(ValueError, match="no case matches"):
        select_cases(cases, ["nope"])


# --- runner against a fake server ----------------------------------------------------------


class FakeServer:
    """Just enough FHIR for the runner: PUT/GET Patient/{id}, a paged _history."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if path == "_history":
            page = int(request.url.params.get("page", "1"))
            bundle: dict[str, Any] = {
                "resourceType": "Bundle",
                "type": "history",
                "entry": [{"resource": {"id": f"p{page}"}}],
            }
            links = []
            if page < 3:
                links.append({"relation": "next", "url": f"_history?page={page + 1}"})
            if page > 1:
                links.append({"relation": "previous", "url": f"_history?page={page - 1}"})
            bundle["link"] = links
            return httpx.Response(200, json=bundle)
        kind, _, rid = path.partition("/")
        if kind != "Patient":
            return httpx.Response(404, text="nope")
        if request.method == "PUT":
            body = json.loads(request.content)
            version = int(self.store.get(rid, {}).get("meta", {}).get("versionId", "0")) + 1
            if request.headers.get("If-Match", f'W/"{version - 1}"') != f'W/"{version - 1}"':
                return httpx.Response(412, json=_outcome("conflict"))
            body["meta"] = {"versionId": str(version)}
            self.store[rid] = body
            return httpx.Response(
                201 if version == 1 else 200, json=body, headers={"ETag": f'W/"{version}"'}
            )
        if rid in self.store:
            return httpx.Response(200, json=self.store[rid])
        return httpx.Response(404, json=_outcome("not-found"))


def _outcome(code: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}


async def _run(tmp_path: Path, steps: list[Any]) -> Any:
    parse = parse_file(_write(tmp_path, "demo.json", _file(steps)))
    async with httpx.AsyncClient(transport=httpx.MockTransport(FakeServer())) as client:
        return await run("http://x/fhir", client=client, cases=parse)


PUT = {
    "method": "PUT",
    "path": "Patient/{{uid}}",
    "json": {"resourceType": "Patient", "id": "{{uid}}"},
}


async def test_runner_passes_and_captures(tmp_path: Path) -> None:
    report = await _run(
        tmp_path,
        [
            {
                "request": PUT,
                "expect": {"status": 201},
                "capture": {
                    "v": {"body": "meta.versionId"},
                    "tag": {"header": "ETag", "regex": '"(.+)"'},
                },
            },
            {
                "request": {"method": "GET", "path": "Patient/{{uid}}"},
                "expect": {
                    "status": 200,
                    "json": {"id": "{{uid}}", "meta": {"versionId": "{{tag}}"}},
                    "assert": [{"path": "meta.versionId", "equals": "{{v}}"}],
                },
            },
        ],
    )
    assert report.ok, report.table()
    assert "1 passed, 0 failed" in report.table()


async def test_runner_failure_names_step_request_and_mismatch(tmp_path: Path) -> None:
    report = await _run(
        tmp_path,
        [
            {"request": PUT, "expect": {"status": 201}},
            {"note": "second write", "request": PUT, "expect": {"status": 201}},
        ],
    )
    [result] = report.failed
    assert result.message.startswith(
        f"step 2 [PUT Patient/{result.message.split('/')[1].split(']')[0]}]"
    )
    assert "(second write): status: expected 201, got 200" in result.message


async def test_runner_requires_operation_outcome_on_errors(tmp_path: Path) -> None:
    report = await _run(
        tmp_path, [{"request": {"method": "GET", "path": "Foo/1"}, "expect": {"status": 404}}]
    )
    assert "error response 404 is not an OperationOutcome: nope" in report.failed[0].message


async def test_runner_parallel_counts_statuses(tmp_path: Path) -> None:
    step = {
        "parallel": {"count": 4, "request": {**PUT, "headers": {"If-Match": 'W/"1"'}}},
        "expect": {"status_counts": {"200": 1, "412": 3}},
    }
    report = await _run(tmp_path, [{"request": PUT, "expect": {"status": 201}}, step])
    assert report.ok, report.table()
    step["expect"] = {"status_counts": {"200": 4}}
    report = await _run(tmp_path, [{"request": PUT, "expect": {"status": 201}}, step])
    message = report.failed[0].message
    assert "statuses: expected {200: 4}, got {200: 1, 412: 3}; a 412 body: {" in message


async def test_runner_paginates_next_links(tmp_path: Path) -> None:
    step = {
        "paginate": {"request": {"method": "GET", "path": "_history"}},
        "expect": {
            "status": 200,
            "pages": 3,
            "max_page_entries": 1,
            "assert": [{"path": "entry.resource.id", "items": ["p1", "p2", "p3"]}],
        },
    }
    report = await _run(tmp_path, [step])
    assert report.ok, report.table()


async def test_runner_paginates_previous_links(tmp_path: Path) -> None:
    step = {
        "paginate": {
            "request": {"method": "GET", "url": "_history?page=3"},
            "relation": "previous",
        },
        "expect": {
            "status": 200,
            "pages": 3,
            "assert": [{"path": "entry.resource.id", "items": ["p3", "p2", "p1"]}],
        },
    }
    report = await _run(tmp_path, [step])
    assert report.ok, report.table()


def test_assertion_failure_shows_same_items_and_not_matches() -> None:
    body = {"ids": ["a", "b"]}
    assert check_assertions([{"path": "ids", "same_items": ["b", "c"]}], body, {}) == [
        'ids: expected same_items ["b", "c"], got ["a", "b"]'
    ]
    assert check_assertions([{"path": "ids", "not_matches": "^{{x}}$"}], body, {"x": "a"}) == [
        'ids: expected not_matches "^a$", got ["a", "b"]'
    ]


def test_case_note_is_allowed(tmp_path: Path) -> None:
    document = _file([{"sleep": 0.01}])
    document["cases"][0]["note"] = "why the expectations are what they are"
    assert parse_file(_write(tmp_path, "demo.json", document))[0].name == "demo.one"


async def test_runner_unknown_variable_fails_the_case(tmp_path: Path) -> None:
    report = await _run(
        tmp_path,
        [{"request": {"method": "GET", "path": "Patient/{{nope}}"}, "expect": {"status": 200}}],
    )
    assert "unknown variable {{nope}}" in report.failed[0].message


def test_cli_lists_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list", "--case", "capabilities"]) == 0
    assert "capabilities.capability-statement" in capsys.readouterr().out


def test_cli_rejects_unknown_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--base-url", "http://127.0.0.1:9/fhir", "--case", "nope"]) == 2
    assert "no case matches" in capsys.readouterr().err
