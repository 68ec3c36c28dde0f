"""Which keys of a resource an expression must find to yield anything
(https://hl7.org/fhir/R4/fhirpath.html).

Most of a resource type's ~30-50 search parameters have no value in a given resource.
:func:`entry_keys` works out, at compile time, the top-level JSON keys an expression
starts from (``Observation.effective`` -> ``effectiveDateTime``, ``effectivePeriod``,
...), so the indexer skips a parameter with a key lookup instead of running it.
"""

from __future__ import annotations

from resources.search.index import elements
from resources.search.index.path_parser import (
    Binary,
    Call,
    Ident,
    Index,
    Member,
    Node,
    TypeOp,
    Variable,
)


def entry_keys(node: Node, context_type: str) -> frozenset[str] | None:
    """The keys of the context object that ``node`` must find to yield anything, or None
    when it can yield without any (``exists()``, literals, ``%resource``, the context).

    Lets the indexer skip, with a key lookup, every parameter whose element is absent.
    """
    keys = _entry_keys(node, context_type)
    return None if keys is _CONTEXT else keys


_CONTEXT: frozenset[str] = frozenset({"$this"})
_NAVIGATING = frozenset({"as", "ofType", "where", "resolve", "first"})


def _entry_keys(node: Node, context_type: str) -> frozenset[str] | None:
    if isinstance(node, Ident):
        if not node.name[:1].isupper():
            return frozenset(key for key, _ in elements.child_slots(context_type, node.name))
        return _CONTEXT if elements.is_subtype(context_type, node.name) else frozenset()
    if isinstance(node, Variable) and node.name == "this":
        return _CONTEXT
    if isinstance(node, Member):
        keys = _entry_keys(node.target, context_type)
        return _entry_keys(Ident(node.name), context_type) if keys is _CONTEXT else keys
    if isinstance(node, Call) and node.target is not None and node.name == "extension":
        keys = _entry_keys(node.target, context_type)
        return frozenset({"extension"}) if keys is _CONTEXT else keys
    typed = _typed_keys(node, context_type)
    if typed is not None:
        return typed
    navigating = isinstance(node, Call) and node.target is not None and node.name in _NAVIGATING
    if navigating or isinstance(node, Index) or (isinstance(node, TypeOp) and node.op == "as"):
        keys = _entry_keys(node.target, context_type)  # type: ignore[union-attr, arg-type]
        return None if keys is _CONTEXT else keys
    if isinstance(node, Binary) and node.op == "|":
        left, right = _entry_keys(node.left, context_type), _entry_keys(node.right, context_type)
        if left is None or right is None or left is _CONTEXT or right is _CONTEXT:
            return None
        return left | right
    return None


def _typed_keys(node: Node, context_type: str) -> frozenset[str] | None:
    """``value.as(Quantity)``, ``(Observation.value as Quantity)``, ``.ofType(…)`` on an
    element of the context: only the keys of the choices of that type (``valueQuantity``),
    as the native evaluator navigates them; None for anything else."""
    if isinstance(node, Call) and node.name in ("as", "ofType") and len(node.args) == 1:
        target, argument = node.target, node.args[0]
        type_name = argument.name if isinstance(argument, Ident) else None
    elif isinstance(node, TypeOp) and node.op == "as":
        target, type_name = node.target, node.type_name
    else:
        return None
    if type_name is None:
        return None
    on_context = isinstance(target, Member) and (
        _entry_keys(target.target, context_type) is _CONTEXT
    )
    if not (on_context or (isinstance(target, Ident) and not target.name[:1].isupper())):
        return None
    name = target.name  # type: ignore[union-attr]
    return frozenset(
        key
        for key, child_type in elements.child_slots(context_type, name)
        if elements.is_subtype(child_type, type_name)
    )
