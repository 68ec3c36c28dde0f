"""A parser for the part of FHIRPath that search parameter expressions use
(http://hl7.org/fhirpath/N1/ grammar, https://hl7.org/fhir/R4/fhirpath.html).

It accepts paths (``Observation.code``), function calls (``.where(...)``, ``.as(T)``,
``.extension('url')``), indexers (``entry[0]``), the type operators ``is``/``as``, unions
``|``, ``=``/``!=``, ``and``/``or``, string/number/boolean literals, ``%resource`` and
``$this``, with FHIRPath precedence (``.`` > ``[]`` > ``is as`` > ``|`` > ``= !=`` >
``and`` > ``or``). Anything else raises :class:`Unsupported`, and the caller falls back
to fhirpathpy. Parsing is done once per (resource type, parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class Unsupported(ValueError):
    """The expression uses FHIRPath outside the natively compiled subset."""


@dataclass(frozen=True, slots=True)
class Ident:
    """A bare identifier in term position: a member of the context, or a type filter."""

    name: str


@dataclass(frozen=True, slots=True)
class Member:
    target: Node
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    target: Node | None
    """None when called on the context (``where(resolve() is X)``'s ``resolve()``)."""
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Index:
    target: Node
    index: int


@dataclass(frozen=True, slots=True)
class TypeOp:
    op: str
    """``is`` or ``as``."""
    target: Node
    type_name: str


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    """``|``, ``=``, ``!=``, ``and``, ``or``."""
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | bool | int


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    """``resource`` (``%resource``) or ``this`` (``$this``)."""


Node = Ident | Member | Call | Index | TypeOp | Binary | Literal | Variable

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<var>%[A-Za-z_][A-Za-z0-9_]*|\$this)"
    r"|(?P<op>!=|[.()\[\]|=,])"
    r")"
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n"}
_ESCAPES |= {"r": "\r", "t": "\t"}


def parse(expression: str) -> Node:
    """Parse ``expression`` into the AST above, or raise :class:`Unsupported`."""
    parser = _Parser(_tokenize(expression))
    node = parser.expression()
    if parser.peek() is not None:
        raise Unsupported(f"unexpected {parser.peek()!r} in {expression!r}")
    return node


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise Unsupported(f"cannot read {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    chars = iter(body)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in _ESCAPES:
                raise Unsupported(f"escape \\{nxt} in {text}")
            out.append(_ESCAPES[nxt])
        else:
            out.append(ch)
    return "".join(out)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end of expression")
        self._pos += 1
        return token

    def _accept(self, value: str, kind: str = "op") -> bool:
        token = self.peek()
        if token == (kind, value):
            self._pos += 1
            return True
        return False

    def _expect(self, value: str) -> None:
        if not self._accept(value):
            raise Unsupported(f"expected {value!r}, got {self.peek()!r}")

    def expression(self) -> Node:
        return self._or()

    def _or(self) -> Node:
        node = self._and()
        while self._accept("or", "ident"):
            node = Binary("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._equality()
        while self._accept("and", "ident"):
            node = Binary("and", node, self._equality())
        return node

    def _equality(self) -> Node:
        node = self._union()
        for op in ("=", "!="):
            if self._accept(op):
                return Binary(op, node, self._union())
        return node

    def _union(self) -> Node:
        node = self._type_op()
        while self._accept("|"):
            node = Binary("|", node, self._type_op())
        return node

    def _type_op(self) -> Node:
        node = self._postfix()
        for op in ("is", "as"):
            if self._accept(op, "ident"):
                return TypeOp(op, node, self._type_name())
        return node

    def _type_name(self) -> str:
        kind, value = self._take()
        if kind != "ident":
            raise Unsupported(f"expected a type name, got {value!r}")
        name = value.strip("`")
        if self._accept("."):
            kind, value = self._take()
            if kind != "ident":
                raise Unsupported(f"expected a type name, got {value!r}")
            name = f"{name}.{value.strip('`')}"
        return name

    def _postfix(self) -> Node:
        node = self._term()
        while True:
            if self._accept("."):
                node = self._invocation(node)
            elif self._accept("["):
                kind, value = self._take()
                if kind != "num" or not value.isdigit():
                    raise Unsupported(f"indexer {value!r}")
                self._expect("]")
                node = Index(node, int(value))
            else:
                return node

    def _invocation(self, target: Node | None) -> Node:
        kind, value = self._take()
        if kind != "ident":
            raise Unsupported(f"expected a name, got {value!r}")
        name = value.strip("`")
        if self._accept("("):
            return Call(target, name, self._arguments())
        if target is None:
            return Ident(name)
        return Member(target, name)

    def _arguments(self) -> tuple[Node, ...]:
        args: list[Node] = []
        if self._accept(")"):
            return ()
        while True:
            args.append(self.expression())
            if self._accept(")"):
                return tuple(args)
            self._expect(",")

    def _term(self) -> Node:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end of expression")
        kind, value = token
        if kind == "op" and value == "(":
            self._pos += 1
            node = self.expression()
            self._expect(")")
            return node
        if kind == "str":
            self._pos += 1
            return Literal(_unquote(value))
        if kind == "num":
            self._pos += 1
            if "." in value:
                raise Unsupported(f"decimal literal {value}")
            return Literal(int(value))
        if kind == "var":
            self._pos += 1
            if value == "$this":
                return Variable("this")
            if value == "%resource":
                return Variable("resource")
            raise Unsupported(f"variable {value}")
        if kind == "ident":
            if value in ("true", "false"):
                self._pos += 1
                return Literal(value == "true")
            return self._invocation(None)
        raise Unsupported(f"unexpected {value!r}")
