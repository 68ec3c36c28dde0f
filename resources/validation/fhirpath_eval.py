"""FHIRPath invariants compiled once into Python closures over the resource's JSON
(https://hl7.org/fhirpath/N1/; the subset the R4 invariants use, read by
``fhirpath_parse``).

A compiled expression is ``fn(focus, env) -> list``: ``focus`` is the input collection (a
list of JSON values: dicts for complex elements and resources, str / bool / int /
Decimal for primitives), ``env`` the :class:`Env` of ``%resource``, ``%rootResource`` and
``%context``. Collections are plain lists; JSON arrays are flattened on navigation, as
FHIRPath does.

Types: the JSON values carry no FHIR type, so type tests are compiled where the type is
known from the JSON: a choice element (``probability as decimal`` reads
``probabilityDecimal``, ``value.ofType(Quantity)`` ``valueQuantity``) and resources (their
``resourceType``). Other type tests raise :class:`Unsupported` at compile time.

Semantics follow FHIRPath 2.0: empty propagates through operators and comparisons
(three-valued ``and``/``or``/``xor``/``implies``), a single non-boolean item is true in a
boolean context, dates and times compare by their precision (empty when one is more
precise than the other and they agree as far as both go), quantities compare when their
units are the same.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from resources import definitions
from resources.validation.fhirpath_env import Env, Fn
from resources.validation.fhirpath_functions import _FUNCTIONS, _WITH_ITEM_ARGUMENT, _iif
from resources.validation.fhirpath_operators import _SYSTEM_TYPES, _fail, _is, _operator
from resources.validation.fhirpath_parse import Node, Unsupported, parse

_UCUM = "http://unitsofmeasure.org"
_CONSTANTS = {
    "ucum": _UCUM,
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}


def compile_expression(expression: str, at: str | None = None, resource: str | None = None) -> Fn:
    """Compile a FHIRPath expression; :class:`Unsupported` when it uses what this module
    does not compile (``resolve()``, ``memberOf()``, ``conformsTo()``, ``htmlChecks()``,
    type tests on values of unknown type ...). ``at`` is the definition path of the
    context (``Observation``, ``Observation.component``, ``Period``), ``resource`` the type
    of ``%resource`` when known: with them a choice element is read by its JSON names
    (``value`` is ``valueQuantity``, ``valueString`` ...) and any other by its own."""
    return _Compiler(at, resource).compile(parse(expression), at)


# --------------------------------------------------------------------------- compile


class _Compiler:
    """Compiles a tree, knowing the definition path of the context where it can."""

    def __init__(self, context: str | None, resource: str | None) -> None:
        self.context = context
        self.resource = resource

    def compile(self, node: Node, at: str | None) -> Fn:
        kind = node[0]
        if kind == "lit":
            constant = [node[1]]
            return lambda focus, env: constant
        if kind == "empty":
            return lambda focus, env: []
        if kind == "this":
            return lambda focus, env: focus
        if kind == "var":
            return _variable(node[1])
        if kind == "id":
            return _identifier(node[1], at)
        if kind == "nav":
            return _then(self.compile(node[1], at), _navigate(node[2], self.path(node[1], at)))
        if kind == "index":
            return _index(self.compile(node[1], at), self.compile(node[2], at))
        if kind == "neg":
            operand = self.compile(node[1], at)
            return lambda focus, env: [-v for v in operand(focus, env)]
        if kind == "type":
            return self.type_test(node[1], node[2], node[3], at)
        if kind == "op":
            return _operator(node[1], self.compile(node[2], at), self.compile(node[3], at))
        if kind == "call":
            return self.call(node[1], node[2], node[3], at)
        raise Unsupported(f"node {kind}")

    def path(self, node: Node, at: str | None) -> str | None:
        """The definition path of what ``node`` gives, when it is known."""
        kind = node[0]
        if kind == "this":
            return at
        if kind == "var":
            return {"context": self.context, "resource": self.resource}.get(node[1])
        if kind == "id":
            if at is not None and node[1] == at.partition(".")[0]:
                return at
            return child_path(at, node[1])
        if kind == "nav":
            return child_path(self.path(node[1], at), node[2])
        if kind == "index":
            return self.path(node[1], at)
        if kind == "call":
            base, name, args = node[1], node[2], node[3]
            source = self.path(base, at) if base is not None else at
            if name in ("where", "first", "last", "tail", "trace", "single", "distinct"):
                return source
            if name == "select" and args:
                return self.path(args[0], source)
        if kind == "op" and node[1] == "|":
            left = self.path(node[2], at)
            return left if left == self.path(node[3], at) else None
        return None

    def call(self, base: Node | None, name: str, args: tuple[Node, ...], at: str | None) -> Fn:
        if name in ("is", "as", "ofType"):
            if len(args) != 1 or args[0][0] != "id":
                raise Unsupported(f"{name}() needs a type name")
            operand = base if base is not None else ("this",)
            return self.type_test("is" if name == "is" else "as", operand, args[0][1], at)
        source = self.compile(base, at) if base is not None else (lambda focus, env: focus)
        inner = self.path(base, at) if base is not None else at
        if name in _WITH_ITEM_ARGUMENT:
            if len(args) != 1 and not (name == "exists" and not args):
                raise Unsupported(f"{name}() arguments")
            criteria = self.compile(args[0], inner) if args else None
            iterate = _WITH_ITEM_ARGUMENT[name]
            return lambda focus, env: iterate(source(focus, env), criteria, env)
        if name == "iif":
            return _iif(source, [self.compile(a, inner) for a in args])
        if name == "trace":
            return source
        function = _FUNCTIONS.get((name, len(args)))
        if function is None:
            raise Unsupported(f"{name}() with {len(args)} arguments")
        arguments = [self.compile(a, at) for a in args]
        if not arguments:
            return lambda focus, env: function(source(focus, env), env)
        return lambda focus, env: function(
            source(focus, env), env, *[a(focus, env) for a in arguments]
        )

    def type_test(self, operator: str, operand: Node, type_name: str, at: str | None) -> Fn:
        """``X is T``, ``X as T`` (and the function forms, ``ofType``)."""
        type_name = _SYSTEM_TYPES.get(type_name, type_name)
        if definitions.is_resource_type(type_name) or type_name in _ABSTRACT_RESOURCES:
            source = self.compile(operand, at)

            def is_resource(value: Any) -> bool:
                if not isinstance(value, dict) or "resourceType" not in value:
                    return False
                return type_name in _ABSTRACT_RESOURCES or value["resourceType"] == type_name

            if operator == "is":
                return lambda focus, env: _is(source(focus, env), is_resource)
            return lambda focus, env: [v for v in source(focus, env) if is_resource(v)]
        if operand[0] in ("nav", "id"):  # a choice element: value as Quantity -> valueQuantity
            base = self.compile(operand[1], at) if operand[0] == "nav" else None
            name = operand[2] if operand[0] == "nav" else operand[1]
            key = name + type_name[0].upper() + type_name[1:]
            typed = _exact(key) if base is None else _then(base, _exact(key))
            if operator == "is":
                anything = self.compile(operand, at)

                def is_typed(focus: list[Any], env: Env) -> list[Any]:
                    values = anything(focus, env)
                    if len(values) != 1:
                        return [] if not values else _fail("'is' needs a single item")
                    return [bool(typed(focus, env))]

                return is_typed
            return typed
        raise Unsupported(f"type test of an expression of unknown type ({type_name})")


_ABSTRACT_RESOURCES = ("Resource", "DomainResource")
_BACKBONE_CODES = frozenset({"BackboneElement", "Element"})


def _variable(name: str) -> Fn:
    if name == "resource":
        return lambda focus, env: [env.resource]
    if name == "rootResource":
        return lambda focus, env: [env.root]
    if name == "context":
        return lambda focus, env: [env.context]
    if name in _CONSTANTS:
        constant = [_CONSTANTS[name]]
        return lambda focus, env: constant
    raise Unsupported(f"%{name}")


def _identifier(name: str, at: str | None) -> Fn:
    """A path's first name: the focus itself when it names the resource's type
    (``Appointment.status`` on an Appointment), else a child of the focus."""
    navigate = _navigate(name, at)
    if name[:1].isupper():

        def type_or_child(focus: list[Any], env: Env) -> list[Any]:
            out = [v for v in focus if isinstance(v, dict) and v.get("resourceType") == name]
            return out or navigate(focus, env)

        return type_or_child
    return navigate


def _then(first: Fn, second: Fn) -> Fn:
    return lambda focus, env: second(first(focus, env), env)


@cache
def _choice_suffixes() -> frozenset[str]:
    """``Quantity``, ``String``, ``DateTime`` ...: the suffixes of choice element names."""
    types = set(definitions.primitive_types()) | set(definitions.data_types())
    types |= {"Reference", "Meta", "Dosage", "Resource"}
    return frozenset(t[0].upper() + t[1:] for t in types)


@cache
def _choice_names() -> frozenset[str]:
    """The names of the choice elements of R4 (``value``, ``onset`` ...)."""
    out = set()
    for type_ in definitions.element_definitions().values():
        for path in type_["elements"]:
            name = path.rpartition(".")[2]
            if name.endswith("[x]"):
                out.add(name[:-3])
    return frozenset(out)


def _element(path: str, name: str) -> tuple[str, list[Any]] | None:
    """(definition path, entry) of the element ``name`` below a definition path."""
    all_types = definitions.element_definitions()
    type_, _, below = path.partition(".")
    while type_ in all_types:
        elements = all_types[type_]["elements"]
        for candidate in (f"{below}.{name}" if below else name, f"{below}.{name}[x]".lstrip(".")):
            entry = elements.get(candidate)
            if entry is not None:
                return f"{type_}.{candidate}", entry
        if below:  # a backbone element: its base's elements
            entry = elements.get(below)
            codes = entry[2] if entry is not None else []
            type_, below = (codes[0] if codes and codes[0] in _BACKBONE_CODES else ""), ""
        else:
            type_ = all_types[type_].get("base") or ""
    return None


def child_path(path: str | None, name: str) -> str | None:
    """The definition path of the values of ``name`` below ``path`` (None: unknown)."""
    if path is None:
        return None
    found = _element(path, name)
    if found is None or found[0].endswith("[x]"):
        return None
    where, entry = found
    extra = entry[3] if len(entry) > 3 else {}
    if extra.get("contentReference"):
        return extra["contentReference"].removeprefix("#")
    codes = entry[2]
    if len(codes) != 1:
        return None
    return (
        where
        if codes[0] in _BACKBONE_CODES
        else definitions.type_profiles().get(codes[0], codes[0])
    )


def _navigate(name: str, at: str | None = None) -> Fn:
    """The children called ``name`` of each item: by the element's JSON names when its
    definition is known (``at``), else by ``name`` or, for the names of R4's choice
    elements, any ``name`` + type."""
    found = _element(at, name) if at is not None else None
    if found is not None:
        where, entry = found
        if where.endswith("[x]"):
            keys = tuple(name + code[0].upper() + code[1:] for code in entry[2])
            return _keys(keys)
        return _exact(name)
    if name not in _choice_names():
        return _exact(name)
    suffixes = _choice_suffixes()
    size = len(name)

    def navigate(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []
        for item in focus:
            if not isinstance(item, dict):
                continue
            value = item.get(name)
            if value is None:
                for key in item:  # a choice element: valueQuantity for value
                    bare = key[1:] if key[:1] == "_" else key
                    if len(bare) > size and bare.startswith(name) and bare[size:] in suffixes:
                        value = item[key] if key == bare or bare not in item else item[bare]
                        break
                else:
                    continue
            if value.__class__ is list:
                out.extend(v for v in value if v is not None)
            else:
                out.append(value)
        return out

    return navigate


def _keys(keys: tuple[str, ...]) -> Fn:
    """The values under the first of ``keys`` an item has (a choice element's types)."""
    readers = [_exact(key) for key in keys]

    def navigate(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []
        for reader in readers:
            out.extend(reader(focus, env))
        return out

    return navigate


def _exact(key: str) -> Fn:
    """The children under one JSON key; a primitive that has only extensions (``_key``)
    is its extensions' object, which exists and has no value."""
    companion = "_" + key

    def navigate(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []
        for item in focus:
            if item.__class__ is dict or isinstance(item, dict):
                value = item.get(key)
                if value is None:
                    value = item.get(companion)
                    if value.__class__ is dict:
                        out.append(value)
                elif value.__class__ is list:
                    out.extend(v for v in value if v is not None)
                else:
                    out.append(value)
        return out

    return navigate


def _index(base: Fn, index: Fn) -> Fn:
    def run(focus: list[Any], env: Env) -> list[Any]:
        values = base(focus, env)
        at = index(focus, env)
        if not at:
            return []
        position = at[0]
        return [values[position]] if 0 <= position < len(values) else []

    return run
