"""Command line: run the conformance cases against a FHIR base URL and print a table.

    python -m conformance --base-url http://127.0.0.1:8080/fhir [--case NAME ...] [--token T]

Exits 0 when every selected case passes, 1 when one fails, 2 on bad usage or case files.
The cases follow https://hl7.org/fhir/R4/http.html.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import httpx

from conformance.loader import Case, CaseFileError, load_cases, select_cases
from conformance.runner import DEFAULT_TIMEOUT, Report, run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Run black-box FHIR R4 REST conformance cases against a server.",
    )
    parser.add_argument("--base-url", help="FHIR base URL, e.g. http://127.0.0.1:8080/fhir")
    parser.add_argument(
        "--case",
        action="append",
        dest="cases",
        metavar="NAME",
        help="case name, topic (file name) or glob; repeatable",
    )
    parser.add_argument("--token", help="bearer token sent as Authorization on every request")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra header on every request; repeatable",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per request (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cases = select_cases(load_cases(), args.cases)
    except (CaseFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for case in cases:
            print(f"{case.name}  {case.title}")
        return 0
    if not args.base_url:
        parser.error("--base-url is required")
    headers = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            parser.error(f"--header {item!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    report = asyncio.run(_run(args.base_url, headers, cases, args.timeout))
    print(report.table())
    return 0 if report.ok else 1


async def _run(base_url: str, headers: dict[str, str], cases: list[Case], timeout: float) -> Report:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await run(base_url, client=client, headers=headers, cases=cases)


if __name__ == "__main__":
    sys.exit(main())
