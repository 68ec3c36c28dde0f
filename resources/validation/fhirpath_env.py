"""What a compiled FHIRPath invariant runs with (``fhirpath_eval``): the environment of
one evaluation, the closure type, FHIRPath's boolean reading of a collection and its
evaluation error (https://hl7.org/fhirpath/N1/#singleton-evaluation-of-collections)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Fn = Callable[[list[Any], "Env"], list[Any]]
"""A compiled expression: ``fn(focus, env) -> collection``."""

DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?")


class Env:
    """The environment variables of one evaluation."""

    __slots__ = ("resource", "root", "context")

    def __init__(self, resource: Any, root: Any, context: Any) -> None:
        self.resource = resource
        self.root = root
        self.context = context


class EvaluationError(ValueError):
    """An evaluation error (FHIRPath signals one, e.g. a function of several items)."""


def truth(values: list[Any]) -> bool | None:
    """A collection as a boolean: None when empty (FHIRPath's singleton evaluation)."""
    if not values:
        return None
    if len(values) == 1:
        value = values[0]
        return value if value is True or value is False else True
    raise EvaluationError("a boolean is expected, found a collection of several items")
