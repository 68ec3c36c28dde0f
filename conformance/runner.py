"""Run conformance cases against any FHIR base URL, over HTTP only.

The cases check the RESTful API of https://hl7.org/fhir/R4/http.html: each case is a
sequence of steps (one request, N concurrent requests, a paged request that follows
``next`` (or ``previous``) links, or a pause), each with expectations on the response.
A case stops at its first failing step, and the report names the step, the request and
what was expected versus what came back.

Usage from code::

    report = await run("http://127.0.0.1:8080/fhir")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        report = await run("http://testserver/fhir", client=client, select=["create"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from conformance.expect import (
    Response,
    check_error_is_outcome,
    check_response,
    preview,
    preview_text,
    status_ok,
)
from conformance.loader import Case, load_cases, select_cases
from conformance.paths import PathError, evaluate, text_of
from conformance.template import TemplateError, render, render_json

DEFAULT_ACCEPT = "application/fhir+json"
DEFAULT_CONTENT_TYPE = "application/fhir+json"
DEFAULT_TIMEOUT = 60.0
_MAX_PAGES = 50


class StepFailure(Exception):
    """A step whose response did not meet its expectations."""


@dataclass
class CaseResult:
    """The outcome of one case."""

    name: str
    title: str
    spec: str
    passed: bool
    message: str = ""
    seconds: float = 0.0
    steps_run: int = 0


@dataclass
class Report:
    """The outcome of a run: one result per case, in case order."""

    base_url: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> list[CaseResult]:
        return [r for r in self.results if r.passed]

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def table(self) -> str:
        """A plain-text table of all cases, then the failure messages in full."""
        width = max([len(r.name) for r in self.results] + [4])
        lines = [f"{'RESULT':6}  {'CASE':{width}}  {'SECONDS':>7}  TITLE"]
        for r in self.results:
            mark = "pass" if r.passed else "FAIL"
            lines.append(f"{mark:6}  {r.name:{width}}  {r.seconds:7.2f}  {r.title}")
        lines.append("")
        lines.append(
            f"{len(self.passed)} passed, {len(self.failed)} failed against {self.base_url}"
        )
        for r in self.failed:
            lines += ["", f"FAIL {r.name}  ({r.spec})", _indent(r.message)]
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


async def run(
    base_url: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: dict[str, str] | None = None,
    select: list[str] | None = None,
    cases: list[Case] | None = None,
) -> Report:
    """Run the selected cases (default: all bundled cases) against ``base_url``.

    ``client`` lets tests pass e.g. an ``httpx.AsyncClient`` over ``httpx.ASGITransport``;
    ``headers`` are sent with every request (e.g. ``Authorization``); ``select`` holds
    case names, topics (file names) or globs.
    """
    chosen = select_cases(cases if cases is not None else load_cases(), select)
    base = base_url.rstrip("/")
    report = Report(base_url=base)
    run_token = secrets.token_hex(4)
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)
    try:
        for case in chosen:
            runner = _CaseRunner(http, base, dict(headers or {}), run_token)
            report.results.append(await runner.run(case))
    finally:
        if own_client:
            await http.aclose()
    return report


class _CaseRunner:
    """Runs the steps of one case, keeping its variables."""

    def __init__(
        self, client: httpx.AsyncClient, base: str, headers: dict[str, str], run_token: str
    ) -> None:
        self.client = client
        self.base = base
        self.headers = headers
        self.variables: dict[str, str] = {
            "run": run_token,
            "uid": secrets.token_hex(6),
            "base": base,
        }

    async def run(self, case: Case) -> CaseResult:
        started = time.perf_counter()
        result = CaseResult(case.name, case.title, case.spec, passed=True)
        for index, step in enumerate(case.steps, start=1):
            result.steps_run = index
            try:
                await self._step(step)
            except (StepFailure, TemplateError, PathError) as exc:
                result.passed = False
                result.message = _where(index, step, self.variables) + str(exc)
                break
            except httpx.HTTPError as exc:
                result.passed = False
                result.message = (
                    _where(index, step, self.variables)
                    + f"request failed: {type(exc).__name__}: {exc}"
                )
                break
        result.seconds = time.perf_counter() - started
        return result

    async def _step(self, step: Mapping[str, Any]) -> None:
        if "sleep" in step:
            await asyncio.sleep(step["sleep"])
        elif "request" in step:
            await self._single(step)
        elif "parallel" in step:
            await self._parallel(step)
        else:
            await self._paginate(step)

    async def _single(self, step: Mapping[str, Any]) -> None:
        response = await self._send(step["request"], self.variables)
        expect = step["expect"]
        _check_status(expect["status"], response)
        self._capture(step.get("capture", {}), response)
        _raise_if(check_response(expect, response, self.variables), response)

    async def _parallel(self, step: Mapping[str, Any]) -> None:
        spec = step["parallel"]
        requests = [
            self._send(spec["request"], {**self.variables, "i": str(i)})
            for i in range(spec["count"])
        ]
        responses = await asyncio.gather(*requests)
        expect = step["expect"]
        counts = Counter(r.status for r in responses)
        wanted = {int(k): v for k, v in expect["status_counts"].items() if v}
        failures = []
        if dict(counts) != wanted:
            extra = {r.status: r for r in responses if counts[r.status] > wanted.get(r.status, 0)}
            samples = "".join(
                f"; a {status} body: {preview_text(r.text or '<empty>', 200)}"
                for status, r in sorted(extra.items())
            )
            failures.append(f"statuses: expected {_counts(wanted)}, got {_counts(counts)}{samples}")
        for name in expect.get("distinct_headers", []):
            values = [r.headers[name] for r in responses if name in r.headers]
            if len(set(values)) != len(values):
                failures.append(f"header {name}: expected distinct values, got {values}")
        for response in responses:
            failures += check_error_is_outcome(response)
        if failures:
            raise StepFailure("; ".join(dict.fromkeys(failures)))

    async def _paginate(self, step: Mapping[str, Any]) -> None:
        spec, expect = step["paginate"], step["expect"]
        max_pages = spec.get("max_pages", _MAX_PAGES)
        relation = spec.get("relation", "next")
        response = await self._send(spec["request"], self.variables)
        pages: list[Response] = []
        while True:
            pages.append(response)
            _check_status(expect["status"], response, page=len(pages))
            failures = check_error_is_outcome(response)
            entries = _entries(response)
            limit = expect.get("max_page_entries")
            if limit is not None and len(entries) > limit:
                failures.append(
                    f"page {len(pages)}: expected at most {limit} entries, got {len(entries)}"
                )
            _raise_if(failures, response)
            links = evaluate(response.body, f"link[?relation={relation}].url")
            if not links:
                break
            if len(pages) >= max_pages:
                raise StepFailure(f"more than {max_pages} pages; last {relation} link {links[0]!r}")
            url = urljoin(response.url, text_of(links[0]))
            response = await self._send({"method": "GET", "url": url}, {}, literal=True)
        merged = Response(
            status=pages[0].status,
            headers=pages[0].headers,
            text="",
            method="GET",
            url=pages[0].url,
        )
        merged.body = {
            "resourceType": "Bundle",
            "type": (pages[0].body or {}).get("type"),
            "entry": [e for page in pages for e in _entries(page)],
        }
        merged.text = json.dumps(merged.body)
        failures = []
        if "pages" in expect and len(pages) != expect["pages"]:
            failures.append(f"pages: expected {expect['pages']}, got {len(pages)}")
        if "min_pages" in expect and len(pages) < expect["min_pages"]:
            failures.append(f"pages: expected at least {expect['min_pages']}, got {len(pages)}")
        rest = {
            k: v for k, v in expect.items() if k not in ("pages", "min_pages", "max_page_entries")
        }
        failures += check_response(rest, merged, self.variables)
        _raise_if(failures, merged)

    def _capture(self, captures: Mapping[str, Mapping[str, Any]], response: Response) -> None:
        for name, rule in captures.items():
            if "body" in rule:
                items = evaluate(response.body, rule["body"])
                if len(items) != 1:
                    raise StepFailure(
                        f"capture {name}: path {rule['body']!r} should give one "
                        f"value, got {preview(items, 200)}"
                    )
                value = text_of(items[0])
            elif "header" in rule:
                found = response.headers.get(rule["header"])
                if found is None:
                    raise StepFailure(f"capture {name}: no {rule['header']} header")
                value = found
            else:
                value = response.text
            if "regex" in rule:
                value = _regex_capture(name, rule["regex"], value)
            self.variables[name] = value

    async def _send(
        self, spec: Mapping[str, Any], variables: Mapping[str, str], *, literal: bool = False
    ) -> Response:
        method = spec["method"]
        url = self._url(spec, variables, literal)
        headers = {"Accept": DEFAULT_ACCEPT, **self.headers}
        content: bytes | None = None
        if "json" in spec:
            headers["Content-Type"] = DEFAULT_CONTENT_TYPE
            content = json.dumps(render_json(spec["json"], variables), ensure_ascii=False).encode(
                "utf-8"
            )
        elif "body" in spec:
            content = render(spec["body"], variables).encode("utf-8")
        removed = []
        for name, value in spec.get("headers", {}).items():
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            if value is None:
                removed.append(name)
            else:
                headers[name] = render(value, variables)
        request = self.client.build_request(
            method,
            url,
            headers=headers,
            content=content,
            params=_query(spec.get("query"), variables),
        )
        for name in removed:
            request.headers.pop(name, None)
        reply = await self.client.send(request)
        return Response.build(
            reply.status_code, reply.headers, reply.content, method, str(reply.request.url)
        )

    def _url(self, spec: Mapping[str, Any], variables: Mapping[str, str], literal: bool) -> str:
        if "url" in spec:
            url = spec["url"] if literal else render(spec["url"], variables)
            return urljoin(self.base + "/", url)
        path = render(spec["path"], variables)
        return f"{self.base}/{path}" if path else self.base


def _query(query: Any, variables: Mapping[str, str]) -> list[tuple[str, str]] | None:
    if not query:
        return None
    pairs: list[tuple[str, str]] = []
    items = query.items() if isinstance(query, dict) else query
    for name, value in items:
        for one in value if isinstance(value, list) else [value]:
            pairs.append((render(name, variables), render(one, variables)))
    return pairs


def _entries(response: Response) -> list[Any]:
    body = response.body
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        shown = preview(body) if body is not None else preview_text(response.text or "<empty>")
        raise StepFailure(f"expected a Bundle, got {shown}")
    entries = body.get("entry", [])
    return entries if isinstance(entries, list) else []


def _regex_capture(name: str, pattern: str, value: str) -> str:
    match = re.search(pattern, value)
    if not match:
        raise StepFailure(f"capture {name}: /{pattern}/ does not match {value!r}")
    return match.group(1) if match.groups() else match.group(0)


def _check_status(expected: int | list[int], response: Response, page: int | None = None) -> None:
    if status_ok(expected, response.status):
        return
    where = f"page {page}: " if page and page > 1 else ""
    want = " or ".join(map(str, expected)) if isinstance(expected, list) else str(expected)
    raise StepFailure(
        f"{where}status: expected {want}, got {response.status}; "
        f"body: {preview_text(response.text or '<empty>')}"
    )


def _raise_if(failures: list[str], response: Response) -> None:
    if failures:
        raise StepFailure("; ".join(failures))


def _counts(counts: Mapping[int, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "}"


def _where(index: int, step: Mapping[str, Any], variables: Mapping[str, str]) -> str:
    request = (
        step.get("request")
        or step.get("parallel", {}).get("request")
        or step.get("paginate", {}).get("request")
    )
    label = ""
    if request:
        target = request.get("path", request.get("url", ""))
        with contextlib.suppress(TemplateError):
            target = render(target, variables)
        label = f" [{request['method']} {target}]"
        if "parallel" in step:
            label = f" [{step['parallel']['count']} x {request['method']} {target}]"
    elif "sleep" in step:
        label = " [sleep]"
    note = f" ({step['note']})" if step.get("note") else ""
    return f"step {index}{label}{note}: "
