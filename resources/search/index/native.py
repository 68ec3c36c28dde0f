"""Native evaluation of parsed FHIRPath (:mod:`resources.search.index.path_parser`) over
JSON dicts (FHIRPath semantics: http://hl7.org/fhirpath/N1/#navigation-model).

An expression compiles to a pipeline of *steps*, each mapping a collection of items
``(value, type)`` to the next. Types are tracked statically where the model allows it (a
set of possible types per step), which lets navigation be specialised at compile time:

- ``Observation.code``: the leading type name is checked once, against the context type,
  and disappears; ``code`` becomes a lookup of one key with a known result type.
- choice types: ``Observation.effective`` looks up ``effectiveDateTime``,
  ``effectivePeriod``, ... (one key per allowed type).
- ``(Observation.value as Quantity)`` / ``.as(Quantity)`` / ``.ofType(Quantity)`` fuse
  with the navigation before them: a lookup of ``valueQuantity`` only. Like ``ofType``,
  ``as`` filters a collection of several items rather than failing (R4 parameters apply
  it to repeating elements, e.g. ``useContext.value``).

Collections follow FHIRPath: navigation flattens lists and drops absent values; ``=``
compares collections item by item and is empty when either side is; ``and``/``or`` use
three-valued logic; ``where`` keeps the items for which its criterion is ``true``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from resources.search.index import elements
from resources.search.index.path_parser import (
    Binary,
    Call,
    Ident,
    Index,
    Literal,
    Member,
    Node,
    TypeOp,
    Unsupported,
    Variable,
)
from resources.search.index.reference import reference_type

Item = tuple[Any, str]
Items = list[Item]
Root = dict[str, Any]
StepFn = Callable[[Items, Root], Items]
Step = tuple[StepFn, bool]
"""A step function and whether it must run on an empty input (``exists()``, literals)."""
Static = frozenset[str] | None
"""The possible types of a step's items; None when unknown until run time."""

_EMPTY: Items = []
_BOOLEAN: Static = frozenset({"boolean"})


def compile_native(node: Node, context: Static) -> StepFn:
    """The evaluator of ``node`` for context items of the ``context`` types."""
    return pipeline(_compile(node, context)[0])


def pipeline(steps: list[Step]) -> StepFn:
    if not steps:
        return lambda items, _root: items
    if len(steps) == 1:
        return steps[0][0]

    def run(items: Items, root: Root) -> Items:
        for fn, total in steps:
            if not items and not total:
                return _EMPTY
            items = fn(items, root)
        return items

    return run


def _compile(node: Node, static: Static) -> tuple[list[Step], Static]:
    """Steps evaluating ``node`` on a collection of ``static`` types, and their output's."""
    if isinstance(node, Ident):
        if node.name[:1].isupper():
            return _type_filter(node.name, static)
        return _member(node.name, static)
    if isinstance(node, Member):
        steps, out = _compile(node.target, static)
        more, out = _member(node.name, out)
        return [*steps, *more], out
    if isinstance(node, Index):
        steps, out = _compile(node.target, static)
        position = node.index
        return [*steps, (lambda items, _root: items[position : position + 1], False)], out
    if isinstance(node, TypeOp):
        if node.op == "as":
            return _as(node.target, node.type_name, static)
        steps, out = _compile(node.target, static)
        return [*steps, (_is(node.type_name), False)], _BOOLEAN
    if isinstance(node, Call):
        return _call(node, static)
    if isinstance(node, Binary):
        return _binary(node, static)
    if isinstance(node, Literal):
        item = (node.value, _literal_type(node.value))
        return [(lambda _items, _root: [item], True)], frozenset({item[1]})
    if isinstance(node, Variable) and node.name == "this":
        return [], static
    return [(lambda _items, root: [(root, root.get("resourceType", ""))], True)], None


def _literal_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "integer" if isinstance(value, int) else "string"


# -- navigation and types ------------------------------------------------------------


