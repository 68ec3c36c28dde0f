"""Search parameter expressions compiled once into fast evaluators
(https://hl7.org/fhir/R4/fhirpath.html, https://hl7.org/fhir/R4/searchparameter.html).

Every write evaluates ~30 expressions per resource, and fhirpathpy's interpreter costs
~30 µs for even ``Observation.code``. So :func:`compile_path` first tries to compile the
expression into native navigators over the JSON dict (the subset that
:mod:`resources.search.index.path_parser` reads: paths, choice types, ``as``/``ofType``/
``is``, ``where(...)`` with ``resolve() is X``, ``=``/``!=``, ``and``/``or``,
``exists()``, ``extension(url)``, ``hasExtension(url)``, indexers, unions, ``%resource``)
and only falls back to a compiled fhirpathpy expression for the rest.

Both evaluators return *items*: ``(value, type)`` pairs where ``value`` is the JSON value
(dict, str, bool, int, FhirDecimal) and ``type`` the FHIR type name from the R4 model
(:mod:`resources.search.index.elements`), so extraction knows a HumanName from an
Address, a Period from a dateTime, a decimal from an integer.

``resolve()``: a server cannot fetch every target at write time, and search expressions
only ask ``resolve() is X``. So ``resolve()`` turns a Reference into a stub
``{"resourceType": T}`` with ``T`` read from its reference string (``Patient/1``,
``http://x/fhir/Patient/1``) or, failing that, from ``Reference.type``. Contained
(``#x``) and ``urn:uuid:`` references resolve to nothing. The fallback gets the same
function through fhirpathpy's ``userInvocationTable``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from resources.search.index import elements
from resources.search.index.entry_keys import entry_keys
from resources.search.index.native import compile_native
from resources.search.index.path_parser import Node, Unsupported, parse
from resources.search.index.reference import reference_type

Item = tuple[Any, str]
Items = list[Item]
RunFn = Callable[[Items, dict[str, Any]], Items]
"""``run(context items, resource)``: evaluate with the items as ``$this``."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """One compiled expression: call it on a resource, or ``run`` it on items."""

    expression: str
    context_type: str | None
    native: bool
    run: RunFn
    entry_keys: frozenset[str] | None = None
    """Keys of the context object the expression must find to yield anything (None:
    unknown). A resource with none of them has no value for the parameter."""

    def __call__(self, resource: dict[str, Any]) -> Items:
        context_type = self.context_type or resource.get("resourceType", "")
        return self.run([(resource, context_type)], resource)


def compile_path(expression: str, context_type: str | None, *, native: bool = True) -> CompiledPath:
    """Compile ``expression`` for context items of ``context_type`` (a resource type, or
    a backbone element path such as ``Observation.component``). With ``None`` the context
    type is taken from the items as they come, and navigation is compiled once per type
    seen (composite components, whose elements can be the resource or a backbone).

    ``native=False`` forces the fhirpathpy evaluator (used by tests to check both agree).
    """
    if native:
        try:
            node = parse(expression)
            if context_type is None:
                run, keys = _per_context_type(node), None
            else:
                run = compile_native(node, frozenset({context_type}))
                keys = entry_keys(node, context_type)
        except Unsupported:
            pass
        else:
            return CompiledPath(expression, context_type, True, run, keys)
    return CompiledPath(expression, context_type, False, _fallback(expression))


def _per_context_type(node: Node) -> RunFn:
    compile_native(node, None)  # fail now, not at the first write, if unsupported
    compiled: dict[str, RunFn] = {}

    def run(items: Items, root: dict[str, Any]) -> Items:
        if not items:
            return []
        context_type = items[0][1]
        if len(items) > 1 and any(item[1] != context_type for item in items):
            return [out for item in items for out in run([item], root)]
        fn = compiled.get(context_type)
        if fn is None:
            fn = compiled[context_type] = compile_native(node, frozenset({context_type}))
        return fn(items, root)

    return run


# -- fhirpathpy fallback -----------------------------------------------------------------


def _fallback(expression: str) -> Callable[[Items, dict[str, Any]], Items]:
    """fhirpathpy, one top-level union branch at a time: its ``|`` operator drops the
    type of every node it returns, and extraction needs those types."""
    branches = [_fhirpathpy(branch) for branch in _split_union(expression)]
    if len(branches) == 1:
        return branches[0]
    return lambda items, root: [item for branch in branches for item in branch(items, root)]


def _split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of an expression whose top-level operator is ``|``
    (else the whole expression)."""
    branches: list[str] = []
    depth, start, quote = 0, 0, ""
    for position, char in enumerate(expression):
        if quote:
            quote = "" if char == quote and expression[position - 1] != "\\" else quote
        elif char in "'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and char == "|":
            branches.append(expression[start:position])
            start = position + 1
        elif depth == 0 and (char in "=<>~!+-*/&" or _word_operator(expression, position)):
            return [expression]
    branches.append(expression[start:])
    return [branch.strip() for branch in branches]


_WORD_OPERATORS = ("and", "or", "xor", "implies", "in", "contains", "div", "mod")


def _word_operator(expression: str, position: int) -> bool:
    if position == 0 or not expression[position - 1].isspace():
        return False
    rest = expression[position:]
    return any(
        rest.startswith(word) and (len(rest) == len(word) or rest[len(word)].isspace())
        for word in _WORD_OPERATORS
    )


def _fhirpathpy(expression: str) -> Callable[[Items, dict[str, Any]], Items]:
    import fhirpathpy
    from fhirpathpy.engine.nodes import ResourceNode

    def resolve(inputs: list[Any]) -> list[Any]:
        out = []
        for value in inputs:
            target = reference_type(value) if isinstance(value, dict) else None
            if target is not None:
                out.append(ResourceNode.create_node({"resourceType": target}))
        return out

    options = {
        "userInvocationTable": {"resolve": {"fn": resolve, "arity": {0: []}}},
        "returnRawData": True,
    }
    compiled = fhirpathpy.compile(expression, model=elements.model(), options=options)

    def run(items: Items, root: dict[str, Any]) -> Items:
        out: Items = []
        for value, type_name in items:
            node = value if value is root else ResourceNode.create_node(value, type_name)
            try:
                results = compiled(node, {"resource": root})
            except Exception:  # a fallback failure must never fail the write
                _log.warning("FHIRPath %r failed on %s", expression, type_name, exc_info=True)
                continue
            out.extend(_from_fhirpathpy(result) for result in results)
        return [item for item in out if item[0] is not None]

    return run


def _from_fhirpathpy(result: Any) -> Item:
    from fhirpathpy.engine.nodes import FP_Type, ResourceNode

    if isinstance(result, ResourceNode):
        value = result.data
        path = result.path or ""
        return value, elements.runtime_type(value, path) if path else _python_type(value)
    if isinstance(result, FP_Type):
        return None, ""
    return result, _python_type(result)


def _python_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return value["resourceType"]
    return "string"
