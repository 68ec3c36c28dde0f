"""``{{name}}`` variables in case files.

A case's requests and expectations may use ``{{name}}``: a built-in (``run``: a random token
for the whole run; ``uid``: a random token for this case, a valid FHIR id fragment,
https://hl7.org/fhir/R4/datatypes.html#id; ``base``: the FHIR base URL without a trailing
slash; ``i``: the index of a request within a ``parallel`` step) or a value captured by an
earlier step. ``{{pad:N}}`` expands to N ``x`` characters (for bodies over a size limit).

In regular-expression fields the substituted values are escaped, so ``{{base}}`` or an id
with a ``.`` match literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?::(\d+))?\s*\}\}")
_MAX_PAD = 64 * 1024 * 1024


class TemplateError(ValueError):
    """A template that names an unknown variable or a malformed function."""


def render(template: str, variables: Mapping[str, str], *, regex: bool = False) -> str:
    """Substitute ``{{name}}`` in a string; escape values when the string is a regex."""

    def substitute(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2)
        if name == "pad":
            if argument is None:
                raise TemplateError("{{pad:N}} needs a size, e.g. {{pad:1024}}")
            size = int(argument)
            if size > _MAX_PAD:
                raise TemplateError(f"{{{{pad:{size}}}}} is over the {_MAX_PAD} byte maximum")
            return "x" * size
        if argument is not None:
            raise TemplateError(f"{{{{{name}:{argument}}}}}: only pad takes an argument")
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise TemplateError(f"unknown variable {{{{{name}}}}} (known: {known})")
        value = variables[name]
        return re.escape(value) if regex else value

    return _VARIABLE.sub(substitute, template)


def render_json(value: Any, variables: Mapping[str, str]) -> Any:
    """Substitute variables in every string (not key) of a JSON value."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, list):
        return [render_json(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, variables) for k, v in value.items()}
    return value
