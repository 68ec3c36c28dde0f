"""A parser of the FHIRPath the R4 invariants are written in, into a small tree of tuples
(https://hl7.org/fhirpath/N1/, the normative grammar of FHIRPath 2.0; R4 invariants:
https://hl7.org/fhir/R4/conformance-rules.html#constraints).

The grammar is the whole expression language minus what no R4 invariant uses (quantity
and date/time literals, ``$index``/``$total``, ``~``/``!~``): a literal, ``$this``,
``%name``, identifiers (also in backticks), ``.name``, ``.fn(args)``, ``[index]``, unary
``+``/``-`` and the binary operators in FHIRPath precedence order. What it does not read
raises :class:`Unsupported` (the invariant is then left out, see ``invariants``).

Nodes are tuples: ``("lit", value)``, ``("empty",)``, ``("this",)``, ``("var", name)``,
``("id", name)`` (an identifier at the start of a path), ``("nav", base, name)``,
``("call", base | None, name, args)``, ``("index", base, index)``, ``("op", op, left,
right)``, ``("neg", operand)``, ``("type", "is" | "as", operand, type name)``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

Node = tuple[Any, ...]


class Unsupported(ValueError):
    """An expression (or a part of one) outside what this module reads or compiles."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
    |(?P<number>\d+(?:\.\d+)?)
    |(?P<backtick>`(?:[^`\\]|\\.)*`)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<var>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]*`|%'[^']*')
    |(?P<special>\$this|\$index|\$total)
    |(?P<op><=|>=|!=|!~|[-+*/&|<>=~.,()\[\]{}])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}  # fmt: skip

# Binary operators by precedence, loosest first (FHIRPath section 6.9 / the grammar).
_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"implies"}),
    frozenset({"or", "xor"}),
    frozenset({"and"}),
    frozenset({"in", "contains"}),
    frozenset({"=", "!=", "~", "!~"}),
    frozenset({"<", ">", "<=", ">="}),
    frozenset({"|"}),
    frozenset({"is", "as"}),  # type expressions
    frozenset({"+", "-", "&"}),
    frozenset({"*", "/", "div", "mod"}),
)
_WORD_OPERATORS = frozenset({"implies", "or", "xor", "and", "in", "contains", "is", "as",
                             "div", "mod"})  # fmt: skip


def _unescape(text: str) -> str:
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _escape, text)


def _escape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def _tokens(expression: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise Unsupported(f"cannot read {expression[position : position + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        position = match.end()
    out.append(("end", ""))
    return out


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        kind, value = self.take()
        if value != text or kind not in ("op", "name"):
            raise Unsupported(f"expected {text!r}, found {value!r}")

    def binary_operator(self, level: int) -> str | None:
        kind, value = self.peek()
        if kind == "op" and value in _LEVELS[level]:
            return value
        if kind == "name" and value in _LEVELS[level]:
            return value
        return None

    def expression(self, level: int = 0) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while (operator := self.binary_operator(level)) is not None:
            self.take()
            if operator in ("is", "as"):
                left = ("type", operator, left, self.type_name())
            else:
                left = ("op", operator, left, self.expression(level + 1))
        return left

    def type_name(self) -> str:
        kind, value = self.take()
        if kind == "backtick":
            value = value[1:-1]
        elif kind != "name":
            raise Unsupported(f"expected a type name, found {value!r}")
        while self.peek() == ("op", "."):  # FHIR.Patient, System.Boolean
            self.take()
            value = self.take()[1]
        return value

    def unary(self) -> Node:
        kind, value = self.peek()
        if kind == "op" and value in "+-" and value:
            self.take()
            operand = self.unary()
            return ("neg", operand) if value == "-" else operand
        return self.postfix(self.term())

    def term(self) -> Node:
        kind, value = self.take()
        if kind == "string":
            return ("lit", _unescape(value[1:-1]))
        if kind == "number":
            return ("lit", Decimal(value) if "." in value else int(value))
        if kind == "special":
            if value != "$this":
                raise Unsupported(value)
            return ("this",)
        if kind == "var":
            return ("var", value[1:].strip("`'"))
        if kind == "op" and value == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if kind == "op" and value == "{":
            self.expect("}")
            return ("empty",)
        if kind == "backtick":
            return ("id", _unescape(value[1:-1]))
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if self.peek() == ("op", "("):
                return self.call(None, value)
            return ("id", value)
        raise Unsupported(f"unexpected {value!r}")

    def call(self, base: Node | None, name: str) -> Node:
        self.expect("(")
        args: list[Node] = []
        if self.peek() != ("op", ")"):
            args.append(self.expression())
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.expression())
        self.expect(")")
        return ("call", base, name, tuple(args))

    def postfix(self, node: Node) -> Node:
        while True:
            kind, value = self.peek()
            if kind == "op" and value == ".":
                self.take()
                kind, name = self.take()
                if kind == "backtick":
                    name = _unescape(name[1:-1])
                elif kind != "name":
                    raise Unsupported(f"expected a name after '.', found {name!r}")
                called = self.peek() == ("op", "(")
                node = self.call(node, name) if called else ("nav", node, name)
            elif kind == "op" and value == "[":
                self.take()
                index = self.expression()
                self.expect("]")
                node = ("index", node, index)
            else:
                return node


def parse(expression: str) -> Node:
    """The tree of a FHIRPath expression; :class:`Unsupported` when it cannot be read."""
    parser = _Parser(expression)
    node = parser.expression()
    if parser.peek()[0] != "end":
        raise Unsupported(f"unexpected {parser.peek()[1]!r}")
    return node
