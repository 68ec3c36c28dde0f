"""The XHTML of a narrative (``Narrative.div``), https://hl7.org/fhir/R4/narrative.html#xhtml
(rules ``txt-1`` and ``txt-2``, https://hl7.org/fhir/R4/narrative.html#invs).

The ``div`` is parsed with a real XML parser (the standard library's expat) and must be:

- well-formed XML whose root is a ``div`` in the XHTML namespace
  (``http://www.w3.org/1999/xhtml``);
- made only of the basic HTML formatting elements of :data:`ELEMENTS` (HTML 4.0 chapters
  7-11 and 15, ``a``, ``img``) with the attributes of :data:`ATTRIBUTES` (common ones and
  each element's own): no ``head``/``body``, scripts, forms, frames, ``object``,
  ``base``/``link``, no event handler attributes (``onclick`` ...), no ``xlink``, and no
  ``javascript:`` / ``vbscript:`` URL in ``href`` or ``src``;
- free of DTDs, entity declarations and references to entities other than XML's own five
  (``&amp;`` ``&lt;`` ``&gt;`` ``&quot;`` ``&apos;``) and character references, so it is
  safe from XXE and entity expansion ("billion laughs"): the parser stops at the first
  ``<!DOCTYPE``, never reads an external entity, and expands none;

``txt-2`` (some non-whitespace content) is not checked: four official R4 examples
(``ActivityDefinition-blood-tubes-supply`` ...) have a generated narrative that is an empty
``div``, and an empty ``div`` is harmless.

``problems(div)`` gives the messages (empty when the XHTML is valid).
"""

from __future__ import annotations

import re
from xml.parsers import expat

XHTML = "http://www.w3.org/1999/xhtml"
_SEPARATOR = " "  # expat's namespace separator: "uri name"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ELEMENTS = _words(
    """p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt small dfn q var abbr
    acronym cite blockquote hr address bdo kbd samp sub sup ul ol li dl dt dd pre table
    caption colgroup col thead tr tfoot tbody th td code img map area"""
)
"""The elements the R4 narrative may hold (the reference validator's list)."""

_COMMON = frozenset({"title", "style", "class", "id", "lang", "xml:lang", "dir", "accesskey",
                     "tabindex"})  # fmt: skip
_TABLE = frozenset({"span", "width", "align", "valign", "char", "charoff", "abbr", "axis",
                    "headers", "scope", "rowspan", "colspan", "border", "cellpadding",
                    "cellspacing", "summary", "frame", "rules", "bgcolor"})  # fmt: skip
ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset(
        {"href", "name", "rel", "rev", "shape", "coords", "charset", "hreflang", "type", "target"}
    ),  # fmt: skip
    "img": frozenset(
        {
            "src",
            "alt",
            "longdesc",
            "height",
            "width",
            "usemap",
            "ismap",
            "border",
            "align",
            "hspace",
            "vspace",
        }
    ),  # fmt: skip
    "area": frozenset({"href", "alt", "shape", "coords", "nohref", "target"}),
    "map": frozenset({"name"}),
    "blockquote": frozenset({"cite"}),
    "q": frozenset({"cite"}),
    "ol": frozenset({"start", "type", "compact"}),
    "ul": frozenset({"type", "compact"}),
    "li": frozenset({"value", "type"}),
    "pre": frozenset({"width"}),
    "br": frozenset({"clear"}),
    "hr": frozenset({"align", "noshade", "size", "width"}),
    "p": frozenset({"align"}),
    "div": frozenset({"align"}),
    **{h: frozenset({"align"}) for h in ("h1", "h2", "h3", "h4", "h5", "h6")},
    **{
        t: _TABLE
        for t in (
            "table",
            "caption",
            "colgroup",
            "col",
            "thead",
            "tr",
            "tfoot",
            "tbody",
            "th",
            "td",
        )
    },  # fmt: skip
}
"""Each element's own attributes, besides the common ones (``_COMMON``)."""

_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "cite", "usemap"})
_SCRIPT_URL = re.compile(r"^\s*(javascript|vbscript|livescript)\s*:", re.IGNORECASE)
_CONTROL_IN_URL = re.compile(r"[\x00-\x20]")
_MAX_PROBLEMS = 10


class _Stop(Exception):
    """Raised from a handler to stop parsing (a DTD, an entity)."""


class _Check:
    """The state of one parse: the problems found."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.depth = 0

    def note(self, message: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS and message not in self.problems:
            self.problems.append(message)

    def start(self, name: str, attributes: dict[str, str]) -> None:
        uri, _, local = name.rpartition(_SEPARATOR)
        if self.depth == 0:
            if local != "div" or uri != XHTML:
                where = f"{{{uri}}}{local}" if uri else local
                self.note(f"The narrative must be a 'div' in the XHTML namespace ({XHTML}), "
                          f"not {where!r}")  # fmt: skip
        elif uri != XHTML:
            self.note(f"Element {local!r} is not in the XHTML namespace")
        self.depth += 1
        if local not in ELEMENTS:
            self.note(f"Element {local!r} is not allowed in a narrative")
            return
        allowed = ATTRIBUTES.get(local, frozenset())
        for key, value in attributes.items():
            self.attribute(local, key, value, allowed)

    def attribute(self, element: str, key: str, value: str, allowed: frozenset[str]) -> None:
        uri, _, local = key.rpartition(_SEPARATOR)
        if uri == "http://www.w3.org/XML/1998/namespace":
            local = "xml:" + local
        elif uri:
            self.note(f"Attribute {local!r} of {element!r} is not allowed (namespace {uri})")
            return
        if local.lower().startswith("on"):
            self.note(f"Event handler attribute {local!r} of {element!r} is not allowed")
        elif local not in _COMMON and local not in allowed:
            self.note(f"Attribute {local!r} is not allowed on {element!r}")
        elif local in _URL_ATTRIBUTES and _SCRIPT_URL.match(_CONTROL_IN_URL.sub("", value)):
            self.note(f"Attribute {local!r} of {element!r} must not be a script URL")

    def end(self, name: str) -> None:
        self.depth -= 1


def problems(div: str) -> list[str]:
    """The problems of a narrative's XHTML (empty when it is valid)."""
    check = _Check()
    parser = expat.ParserCreate(encoding="utf-8", namespace_separator=_SEPARATOR)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = check.start
    parser.EndElementHandler = check.end
    parser.StartDoctypeDeclHandler = _no_doctype
    parser.EntityDeclHandler = _no_entity
    parser.ExternalEntityRefHandler = _no_external
    parser.ProcessingInstructionHandler = _no_instruction
    try:
        parser.Parse(div.encode("utf-8"), True)
    except _Stop as stop:
        return [str(stop)]
    except expat.ExpatError as exc:
        message = expat.ErrorString(exc.code) if exc.code else str(exc)
        return [f"The narrative is not well-formed XHTML: {message} "
                f"(line {exc.lineno}, column {exc.offset})"]  # fmt: skip
    except UnicodeEncodeError:
        return ["The narrative is not valid Unicode"]
    return check.problems


def _no_doctype(*_args: object) -> None:
    raise _Stop("A narrative must not have a DOCTYPE (no DTDs or entity declarations)")


def _no_entity(*_args: object) -> None:
    raise _Stop("A narrative must not declare entities")


def _no_external(*_args: object) -> int:
    raise _Stop("A narrative must not reference external entities")


def _no_instruction(*_args: object) -> None:
    raise _Stop("A narrative must not have processing instructions")
