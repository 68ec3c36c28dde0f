"""The paths of FHIRPath Patch operations, parsed into steps.

https://hl7.org/fhir/R4/fhirpatch.html (paths are FHIRPath, https://hl7.org/fhirpath/)

Patch paths must name locations in the JSON tree, not just values, so only the subset
patches use is accepted: the leading type name, member names, indexers ``[n]``,
``first()``, ``last()``, ``where(<predicate>)``, ``ofType(T)`` and ``extension(url)``.
fhirpathpy's grammar parses the text; ``where`` keeps its predicate as a fhirpathpy AST,
evaluated per candidate by ``resources.fhirpath_locations``. Paths are parsed once (cached).

A name after ``.`` may be one of FHIRPath's keywords (``Patient.text.div``: ``div`` is also
the integer division operator). The grammar's ``identifier`` rule takes only ``as``,
``contains``, ``in`` and ``is`` of them, but element names come from the FHIR model, and the
reference engines (the Java FHIRPath engine that the official patch test cases were written
for) accept any keyword there; so a keyword right after ``.`` is read as a delimited
identifier (`` `div` ``), in the path and in ``where`` predicates alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from resources.errors import invalid

__all__ = ["Path", "Step", "compile_path"]

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_ESCAPES = {"f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ARITY = {"first": 0, "last": 0, "where": 1, "ofType": 1, "extension": 1}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, eq=False)
class Step:
    kind: str  # member | index | first | last | where | ofType | extension
    name: str = ""
    number: int = 0
    predicate: dict[str, Any] | None = None


@dataclass(frozen=True)
class Path:
    text: str
    steps: tuple[Step, ...]


def compile_path(text: str, expr: str) -> Path:
    """The steps of a patch path; 400 ``invalid`` at ``expr`` when it cannot be one."""
    try:
        return _compile_path(text)
    except ValueError as exc:
        raise invalid(f"Patch path {text!r}: {exc}", expr) from None


@lru_cache(maxsize=512)
def _compile_path(text: str) -> Path:
    return Path(text, tuple(_steps(_parse_fhirpath(text))))


class _RaisingListener(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any):  # noqa: N802
        raise ValueError(f"syntax error at column {column + 1}: {msg}")


def _keywords_as_names(text: str) -> str:
    """``text`` with every keyword token that follows ``.`` delimited (`` `div` ``).

    Tokens come from the FHIRPath lexer, so keywords inside strings, comments or
    delimited identifiers are left alone; text that does not lex is returned as it is,
    for the parser to report.
    """
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    stream = CommonTokenStream(lexer)
    try:
        stream.fill()
    except Exception:  # antlr4 raises its own kinds on text it cannot lex
        return text
    visible = [token for token in stream.tokens if token.channel == 0 and token.type != -1]
    spans = [
        (token.start, token.stop + 1)
        for previous, token in zip(visible, visible[1:], strict=False)
        if previous.text == "."
        and token.type not in (FHIRPathLexer.IDENTIFIER, FHIRPathLexer.DELIMITEDIDENTIFIER)
        and _WORD.fullmatch(token.text)
    ]
    for start, stop in reversed(spans):
        text = f"{text[:start]}`{text[start:stop]}`{text[stop:]}"
    return text


def _parse_fhirpath(text: str) -> dict[str, Any]:
    text = _keywords_as_names(text)
    listener = _RaisingListener()
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    tree = parser.entireExpression()
    ast = ASTPathListener()
    ParseTreeWalker().walk(ast, tree)
    entire = ast.parentStack[0]["children"][0]
    return entire["children"][0]


def _steps(node: dict[str, Any]) -> Iterator[Step]:
    kind, children = node["type"], node.get("children", [])
    if kind == "TermExpression" and children[0]["type"] == "InvocationTerm":
        yield _invocation(children[0]["children"][0])
    elif kind == "InvocationExpression":
        yield from _steps(children[0])
        yield _invocation(children[1])
    elif kind == "IndexerExpression" and len(children) == 2:
        yield from _steps(children[0])
        yield Step("index", number=_integer_literal(children[1]))
    else:
        raise ValueError(f"unsupported expression {_describe(node)} in a patch path")


def _invocation(node: dict[str, Any]) -> Step:
    if node["type"] == "MemberInvocation":
        return Step("member", name=_identifier(node["children"][0]))
    if node["type"] != "FunctionInvocation":
        raise ValueError(f"unsupported expression {_describe(node)} in a patch path")
    functn = node["children"][0]["children"]
    name = _identifier(functn[0])
    params = functn[1]["children"] if len(functn) > 1 else []
    arity = _ARITY.get(name)
    if arity is None:
        raise ValueError(f"function {name}() is not supported in a patch path")
    if len(params) != arity:
        raise ValueError(f"{name}() takes {arity} argument(s)")
    if name == "where":
        return Step("where", predicate=params[0])
    if name == "ofType":
        return Step("ofType", name=_type_name(params[0]))
    if name == "extension":
        return Step("extension", name=_string_literal(params[0]))
    return Step(name)


def _identifier(node: dict[str, Any]) -> str:
    text: str = node["text"]
    return text[1:-1] if text.startswith("`") else text


def _literal(node: dict[str, Any], kind: str) -> str | None:
    if node["type"] == "TermExpression" and node["children"][0]["type"] == "LiteralTerm":
        literal = node["children"][0]["children"][0]
        if literal["type"] == kind:
            return str(literal["text"])
    return None


def _integer_literal(node: dict[str, Any]) -> int:
    text = _literal(node, "NumberLiteral")
    if text is None or not text.isdigit():
        raise ValueError("an indexer must be a non-negative integer literal")
    return int(text)


def _string_literal(node: dict[str, Any]) -> str:
    text = _literal(node, "StringLiteral")
    if text is None:
        raise ValueError("extension() takes a string literal url")
    return _ESCAPE.sub(_unescape, text[1:-1])


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def _type_name(node: dict[str, Any]) -> str:
    text = str(node.get("text", ""))
    for prefix in ("FHIR.", "System."):
        text = text.removeprefix(prefix)
    if not text.replace("_", "").isalnum():
        raise ValueError("ofType() takes a type name")
    return text


def _describe(node: dict[str, Any]) -> str:
    return str(node.get("text") or node["type"])
