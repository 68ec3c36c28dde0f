"""Check one HTTP response against a step's expectations.

Each check returns human-readable failures (expected vs actual), never raises for a
mismatch. The checks follow the spec's own terms: status codes and headers of
https://hl7.org/fhir/R4/http.html, OperationOutcome issues of
https://hl7.org/fhir/R4/operationoutcome.html.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conformance.paths import PathError, RawFloat, evaluate, json_equal, loads, text_of
from conformance.template import render, render_json

_PREVIEW = 300


@dataclass
class Response:
    """What the runner keeps of one HTTP response."""

    status: int
    headers: Mapping[str, str]
    text: str
    method: str = "GET"
    url: str = ""
    body: Any = None
    json_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls, status: int, headers: Mapping[str, str], content: bytes, method: str, url: str
    ) -> Response:
        text = content.decode("utf-8", errors="replace")
        response = cls(status=status, headers=headers, text=text, method=method, url=url)
        if text.strip():
            try:
                response.body = loads(text)
            except ValueError as exc:
                response.json_error = str(exc)
        return response


def preview(value: Any, limit: int = _PREVIEW) -> str:
    """A short JSON rendering of a value for failure messages (decimals as written)."""
    return preview_text(_dump(value), limit)


def _dump(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    if isinstance(value, RawFloat):
        return value.raw
    return json.dumps(value, ensure_ascii=False, default=str)


def preview_text(text: str, limit: int = _PREVIEW) -> str:
    """A short rendering of raw body text for failure messages."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def status_ok(expected: int | list[int], actual: int) -> bool:
    return actual in expected if isinstance(expected, list) else actual == expected


def check_error_is_outcome(response: Response) -> list[str]:
    """Every error response must carry an OperationOutcome (DESIGN: Errors)."""
    if response.status < 400 or response.method == "HEAD":
        return []
    body = response.body
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        if isinstance(body.get("issue"), list) and body["issue"]:
            return []
        return [f"error response {response.status} is an OperationOutcome without issues"]
    return [
        f"error response {response.status} is not an OperationOutcome: "
        f"{preview_text(response.text or '<empty body>')}"
    ]


def check_headers(
    spec: Mapping[str, Any], response: Response, variables: Mapping[str, str]
) -> list[str]:
    failures: list[str] = []
    for name, rule in spec.items():
        rule = {"equals": rule} if isinstance(rule, str) else rule
        actual = response.headers.get(name)
        if "present" in rule and (actual is not None) != rule["present"]:
            want = "present" if rule["present"] else "absent"
            failures.append(f"header {name}: expected {want}, got {actual!r}")
            continue
        if actual is None:
            if any(k in rule for k in ("equals", "contains", "matches")):
                failures.append(f"header {name}: expected {_describe(rule, variables)}, got none")
            continue
        failures += _check_header_value(name, rule, actual, variables)
    return failures


def _describe(rule: Mapping[str, Any], variables: Mapping[str, str]) -> str:
    parts = []
    for key in ("equals", "contains", "not_contains", "matches"):
        if key in rule:
            parts.append(f"{key} {render(rule[key], variables, regex=key == 'matches')!r}")
    return ", ".join(parts) or "present"


def _check_header_value(
    name: str, rule: Mapping[str, Any], actual: str, variables: Mapping[str, str]
) -> list[str]:
    failures = []
    if "equals" in rule and actual != (want := render(rule["equals"], variables)):
        failures.append(f"header {name}: expected {want!r}, got {actual!r}")
    if "contains" in rule and (want := render(rule["contains"], variables)) not in actual:
        failures.append(f"header {name}: expected to contain {want!r}, got {actual!r}")
    if "not_contains" in rule and (want := render(rule["not_contains"], variables)) in actual:
        failures.append(f"header {name}: expected not to contain {want!r}, got {actual!r}")
    if "matches" in rule:
        pattern = render(rule["matches"], variables, regex=True)
        if not re.search(pattern, actual):
            failures.append(f"header {name}: expected to match /{pattern}/, got {actual!r}")
    return failures