def _member(name: str, static: Static, only: str | None = None) -> tuple[list[Step], Static]:
    """Child ``name`` of every item (lists flattened, choices expanded), optionally only
    the children of type ``only`` (a fused ``as``)."""
    if static is None:
        step = _dynamic_member(name)
        if only is None:
            return [(step, False)], None
        return [(step, False), (_dynamic_filter(only), False)], None
    table = {
        parent: tuple(
            slot
            for slot in elements.child_slots(parent, name)
            if only is None or elements.is_subtype(slot[1], only)
        )
        for parent in static
    }
    every = {slot for slots in table.values() for slot in slots}
    if any(child_type == elements.RESOURCE for _key, child_type in every):
        return _member(name, None, only)
    out = frozenset(child_type for _key, child_type in every)
    if not every:
        return [(lambda _items, _root: _EMPTY, False)], out
    if len(set(table.values())) != 1:
        return [(_per_type_member(table), False)], out
    slots = next(iter(table.values()))
    if len(slots) == 1:
        return [(_single_member(*slots[0]), False)], out
    return [(_choice_member(slots), False)], out


def _single_member(key: str, child_type: str) -> StepFn:
    def single(items: Items, _root: Root) -> Items:
        out: Items = []
        for value, _type in items:
            if type(value) is dict:
                child = value.get(key)
                if child is None:
                    continue
                if type(child) is list:
                    out.extend([(x, child_type) for x in child if x is not None])
                else:
                    out.append((child, child_type))
        return out

    return single


def _choice_member(slots: tuple[elements.ChildSlot, ...]) -> StepFn:
    def choice(items: Items, _root: Root) -> Items:
        out: Items = []
        for value, _type in items:
            if type(value) is dict:
                for key, child_type in slots:
                    child = value.get(key)
                    if child is None:
                        continue
                    if type(child) is list:
                        out.extend([(x, child_type) for x in child if x is not None])
                    else:
                        out.append((child, child_type))
        return out

    return choice


def _per_type_member(table: dict[str, tuple[elements.ChildSlot, ...]]) -> StepFn:
    steps = {parent: _choice_member(slots) for parent, slots in table.items()}

    def per_type(items: Items, root: Root) -> Items:
        out: Items = []
        for item in items:
            step = steps.get(item[1])
            if step is not None:
                out.extend(step([item], root))
        return out

    return per_type


def _dynamic_member(name: str) -> StepFn:
    """Navigation when the item types are only known at run time."""

    def dynamic(items: Items, _root: Root) -> Items:
        out: Items = []
        for value, type_name in items:
            if type(value) is not dict:
                continue
            for key, child_type in elements.child_slots(type_name, name):
                child = value.get(key)
                if child is None:
                    continue
                for x in child if type(child) is list else (child,):
                    if x is not None:
                        out.append((x, elements.runtime_type(x, child_type)))
        return out

    return dynamic


def _dynamic_filter(type_name: str) -> StepFn:
    def keep(items: Items, _root: Root) -> Items:
        return [item for item in items if elements.is_subtype(item[1], type_name)]

    return keep


def _type_filter(type_name: str, static: Static) -> tuple[list[Step], Static]:
    if static is None or elements.RESOURCE in static:
        return [(_dynamic_filter(type_name), False)], None
    kept = frozenset(t for t in static if elements.is_subtype(t, type_name))
    if kept == static:
        return [], static
    if not kept:
        return [(lambda _items, _root: _EMPTY, False)], kept
    return [(lambda items, _root: [item for item in items if item[1] in kept], False)], kept


def _as(target: Node, type_name: str, static: Static) -> tuple[list[Step], Static]:
    """``X as T`` / ``X.as(T)`` / ``X.ofType(T)``, fused with a navigation ``X``."""
    if isinstance(target, Member):
        steps, out = _compile(target.target, static)
        more, out = _member(target.name, out, type_name)
        return [*steps, *more], out
    if isinstance(target, Ident) and not target.name[:1].isupper():
        return _member(target.name, static, type_name)
    steps, out = _compile(target, static)
    more, out = _type_filter(type_name, out)
    return [*steps, *more], out


def _is(type_name: str) -> StepFn:
    def is_(items: Items, _root: Root) -> Items:
        if len(items) != 1:
            return _EMPTY
        return [(elements.is_subtype(items[0][1], type_name), "boolean")]

    return is_


# -- functions -------------------------------------------------------------------------


def _type_argument(args: tuple[Node, ...]) -> str:
    if len(args) == 1:
        arg = args[0]
        if isinstance(arg, Ident):
            return arg.name
        if isinstance(arg, Member) and isinstance(arg.target, Ident):
            return f"{arg.target.name}.{arg.name}"
    raise Unsupported("type argument")


