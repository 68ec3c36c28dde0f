"""Load the case files in ``conformance/cases/`` and check them against ``case.schema.json``.

A case file holds the cases of one topic of https://hl7.org/fhir/R4/http.html; a bad file
fails with the file, the JSON path of the offending value and the schema's message, e.g.
``create.json: $.cases[2].steps[0].expect.status: 'abc' is not valid under any of the
given schemas``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

PACKAGE_DIR = Path(__file__).resolve().parent
CASES_DIR = PACKAGE_DIR / "cases"
SCHEMA_PATH = PACKAGE_DIR / "case.schema.json"


class CaseFileError(ValueError):
    """A case file that is not valid JSON or does not follow the case schema."""


@dataclass(frozen=True)
class Case:
    """One conformance case: a named sequence of steps."""

    name: str  # "{topic}.{case name}"
    title: str
    spec: str
    steps: tuple[dict[str, Any], ...]
    source: str  # file name, for messages


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def validate_document(document: Any, source: str) -> None:
    """Raise CaseFileError listing where ``document`` breaks the case schema."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = []
    for error in errors[:5]:
        best = jsonschema.exceptions.best_match([error])
        lines.append(f"{source}: {best.json_path}: {best.message}")
    if len(errors) > 5:
        lines.append(f"{source}: ... and {len(errors) - 5} more errors")
    raise CaseFileError("\n".join(lines))


def parse_file(path: Path) -> list[Case]:
    """Read one case file into cases, after checking it against the schema."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CaseFileError(f"{path.name}: not valid JSON: {exc}") from None
    validate_document(document, path.name)
    topic = document["topic"]
    if topic != path.stem:
        raise CaseFileError(f"{path.name}: $.topic: {topic!r} must equal the file name")
    return [
        Case(
            name=f"{topic}.{raw['name']}",
            title=raw["title"],
            spec=raw.get("spec", document["spec"]),
            steps=tuple(raw["steps"]),
            source=path.name,
        )
        for raw in document["cases"]
    ]


def load_cases(directory: Path | None = None) -> list[Case]:
    """All cases of all files in ``directory`` (default: the bundled cases), in file order."""
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for path in sorted((directory or CASES_DIR).glob("*.json")):
        for case in parse_file(path):
            if case.name in seen:
                raise CaseFileError(f"{path.name}: case {case.name!r} is also in {seen[case.name]}")
            seen[case.name] = path.name
            cases.append(case)
    return cases


def select_cases(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """Cases whose name equals a pattern, lies under a topic pattern, or matches a glob."""
    if not patterns:
        return list(cases)

    def wanted(name: str) -> bool:
        return any(
            name == p or name.startswith(p.rstrip(".") + ".") or fnmatchcase(name, p)
            for p in patterns
        )

    chosen = [case for case in cases if wanted(case.name)]
    if not chosen:
        raise ValueError(f"no case matches {patterns!r}")
    return chosen