def check_text(
    spec: Mapping[str, list[str]], response: Response, variables: Mapping[str, str]
) -> list[str]:
    failures = []
    text = response.text
    for needle in spec.get("contains", []):
        if (want := render(needle, variables)) not in text:
            failures.append(f"body text: expected to contain {want!r}, got {preview_text(text)}")
    for needle in spec.get("not_contains", []):
        if (want := render(needle, variables)) in text:
            failures.append(
                f"body text: expected not to contain {want!r}, got {preview_text(text)}"
            )
    for pattern in spec.get("matches", []):
        if not re.search(want := render(pattern, variables, regex=True), text):
            failures.append(f"body text: expected to match /{want}/, got {preview_text(text)}")
    for pattern in spec.get("not_matches", []):
        if found := re.search(want := render(pattern, variables, regex=True), text):
            failures.append(f"body text: expected not to match /{want}/, found {found.group(0)!r}")
    return failures


def subset_mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where ``actual`` fails to contain ``expected`` (objects by subset, arrays by item)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {preview(actual, 80)}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: expected {preview(value, 80)}, got nothing")
            else:
                out += subset_mismatches(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected an array, got {preview(actual, 80)}"]
        if len(expected) != len(actual):
            return [
                f"{where}: expected {len(expected)} items, got {len(actual)}: "
                f"{preview(actual, 120)}"
            ]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += subset_mismatches(e, a, f"{where}[{i}]")
        return out
    if not json_equal(expected, actual):
        return [f"{where}: expected {preview(expected, 80)}, got {preview(actual, 80)}"]
    return []


def check_json(expected: Any, response: Response, variables: Mapping[str, str]) -> list[str]:
    if response.body is None:
        return [f"body: expected JSON, got {_no_json(response)}"]
    return [f"body {m}" for m in subset_mismatches(render_json(expected, variables), response.body)]


def check_json_equals(
    spec: Mapping[str, Any], response: Response, variables: Mapping[str, str]
) -> list[str]:
    if response.body is None:
        return [f"body: expected JSON, got {_no_json(response)}"]
    actual = response.body
    if isinstance(actual, dict):
        actual = {k: v for k, v in actual.items() if k not in spec.get("ignore", [])}
    expected = render_json(spec["value"], variables)
    if json_equal(expected, actual):
        return []
    details = subset_mismatches(expected, actual)
    extra = (
        sorted(set(actual) - set(expected))
        if isinstance(actual, dict) and isinstance(expected, dict)
        else []
    )
    if extra:
        details.append(f"$: unexpected members {extra}")
    return ["body: not equal to the expected JSON: " + "; ".join(details[:5])]


def _no_json(response: Response) -> str:
    if response.json_error:
        return f"invalid JSON ({response.json_error}): {preview_text(response.text, 120)}"
    return "an empty body"


def check_outcome(
    spec: Mapping[str, Any], response: Response, variables: Mapping[str, str]
) -> list[str]:
    body = response.body
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        shown = preview(body) if body is not None else preview_text(response.text or "<empty>")
        return [f"body: expected an OperationOutcome, got {shown}"]
    issues = [i for i in body.get("issue", []) if isinstance(i, dict)]
    if not issues:
        return ["OperationOutcome: expected at least one issue, got none"]
    wanted = {
        k: ([v] if isinstance(v, str) else v) for k, v in spec.items() if k in ("code", "severity")
    }
    patterns = {
        k: render(spec[k], variables, regex=True)
        for k in ("expression", "diagnostics")
        if k in spec
    }
    for issue in issues:
        if all(issue.get(k) in v for k, v in wanted.items()) and all(
            _issue_matches(issue, k, p) for k, p in patterns.items()
        ):
            return []
    want = ", ".join(f"{k} in {v}" for k, v in wanted.items())
    want += "".join(f", {k} matching /{p}/" for k, p in patterns.items())
    return [f"OperationOutcome: expected an issue with {want.lstrip(', ')}, got {preview(issues)}"]


def _issue_matches(issue: Mapping[str, Any], key: str, pattern: str) -> bool:
    values = issue.get(key)
    if key == "expression":
        values = list(values or []) + list(issue.get("location") or [])
    else:
        values = [values] if values else []
    return any(isinstance(v, str) and re.search(pattern, v) for v in values)


def check_assertions(
    assertions: list[Mapping[str, Any]], body: Any, variables: Mapping[str, str]
) -> list[str]:
    failures: list[str] = []
    for assertion in assertions:
        path = render(assertion["path"], variables)
        try:
            items = evaluate(body, path)
        except PathError as exc:
            failures.append(f"{path}: {exc}")
            continue
        for op, raw_value in assertion.items():
            if op == "path":
                continue
            regex = op in ("matches", "any_matches", "not_matches")
            value = (
                render(raw_value, variables, regex=regex)
                if isinstance(raw_value, str)
                else render_json(raw_value, variables)
            )
            if not _OPS[op](items, value):
                failures.append(
                    f"{path}: expected {op} {preview(value, 120)}, got {preview(items, 200)}"
                )
    return failures


def _sorted(items: list[Any], order: str) -> bool:
    keys = [_sort_key(v) for v in items]
    try:
        return keys == sorted(keys, reverse=order == "desc")
    except TypeError:
        return False


def _sort_key(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def _one(items: list[Any], test: Any) -> bool:
    return len(items) == 1 and bool(test(items[0]))


def _same_items(items: list[Any], wanted: list[Any]) -> bool:
    """The same items as ``wanted`` in any order, each as often (a multiset)."""
    if len(items) != len(wanted):
        return False
    left = list(wanted)
    for item in items:
        index = next((i for i, w in enumerate(left) if json_equal(item, w)), None)
        if index is None:
            return False
        del left[index]
    return True


_OPS: dict[str, Any] = {
    "exists": lambda items, v: bool(items) == v,
    "absent": lambda items, v: not items,
    "count": lambda items, v: len(items) == v,
    "equals": lambda items, v: _one(items, lambda x: json_equal(x, v)),
    "not_equals": lambda items, v: _one(items, lambda x: not json_equal(x, v)),
    "in": lambda items, v: _one(items, lambda x: any(json_equal(x, w) for w in v)),
    "items": lambda items, v: json_equal(items, v),
    "same_items": _same_items,
    "contains": lambda items, v: any(json_equal(x, v) for x in items),
    "contains_all": lambda items, v: all(any(json_equal(x, w) for x in items) for w in v),
    "not_contains": lambda items, v: not any(json_equal(x, v) for x in items),
    "matches": lambda items, v: bool(items) and all(re.search(v, text_of(x)) for x in items),
    "any_matches": lambda items, v: any(re.search(v, text_of(x)) for x in items),
    "not_matches": lambda items, v: not any(re.search(v, text_of(x)) for x in items),
    "raw": lambda items, v: _one(items, lambda x: text_of(x) == v),
    "sorted": lambda items, v: _sorted(items, v),
    "unique": lambda items, v: len({text_of(x) for x in items}) == len(items),
}


def check_response(
    expect: Mapping[str, Any], response: Response, variables: Mapping[str, str]
) -> list[str]:
    """Every expectation except status (checked first by the runner) and captures."""
    failures = check_error_is_outcome(response)
    if "headers" in expect:
        failures += check_headers(expect["headers"], response, variables)
    if "body_empty" in expect and (response.text == "") != expect["body_empty"]:
        want = "an empty body" if expect["body_empty"] else "a body"
        failures.append(f"body: expected {want}, got {preview_text(response.text or '<empty>')}")
    if "text" in expect:
        failures += check_text(expect["text"], response, variables)
    if "json" in expect:
        failures += check_json(expect["json"], response, variables)
    if "json_equals" in expect:
        failures += check_json_equals(expect["json_equals"], response, variables)
    if "outcome" in expect:
        failures += check_outcome(expect["outcome"], response, variables)
    if "assert" in expect:
        if response.body is None:
            failures.append(f"body: expected JSON for assertions, got {_no_json(response)}")
        else:
            failures += check_assertions(expect["assert"], response.body, variables)
    return failures