def _string_argument(args: tuple[Node, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], Literal) and isinstance(args[0].value, str):
        return args[0].value
    raise Unsupported("string argument")


def _call(node: Call, static: Static) -> tuple[list[Step], Static]:
    name, args = node.name, node.args
    if name in ("as", "ofType"):
        if node.target is None:
            return _type_filter(_type_argument(args), static)
        return _as(node.target, _type_argument(args), static)
    steps, out = _compile(node.target, static) if node.target is not None else ([], static)
    if name == "is":
        return [*steps, (_is(_type_argument(args)), False)], _BOOLEAN
    if name == "where" and len(args) == 1:
        return [*steps, (_where(args[0], out), False)], out
    if name == "extension":
        return [*steps, (_extension(_string_argument(args)), False)], frozenset({"Extension"})
    if name == "hasExtension":
        return [*steps, (_has_extension(_string_argument(args)), True)], _BOOLEAN
    if name == "resolve" and not args:
        return [*steps, (_resolve, False)], None
    if name == "exists" and not args:
        return [*steps, (lambda items, _r: [(bool(items), "boolean")], True)], _BOOLEAN
    if name == "empty" and not args:
        return [*steps, (lambda items, _r: [(not items, "boolean")], True)], _BOOLEAN
    if name == "not" and not args:
        return [*steps, (_not, False)], _BOOLEAN
    if name == "first" and not args:
        return [*steps, (lambda items, _r: items[:1], False)], out
    raise Unsupported(f"function {name}()")


def _where(condition: Node, static: Static) -> StepFn:
    test = compile_native(condition, static)

    def where(items: Items, root: Root) -> Items:
        return [item for item in items if _truth(test([item], root)) is True]

    return where


def _extension(url: str) -> StepFn:
    def extension(items: Items, _root: Root) -> Items:
        out: Items = []
        for value, _type in items:
            if type(value) is dict:
                extensions = value.get("extension")
                if type(extensions) is not list:
                    continue
                for ext in extensions:
                    if type(ext) is dict and ext.get("url") == url:
                        out.append((ext, "Extension"))
        return out

    return extension


def _has_extension(url: str) -> StepFn:
    extension = _extension(url)
    return lambda items, root: [(bool(extension(items, root)), "boolean")]


def _resolve(items: Items, _root: Root) -> Items:
    """``resolve()``: a Reference becomes a stub of its target's type (see fhirpath.py)."""
    out: Items = []
    for value, type_name in items:
        if type(value) is dict and elements.is_subtype(type_name, "Reference"):
            target = reference_type(value)
            if target is not None:
                out.append(({"resourceType": target}, target))
    return out


def _not(items: Items, _root: Root) -> Items:
    truth = _truth(items)
    return _EMPTY if truth is None else [(not truth, "boolean")]


def _truth(items: Items) -> bool | None:
    """FHIRPath singleton evaluation of a collection as a Boolean."""
    if len(items) != 1:
        return None
    value = items[0][0]
    return value if isinstance(value, bool) else True


# -- operators -------------------------------------------------------------------------


def _binary(node: Binary, static: Static) -> tuple[list[Step], Static]:
    left_steps, left_static = _compile(node.left, static)
    right_steps, right_static = _compile(node.right, static)
    left, right = pipeline(left_steps), pipeline(right_steps)
    op = node.op
    if op == "|":
        out = None if left_static is None or right_static is None else left_static | right_static
        return [(lambda items, root: left(items, root) + right(items, root), True)], out
    if op in ("=", "!="):
        negate = op == "!="

        def equality(items: Items, root: Root) -> Items:
            a, b = left(items, root), right(items, root)
            if not a or not b:
                return _EMPTY
            same = len(a) == len(b) and all(_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
            return [(same != negate, "boolean")]

        return [(equality, True)], _BOOLEAN

    def logic(items: Items, root: Root) -> Items:
        a, b = _truth(left(items, root)), _truth(right(items, root))
        if op == "and":
            result = False if a is False or b is False else (None if None in (a, b) else True)
        else:
            result = True if a is True or b is True else (None if None in (a, b) else False)
        return _EMPTY if result is None else [(result, "boolean")]

    return [(logic, True)], _BOOLEAN


def _equal(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return a == b
    return type(a) is type(b) and a == b
