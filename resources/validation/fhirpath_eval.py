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

import datetime
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from resources import definitions
from resources.validation.fhirpath_parse import Node, Unsupported, parse

Fn = Callable[[list[Any], "Env"], list[Any]]

_UCUM = "http://unitsofmeasure.org"
_CONSTANTS = {
    "ucum": _UCUM,
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?")


class Env:
    """The environment variables of one evaluation."""

    __slots__ = ("resource", "root", "context")

    def __init__(self, resource: Any, root: Any, context: Any) -> None:
        self.resource = resource
        self.root = root
        self.context = context


def compile_expression(expression: str, at: str | None = None, resource: str | None = None) -> Fn:
    """Compile a FHIRPath expression; :class:`Unsupported` when it uses what this module
    does not compile (``resolve()``, ``memberOf()``, ``conformsTo()``, ``htmlChecks()``,
    type tests on values of unknown type ...). ``at`` is the definition path of the
    context (``Observation``, ``Observation.component``, ``Period``), ``resource`` the type
    of ``%resource`` when known: with them a choice element is read by its JSON names
    (``value`` is ``valueQuantity``, ``valueString`` ...) and any other by its own."""
    return _Compiler(at, resource).compile(parse(expression), at)


def truth(values: list[Any]) -> bool | None:
    """A collection as a boolean: None when empty (FHIRPath's singleton evaluation)."""
    if not values:
        return None
    if len(values) == 1:
        value = values[0]
        return value if value is True or value is False else True
    raise _Error("a boolean is expected, found a collection of several items")


class _Error(ValueError):
    """An evaluation error (FHIRPath signals one, e.g. a function of several items)."""


EvaluationError = _Error


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


# --------------------------------------------------------------------------- types

_SYSTEM_TYPES = {
    "Boolean": "boolean",
    "String": "string",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
    "Quantity": "Quantity",
}


def _is(values: list[Any], test: Callable[[Any], bool]) -> list[Any]:
    if not values:
        return []
    if len(values) > 1:
        _fail("'is' needs a single item")
    return [test(values[0])]


def _fail(message: str) -> Any:
    raise _Error(message)


# --------------------------------------------------------------------------- operators


def _operator(operator: str, left: Fn, right: Fn) -> Fn:
    if operator in _LOGIC:
        logic = _LOGIC[operator]

        def boolean(focus: list[Any], env: Env) -> list[Any]:
            return logic(left, right, focus, env)

        return boolean
    if operator == "|":
        return lambda focus, env: _distinct(left(focus, env) + right(focus, env))
    if operator == "&":
        return lambda focus, env: [_text(left(focus, env)) + _text(right(focus, env))]
    if operator == "in":
        return lambda focus, env: _member(left(focus, env), right(focus, env))
    if operator == "contains":
        return lambda focus, env: _member(right(focus, env), left(focus, env))
    binary = _BINARY.get(operator)
    if binary is None:
        raise Unsupported(f"operator {operator}")

    def apply(focus: list[Any], env: Env) -> list[Any]:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1:
            if operator in ("=", "!="):
                same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
                return [same if operator == "=" else not same]
            _fail(f"'{operator}' needs single items")
        result = binary(a[0], b[0])
        return [] if result is None else [result]

    return apply


def _and(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a = truth(left(focus, env))
    if a is False:
        return [False]
    b = truth(right(focus, env))
    if b is False:
        return [False]
    return [True] if a and b else []


def _or(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a = truth(left(focus, env))
    if a is True:
        return [True]
    b = truth(right(focus, env))
    if b is True:
        return [True]
    return [False] if a is False and b is False else []


def _xor(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a, b = truth(left(focus, env)), truth(right(focus, env))
    return [] if a is None or b is None else [a != b]


def _implies(left: Fn, right: Fn, focus: list[Any], env: Env) -> list[Any]:
    a = truth(left(focus, env))
    if a is False:
        return [True]
    b = truth(right(focus, env))
    if b is True:
        return [True]
    if a is True and b is False:
        return [False]
    return []


_LOGIC = {"and": _and, "or": _or, "xor": _xor, "implies": _implies}


def _text(values: list[Any]) -> str:
    if not values:
        return ""
    if len(values) > 1:
        _fail("'&' needs single items")
    return _string(values[0])


def _string(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return getattr(value, "raw", None) or str(value)
    if isinstance(value, str | int):
        return str(value)
    _fail("not a primitive value")
    return ""


def _member(items: list[Any], collection: list[Any]) -> list[Any]:
    if not items:
        return []
    if len(items) > 1:
        _fail("'in' needs a single item")
    return [any(_equal(items[0], other) for other in collection)]


def _distinct(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if not any(_equal(value, seen) for seen in out):
            out.append(value)
    return out


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return a == b
    return a == b


def _eq(a: Any, b: Any) -> bool | None:
    if a.__class__ is str and b.__class__ is str and a != b and a[:1].isdigit() and b[:1].isdigit():
        dates = compare_dates(a, b)
        if dates is not None or (_DATE.fullmatch(a) and _DATE.fullmatch(b)):
            return None if dates is None else dates == 0
    return _equal(a, b)


def _ne(a: Any, b: Any) -> bool | None:
    same = _eq(a, b)
    return None if same is None else not same


def _order(a: Any, b: Any) -> int | None:
    """-1, 0, 1, or None when the two cannot be ordered (FHIRPath: empty)."""
    if isinstance(a, bool) or isinstance(b, bool):
        _fail("booleans have no order")
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        dates = compare_dates(a, b)
        if dates is not None or (_DATE.fullmatch(a) and _DATE.fullmatch(b)):
            return dates
        return (a > b) - (a < b)
    if isinstance(a, dict) and isinstance(b, dict):
        return _compare_quantities(a, b)
    if isinstance(a, dict) and isinstance(b, int | Decimal):
        return _order(a.get("value"), b) if _unitless(a) and "value" in a else None
    if isinstance(b, dict) and isinstance(a, int | Decimal):
        return _order(a, b.get("value")) if _unitless(b) and "value" in b else None
    _fail("values of these types have no order")
    return None


def _unitless(quantity: dict[str, Any]) -> bool:
    return not quantity.get("code") and not quantity.get("unit")


def _compare_quantities(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    if "value" not in a or "value" not in b:
        return None
    same_unit = (a.get("system"), a.get("code")) == (b.get("system"), b.get("code")) and (
        a.get("code") is not None or a.get("unit") == b.get("unit")
    )
    if not same_unit:
        return None
    return _order(a["value"], b["value"])


def _moment(text: str) -> tuple[list[Any], int] | None:
    """A date/dateTime/instant as comparable parts (in UTC when it has a time zone) and
    its precision (the number of parts)."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    parts: list[Any] = [int(year)]
    for part in (month, day, hour, minute):
        if part is None:
            return parts, len(parts)
        parts.append(int(part))
    seconds = Decimal(second + (fraction or "")) if second is not None else None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        parts[4] -= sign * (int(zone[1:3]) * 60 + int(zone[4:6]))
    if zone:  # normalise to UTC through the calendar
        base = datetime.datetime(parts[0], parts[1], parts[2]) + datetime.timedelta(
            hours=parts[3], minutes=parts[4]
        )
        parts = [base.year, base.month, base.day, base.hour, base.minute]
    if seconds is not None:
        parts.append(seconds)
    return parts, len(parts)


def compare_dates(a: str, b: str) -> int | None:
    """Dates compared part by part; None when they cannot be (not both dates, or equal
    as far as the less precise goes while their precisions differ)."""
    if len(a) == len(b) and _same_shape(a, b):
        return (a > b) - (a < b)
    if ":" in a and ":" in b and _TIME.fullmatch(a) and _TIME.fullmatch(b):
        return (a > b) - (a < b)
    first, second = _moment(a), _moment(b)
    if first is None or second is None:
        return None
    (left, left_precision), (right, right_precision) = first, second
    for x, y in zip(left, right, strict=False):
        if x != y:
            return -1 if x < y else 1
    return 0 if left_precision == right_precision else None


_DAY_OR_LESS = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?").fullmatch


def _same_shape(a: str, b: str) -> bool:
    """Whether two date texts of one length compare as text: dates of the same precision,
    or date-times with the same time zone and fraction digits."""
    if len(a) <= 10:
        return _DAY_OR_LESS(a) is not None and _DAY_OR_LESS(b) is not None
    zone_a, zone_b = (a[-1:], b[-1:]) if a[-1:] == "Z" else (a[-6:], b[-6:])
    return (
        zone_a == zone_b
        and a[10:11] == "T" == b[10:11]
        and _DATE.fullmatch(a) is not None
        and _DATE.fullmatch(b) is not None
    )


def _less(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order < 0


def _greater(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order > 0


def _less_equal(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order <= 0


def _greater_equal(a: Any, b: Any) -> bool | None:
    order = _order(a, b)
    return None if order is None else order >= 0


def _plus(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return a + b
    _fail("'+' of these types")


def _arithmetic(operation: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        if isinstance(a, bool) or isinstance(b, bool):
            _fail("arithmetic on booleans")
        if not (isinstance(a, int | Decimal) and isinstance(b, int | Decimal)):
            _fail("arithmetic on values that are not numbers")
        try:
            return operation(a, b)
        except (ZeroDivisionError, InvalidOperation):
            return None

    return run


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "=": _eq,
    "!=": _ne,
    "<": _less,
    ">": _greater,
    "<=": _less_equal,
    ">=": _greater_equal,
    "+": _plus,
    "-": _arithmetic(lambda a, b: a - b),
    "*": _arithmetic(lambda a, b: a * b),
    "/": _arithmetic(lambda a, b: Decimal(a) / Decimal(b)),
    "div": _arithmetic(lambda a, b: a // b),
    "mod": _arithmetic(lambda a, b: a % b),
}


# --------------------------------------------------------------------------- functions


def _exists(values: list[Any], criteria: Fn | None, env: Env) -> list[Any]:
    if criteria is None:
        return [bool(values)]
    return [any(truth(criteria([v], env)) for v in values)]


def _where(values: list[Any], criteria: Fn | None, env: Env) -> list[Any]:
    return [v for v in values if truth(criteria([v], env))]  # type: ignore[misc]


def _all(values: list[Any], criteria: Fn | None, env: Env) -> list[Any]:
    return [all(truth(criteria([v], env)) is True for v in values)]  # type: ignore[misc]


def _select(values: list[Any], projection: Fn | None, env: Env) -> list[Any]:
    out: list[Any] = []
    for value in values:
        out.extend(projection([value], env))  # type: ignore[misc]
    return out


_WITH_ITEM_ARGUMENT = {"exists": _exists, "where": _where, "all": _all, "select": _select}


def _iif(source: Fn, args: list[Fn]) -> Fn:
    if len(args) not in (2, 3):
        raise Unsupported("iif() arguments")

    def run(focus: list[Any], env: Env) -> list[Any]:
        values = source(focus, env)
        if len(values) > 1:
            _fail("iif() on several items")
        if truth(args[0](values, env)):
            return args[1](values, env)
        return args[2](values, env) if len(args) == 3 else []

    return run


def _single(values: list[Any]) -> Any:
    if len(values) > 1:
        _fail("a function of one item was given several")
    return values[0] if values else None


def _single_string(values: list[Any]) -> str | None:
    value = _single(values)
    return value if isinstance(value, str) else None


def _empty(values: list[Any], env: Env) -> list[Any]:
    return [not values]


def _not(values: list[Any], env: Env) -> list[Any]:
    value = truth(values)
    return [] if value is None else [not value]


def _count(values: list[Any], env: Env) -> list[Any]:
    return [len(values)]


def _has_value(values: list[Any], env: Env) -> list[Any]:
    return [len(values) == 1 and not isinstance(values[0], dict | list)]


def _is_distinct(values: list[Any], env: Env) -> list[Any]:
    return [len(_distinct(values)) == len(values)]


def _first(values: list[Any], env: Env) -> list[Any]:
    return values[:1]


def _last(values: list[Any], env: Env) -> list[Any]:
    return values[-1:]


def _tail(values: list[Any], env: Env) -> list[Any]:
    return values[1:]


def _children_of(value: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "resourceType" or key.startswith("_"):
                continue
            if isinstance(child, list):
                out.extend(c for c in child if c is not None)
            else:
                out.append(child)
    return out


def _children(values: list[Any], env: Env) -> list[Any]:
    return [c for v in values for c in _children_of(v)]


def _descendants(values: list[Any], env: Env) -> list[Any]:
    out: list[Any] = []
    pending = _children(values, env)
    while pending:
        out.extend(pending)
        pending = _children(pending, env)
    return out


def _matches(values: list[Any], env: Env, pattern: list[Any]) -> list[Any]:
    text, regex = _single_string(values), _single_string(pattern)
    if text is None or regex is None:
        return []
    return [_regex(regex).search(text) is not None]


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def _replace_matches(
    values: list[Any], env: Env, pattern: list[Any], replacement: list[Any]
) -> list[Any]:
    text, regex, by = _single_string(values), _single_string(pattern), _single(replacement)
    if text is None or regex is None or not isinstance(by, str):
        return []
    return [_regex(regex).sub(by.replace("\\", "\\\\").replace("$", "\\"), text)]


def _starts_with(values: list[Any], env: Env, prefix: list[Any]) -> list[Any]:
    text, start = _single_string(values), _single_string(prefix)
    return [] if text is None or start is None else [text.startswith(start)]


def _contains_text(values: list[Any], env: Env, part: list[Any]) -> list[Any]:
    text, inner = _single_string(values), _single_string(part)
    return [] if text is None or inner is None else [inner in text]


def _substring(values: list[Any], env: Env, start: list[Any], *length: list[Any]) -> list[Any]:
    text, at = _single_string(values), _single(start)
    if text is None or not isinstance(at, int) or at < 0 or at >= len(text):
        return []
    if length:
        size = _single(length[0])
        return [text[at : at + size]] if isinstance(size, int) else [text[at:]]
    return [text[at:]]


def _length(values: list[Any], env: Env) -> list[Any]:
    text = _single_string(values)
    return [] if text is None else [len(text)]


def _to_integer(values: list[Any], env: Env) -> list[Any]:
    value = _single(values)
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return [int(value)]
    return []


def _to_string(values: list[Any], env: Env) -> list[Any]:
    value = _single(values)
    if value is None or isinstance(value, dict | list):
        return []
    return [_string(value)]


def _combine(values: list[Any], env: Env, other: list[Any]) -> list[Any]:
    return values + other


def _intersect(values: list[Any], env: Env, other: list[Any]) -> list[Any]:
    return _distinct([v for v in values if any(_equal(v, o) for o in other)])


def _distinct_function(values: list[Any], env: Env) -> list[Any]:
    return _distinct(values)


def _union(values: list[Any], env: Env, other: list[Any]) -> list[Any]:
    return _distinct(values + other)


_FUNCTIONS: dict[tuple[str, int], Callable[..., list[Any]]] = {
    ("empty", 0): _empty,
    ("not", 0): _not,
    ("count", 0): _count,
    ("hasValue", 0): _has_value,
    ("isDistinct", 0): _is_distinct,
    ("distinct", 0): _distinct_function,
    ("first", 0): _first,
    ("last", 0): _last,
    ("tail", 0): _tail,
    ("children", 0): _children,
    ("descendants", 0): _descendants,
    ("matches", 1): _matches,
    ("replaceMatches", 2): _replace_matches,
    ("startsWith", 1): _starts_with,
    ("contains", 1): _contains_text,
    ("substring", 1): _substring,
    ("substring", 2): _substring,
    ("length", 0): _length,
    ("toInteger", 0): _to_integer,
    ("toString", 0): _to_string,
    ("combine", 1): _combine,
    ("intersect", 1): _intersect,
    ("union", 1): _union,
}
