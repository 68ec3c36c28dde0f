"""Convert the official FHIRPath Patch test cases from XML to FHIR JSON, once.

The cases are ``r4/patch/fhir-patch-tests.xml`` of https://github.com/FHIR/fhir-test-cases
(Apache-2.0). Each ``<case name=".." mode="..">`` holds an ``<input>`` resource, a
``<diff>`` (the ``Parameters`` patch, https://hl7.org/fhir/R4/fhirpatch.html) and either an
``<output>`` resource or an ``<error msg=".."/>``. This script writes them as a JSON list
of ``{"name", "mode", "input", "patch", "output" | "error"}``, the resources in FHIR JSON
(https://hl7.org/fhir/R4/json.html), converted from FHIR XML
(https://hl7.org/fhir/R4/xml.html) by the R4 element definitions:

- an element that repeats (max ``*`` in R4, ``resources.definitions.element_repeats``)
  becomes an array, every other a single value;
- a primitive's ``value`` attribute becomes the JSON value (booleans, integers and
  decimals as JSON numbers and literals, the rest as strings); its ``id`` attribute and
  ``extension`` children go to the ``_name`` twin (arrays of twins kept aligned with
  their values, ``null`` where an item has none);
- ``id`` and ``url`` attributes of other elements become properties;
- a resource-typed element (``contained``, ``Parameters.parameter.resource``) holds the
  inner resource with its ``resourceType``;
- the narrative ``div`` becomes its XHTML text, with its ``xmlns`` declaration (only
  ``&``, ``<``, ``>`` escaped in text);
- XML comments are dropped (FHIR JSON has none).

An element unknown to R4 stops the conversion rather than guess. The XML is committed
beside its conversion (``tests/data/fhir-test-cases/``, with the licence and a README).
Usage (from the repository root)::

    .venv/bin/python scripts/convert_fhir_patch_tests.py \\
        [tests/data/fhir-test-cases/r4/patch/fhir-patch-tests.xml] \\
        [--out tests/data/fhir-test-cases/r4/patch/fhir-patch-tests.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.dom import minidom
from xml.dom.minidom import Element, Node

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resources.definitions import element_repeats  # noqa: E402
from resources.fhirpath_elements import (  # noqa: E402
    element_type,
    is_primitive_type,
    lookup,
)

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
DEFAULT_SOURCE = Path("tests/data/fhir-test-cases/r4/patch/fhir-patch-tests.xml")
DEFAULT_OUT = DEFAULT_SOURCE.with_suffix(".json")

_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt"})
_ATTRIBUTES = ("id", "url")  # attributes that are elements (Element.id, Extension.url)


class ConversionError(ValueError):
    """The XML holds something this converter does not know how to write as JSON."""


def _elements(node: Element) -> list[Element]:
    return [child for child in node.childNodes if child.nodeType == child.ELEMENT_NODE]


def _only_element(node: Element) -> Element:
    found = _elements(node)
    if len(found) != 1:
        raise ConversionError(f"<{node.tagName}> must hold exactly one element")
    return found[0]


def xhtml(node: Node) -> str:
    """XHTML text of a narrative ``div`` (https://hl7.org/fhir/R4/narrative.html#xhtml),
    escaping only what XML requires, so ``"`` in text stays ``"`` as in a string value."""
    if node.nodeType in (node.TEXT_NODE, node.CDATA_SECTION_NODE):
        return _escape(node.data, {"&": "&amp;", "<": "&lt;", ">": "&gt;"})
    if node.nodeType != node.ELEMENT_NODE:
        return ""  # comments and processing instructions are not narrative content
    assert isinstance(node, Element)
    attributes = "".join(
        f' {name}="{_escape(value, {"&": "&amp;", "<": "&lt;", chr(34): "&quot;"})}"'
        for name, value in node.attributes.items()
    )
    inner = "".join(xhtml(child) for child in node.childNodes)
    if not inner:
        return f"<{node.tagName}{attributes}/>"
    return f"<{node.tagName}{attributes}>{inner}</{node.tagName}>"


def _escape(text: str, table: dict[str, str]) -> str:
    return "".join(table.get(char, char) for char in text)


def resource_json(node: Element) -> dict[str, Any]:
    """A FHIR XML resource element as FHIR JSON."""
    if node.namespaceURI != FHIR_NS:
        raise ConversionError(f"<{node.tagName}> is not in the FHIR namespace")
    out: dict[str, Any] = {"resourceType": node.localName}
    _fill(out, node, node.localName, node.localName)
    return out


def _primitive(text: str, type_name: str) -> Any:
    if type_name == "boolean":
        if text not in ("true", "false"):
            raise ConversionError(f"{text!r} is not a boolean")
        return text == "true"
    if type_name in _INTEGERS:
        return int(text)
    if type_name == "decimal":
        return Decimal(text)
    return text


def _fill(out: dict[str, Any], node: Element, type_name: str, where: str) -> None:
    """Write the attributes and child elements of ``node`` (of type ``type_name``)."""
    for name in _ATTRIBUTES:
        if node.hasAttribute(name):
            out[name] = node.getAttribute(name)
    pairs: dict[str, list[tuple[Any, Any]]] = {}
    repeating: dict[str, bool] = {}
    for child in _elements(node):
        key = child.localName
        if child.namespaceURI == XHTML_NS and key == "div":
            out["div"] = xhtml(child)
            continue
        if child.namespaceURI != FHIR_NS:
            raise ConversionError(f"{where}: <{child.tagName}> is not in the FHIR namespace")
        definition, name, _ = lookup(type_name, key)
        if definition is None:
            raise ConversionError(f"{where}: {type_name} has no element {key!r}")
        repeats = element_repeats(definition.path)
        if repeats is None:
            raise ConversionError(f"{where}.{key}: cardinality of {definition.path} unknown")
        repeating[key] = repeats
        pairs.setdefault(key, []).append(_element(child, definition, key, name, f"{where}.{key}"))
    for key, items in pairs.items():
        if not repeating[key] and len(items) > 1:
            raise ConversionError(f"{where}.{key} does not repeat but is given {len(items)} times")
        values = [value for value, _ in items]
        twins = [twin for _, twin in items]
        if repeating[key]:
            if any(value is not None for value in values):
                out[key] = values
            if any(twin is not None for twin in twins):
                out["_" + key] = twins
        else:
            if values[0] is not None:
                out[key] = values[0]
            if twins[0] is not None:
                out["_" + key] = twins[0]


def _element(node: Element, definition: Any, key: str, name: str, where: str) -> tuple[Any, Any]:
    """(JSON value, ``_key`` twin or None) of one element."""
    if definition.type == "Resource":
        return resource_json(_only_element(node)), None
    type_name = element_type(definition, key, name, None)
    if type_name is None:
        raise ConversionError(f"{where}: no type known")
    if is_primitive_type(type_name):
        value = None
        if node.hasAttribute("value"):
            value = _primitive(node.getAttribute("value"), type_name)
        twin: dict[str, Any] = {}
        _fill(twin, node, "Element", where)
        return value, (twin or None)
    out: dict[str, Any] = {}
    _fill(out, node, type_name, where)
    return out, None


def convert_case(case: Element) -> dict[str, Any]:
    """One ``<case>`` as ``{"name", "mode", "input", "patch", "output" | "error"}``."""
    out: dict[str, Any] = {"name": case.getAttribute("name"), "mode": case.getAttribute("mode")}
    for child in _elements(case):
        tag = child.tagName
        if tag == "input":
            out["input"] = resource_json(_only_element(child))
        elif tag == "diff":
            out["patch"] = resource_json(_only_element(child))
        elif tag == "output":
            out["output"] = resource_json(_only_element(child))
        elif tag == "error":
            out["error"] = child.getAttribute("msg")
        else:
            raise ConversionError(f"case {out['name']!r}: unexpected <{tag}>")
    if "input" not in out or "patch" not in out or ("output" in out) == ("error" in out):
        raise ConversionError(f"case {out['name']!r} needs input, diff and output or error")
    return out


def convert(source: Path) -> list[dict[str, Any]]:
    document = minidom.parse(str(source))
    root = document.documentElement
    if root.tagName != "tests":
        raise ConversionError("the root element must be <tests>")
    return [convert_case(case) for case in _elements(root)]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        raise ConversionError("decimals are not expected in these cases; extend the writer")
    raise TypeError(type(value).__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", type=Path, nargs="?", default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    cases = convert(args.source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(cases, indent=2, ensure_ascii=False, default=_json_default)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{len(cases)} cases written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
