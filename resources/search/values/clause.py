"""One parameter's values as a :class:`Clause`: modifiers checked, values typed by the
parameter's type (https://hl7.org/fhir/R4/search.html#ptypes and #modifiers).

The values are the comma-separated alternatives (OR). ``:missing`` takes ``true`` /
``false`` on every type; ``:not`` and ``:not-in`` make a negated clause. A composite value
is ``$``-separated, each component parsed with its own type
(https://hl7.org/fhir/R4/search.html#composite).
"""

from __future__ import annotations

from collections.abc import Sequence

from resources.definitions import is_resource_type
from resources.search.model import Component, SearchParam
from resources.search.query import Clause, CompositeMatch, Match, MissingMatch
from resources.search.values import string, token, uri
from resources.search.values.common import Context, Unsupported, bad, split, unescape
from resources.search.values.date import parse_date
from resources.search.values.number import parse_number
from resources.search.values.quantity import parse_quantity
from resources.search.values.reference import accepts, parse_reference
from resources.search.values.string import parse_string
from resources.search.values.token import parse_token
from resources.search.values.uri import parse_uri

MODIFIERS: dict[str, frozenset[str]] = {
    "number": frozenset(),
    "date": frozenset(),
    "string": string.MODIFIERS,
    "token": token.MODIFIERS,
    "reference": frozenset({"identifier", "below"}),
    "quantity": frozenset(),
    "uri": uri.MODIFIERS,
    "composite": frozenset(),
}
"""Modifiers besides ``:missing`` (and ``:[type]`` on references) per parameter type."""


def parse_clause(
    param: SearchParam, modifier: str | None, values: Sequence[str], name: str, ctx: Context
) -> Clause:
    """``values`` are the (escaped) comma-separated alternatives; ``name`` is reported."""
    check_modifier(param, modifier, name, ctx)
    if modifier == "missing":
        return Clause(param, tuple(MissingMatch(_boolean(v, name)) for v in values))
    matches = tuple(
        parse_value(param.type, modifier, value, name, ctx, param.targets, param.components)
        for value in values
    )
    return Clause(param, matches, negate=modifier in ("not", "not-in"))


def check_modifier(param: SearchParam, modifier: str | None, name: str, ctx: Context) -> None:
    """Raise :class:`Unsupported` unless the parameter can be searched with ``modifier``."""
    allowed = MODIFIERS.get(param.type)
    if allowed is None or param.expression is None:
        raise Unsupported(f"The search parameter '{name}' is not supported")
    if modifier is None or modifier == "missing" or modifier in allowed:
        if modifier in ("in", "not-in") and ctx.value_set is None:
            raise Unsupported(f"The modifier :{modifier} of '{name}' is not supported")
        return
    if param.type == "reference" and is_resource_type(modifier):
        if accepts(modifier, param.targets):
            return
        raise Unsupported(f"{modifier} is not a target of the search parameter '{name}'")
    raise Unsupported(f"The modifier :{modifier} is not supported for '{name}' ({param.type})")


def parse_value(
    type_: str,
    modifier: str | None,
    text: str,
    name: str,
    ctx: Context,
    targets: tuple[str, ...] = (),
    components: tuple[Component, ...] = (),
) -> Match:
    """One alternative of a parameter of type ``type_``."""
    if type_ == "number":
        return parse_number(unescape(text), name)
    if type_ == "date":
        return parse_date(unescape(text), name, ctx.now)
    if type_ == "string":
        return parse_string(text, modifier)
    if type_ == "token":
        return parse_token(text, name, modifier, ctx.value_set)
    if type_ == "reference":
        return parse_reference(text, name, modifier, targets)
    if type_ == "quantity":
        return parse_quantity(text, name)
    if type_ == "uri":
        return parse_uri(text, modifier)
    if type_ == "composite":
        return _composite(text, name, ctx, components)
    raise Unsupported(f"The search parameter '{name}' ({type_}) is not supported")


def _composite(
    text: str, name: str, ctx: Context, components: tuple[Component, ...]
) -> CompositeMatch:
    if not components:
        raise Unsupported(f"The composite search parameter '{name}' has no components")
    parts = split(text, "$")
    if len(parts) != len(components):
        codes = "$".join(c.code for c in components)
        raise bad(name, f"{unescape(text)!r} needs {len(components)} '$'-separated parts ({codes})")
    if not all(parts):
        raise bad(name, f"{unescape(text)!r} has an empty component")
    matches = tuple(
        parse_value(component.type, None, part, name, ctx)
        for component, part in zip(components, parts, strict=True)
    )
    return CompositeMatch(matches)


def _boolean(text: str, name: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise bad(name, f":missing takes true or false, not {unescape(text)!r}")
