"""Validate a resource a client sent, before it is stored: the structural walk, then the
fhir.resources model, whose pydantic errors become issues.

https://hl7.org/fhir/R4/validation.html (structure, cardinality, value domains and
required bindings; the model adds the calendar checks of
https://hl7.org/fhir/R4/datatypes.html#primitive). The walk reports first; the model's
errors are kept only about places the walk found nothing wrong with, nor inside, nor
around, so that one problem gives one issue.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from resources.errors import Issue
from resources.validation.json_walk import Walk

log = logging.getLogger(__name__)

_PYDANTIC_CODES = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "structure",
}
_ELEMENT_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9]*")
_STEP = re.compile(r"[.\[]")


def validate(resource: dict[str, Any]) -> list[Issue]:
    """All the problems of a resource (as parsed by ``fhir_json.loads``); [] when valid."""
    walk = Walk()
    try:
        cls = walk.resource(resource, "")
        if cls is None:
            return walk.issues
        root = resource["resourceType"]
        return walk.issues + _library_issues(walk, cls, resource, root)
    except RecursionError:
        return [Issue("structure", "The resource is nested too deeply to be validated")]
    except Exception:  # a validator bug must not become a 500; the tests keep it at zero
        if walk.issues:
            return walk.issues
        log.exception("validation failed unexpectedly")
        return [Issue("exception", "The resource could not be validated")]


def _library_issues(
    walk: Walk, cls: type[BaseModel], data: dict[str, Any], root: str
) -> list[Issue]:
    body = _without(data, walk.set_aside) if walk.set_aside else data
    issues = _model_issues(cls, body, root)
    for expr, value, model in walk.asides:
        issues.extend(_model_issues(model, value, expr))
    return _uncovered(issues, walk.issues) if walk.issues else issues


def _model_issues(cls: type[BaseModel], data: dict[str, Any], root: str) -> list[Issue]:
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        return [_pydantic_issue(error, root) for error in exc.errors()]
    return []


def _pydantic_issue(error: Any, root: str) -> Issue:
    error_type = str(error.get("type", ""))
    loc = tuple(error.get("loc", ()))
    expression = _expression(root, loc, keep_underscore=error_type == "extra_forbidden")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    code = _issue_code(error_type)
    if not loc:
        code = "invalid"
    return Issue(code, message, expression=(expression,))


def _expression(root: str, loc: tuple[Any, ...], keep_underscore: bool) -> str:
    """FHIRPath-like path of a pydantic error location: ``_given`` is ``given``, unless
    the error is about the ``_given`` property itself (``keep_underscore``)."""
    parts = [root]
    last = len(loc) - 1
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and item != "root" and _ELEMENT_NAME.fullmatch(item):
            name = item if keep_underscore and index == last else item.lstrip("_")
            parts.append("." + name)
    return "".join(parts)


def _issue_code(error_type: str) -> str:
    if error_type in _PYDANTIC_CODES:
        return _PYDANTIC_CODES[error_type]
    return "structure" if error_type.endswith("_type") else "value"


def _without(node: Any, set_aside: set[tuple[int, str]]) -> Any:
    """A copy of the JSON without the set-aside properties (R4-only Meta values)."""
    if isinstance(node, dict):
        return {
            k: _without(v, set_aside) for k, v in node.items() if (id(node), k) not in set_aside
        }
    if isinstance(node, list):
        return [_without(item, set_aside) for item in node]
    return node


def _with_ancestors(path: str) -> set[str]:
    """``a.b[0].c`` -> {a, a.b, a.b[0], a.b[0].c}."""
    return {path[: m.start()] for m in _STEP.finditer(path)} | {path}


def _uncovered(issues: list[Issue], walked: list[Issue]) -> list[Issue]:
    """The library's issues about places the walk did not report (nor inside, nor around)."""
    reported = {i.expression[0] for i in walked if i.expression}
    around: set[str] = set()
    for where in reported:
        around |= _with_ancestors(where)
    kept = []
    for issue in issues:
        where = issue.expression[0] if issue.expression else ""
        if where not in around and not _with_ancestors(where) & reported:
            kept.append(issue)
    return kept
