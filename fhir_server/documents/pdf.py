"""PDF rendering of the generated documents with fpdf2 (https://py-pdf.github.io/fpdf2/):
the International Patient Summary, the immunization record and the visit summary
(issue 20, "Generated documents").

Every document carries, at the top of each page, the organisation's name, the
document's title, the patient's name and birth date and the generation time; then its
sections, each a heading and a table (or paragraphs), and page numbers at the foot.
Text is set in the PDF core fonts (Helvetica): characters outside Latin-1 are written
as their closest Latin-1 form (accents kept where Latin-1 has them, others dropped).
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fpdf import FPDF
from starlette.responses import Response

from fhir_server.headers import FHIR_RESPONSE_HEADERS
from fhir_server.interactions.context import FhirResponse

PDF = "application/pdf"


@dataclass
class Section:
    """A heading and either a table (``columns`` and ``rows``) or ``paragraphs``;
    ``empty`` is said when there is neither."""

    title: str
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
    paragraphs: Sequence[str] = ()
    widths: Sequence[int] = ()
    empty: str = "None recorded."


@dataclass
class Document:
    title: str
    organization: str
    patient_name: str
    birth_date: str
    generated: str
    sections: list[Section] = field(default_factory=list)
    subtitle: str = ""


def latin1(text: object) -> str:
    """``text`` in the characters the core fonts have."""
    value = str(text)
    try:
        value.encode("latin-1")
        return value
    except UnicodeEncodeError:
        pass
    out = []
    for char in value:
        if ord(char) < 256:
            out.append(char)
            continue
        folded = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode()
        out.append(folded or {"\u2013": "-", "\u2014": "-", "\u2019": "'"}.get(char, "?"))
    return "".join(out)


class _Pdf(FPDF):
    def __init__(self, document: Document) -> None:
        super().__init__(format="A4")
        self.document = document
        self.set_title(latin1(document.title))
        self.set_author(latin1(document.organization))
        self.set_creator("fhir-server")
        self.set_auto_page_break(auto=True, margin=15)
        self.set_margins(15, 15, 15)

    def header(self) -> None:
        d = self.document
        self.set_font("Helvetica", "B", 14)
        self.cell(0, 7, latin1(d.organization), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", "B", 12)
        self.cell(0, 6, latin1(d.title), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", "", 9)
        born = d.birth_date or "unknown"
        line = f"Patient: {d.patient_name or 'unknown'}    Date of birth: {born}"
        self.cell(0, 5, latin1(line), new_x="LMARGIN", new_y="NEXT")
        generated = f"Generated: {d.generated}"
        if d.subtitle:
            generated = f"{d.subtitle}    {generated}"
        self.cell(0, 5, latin1(generated), new_x="LMARGIN", new_y="NEXT")
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.ln(4)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "", 8)
        self.cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="C")


_LINE = 4.5
"""Height of a line of table text (mm)."""


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` (words longer than a line are cut). The
    core fonts have no kerning: a line is as wide as its words and spaces."""
    space = pdf.get_string_width(" ")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words: list[str] = []
        used = 0.0
        for word in paragraph.split():
            size = pdf.get_string_width(word)
            while size > width and len(word) > 1:  # a word wider than the line: cut
                if words:
                    lines.append(" ".join(words))
                    words, used = [], 0.0
                cut = max(1, int(len(word) * width / size) - 1)
                lines.append(word[:cut])
                word = word[cut:]
                size = pdf.get_string_width(word)
            if words and used + space + size > width:
                lines.append(" ".join(words))
                words, used = [], 0.0
            used += (space if words else 0.0) + size
            words.append(word)
        lines.append(" ".join(words))
    return lines or [""]


def _paragraphs(pdf: FPDF, paragraphs: Sequence[str]) -> None:
    """Paragraphs of text, wrapped to the page (fpdf2's ``multi_cell`` measures each line
    again for every character it adds: slow for notes)."""
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_font("Helvetica", "", 9)
    for paragraph in paragraphs:
        for line in _wrap(pdf, latin1(paragraph), width):
            if pdf.get_y() + 5 > pdf.page_break_trigger:
                pdf.add_page()
                pdf.set_font("Helvetica", "", 9)
            pdf.text(pdf.l_margin, pdf.get_y() + _LINE - 0.8, line)
            pdf.set_y(pdf.get_y() + _LINE)


def _table(pdf: FPDF, section: Section) -> None:
    """A section's table: a bold heading row on grey, then the rows, wrapped, with a rule
    under each; the heading row is repeated after a page break. (Drawn with fpdf2's
    primitives: its ``table()`` lays out each cell with ``multi_cell`` and costs ~5 ms a
    cell.)"""
    total = pdf.w - pdf.l_margin - pdf.r_margin
    count = len(section.columns)
    weights = list(section.widths) if len(section.widths) == count else [1] * count
    widths = [total * w / sum(weights) for w in weights]
    pad = 1.0

    def row(values: Sequence[str], heading: bool) -> None:
        pdf.set_font("Helvetica", "B" if heading else "", 9)
        cells = [_wrap(pdf, latin1(v), w - 2 * pad) for v, w in zip(values, widths, strict=False)]
        height = max(len(c) for c in cells) * _LINE + 1.5
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
            if not heading:
                row(section.columns, True)
                pdf.set_font("Helvetica", "", 9)
        top, x = pdf.get_y(), pdf.l_margin
        if heading:
            pdf.set_fill_color(230, 230, 230)
            pdf.rect(pdf.l_margin, top, total, height, style="F")
        for lines, width in zip(cells, widths, strict=False):
            for n, line in enumerate(lines):
                if line:
                    pdf.text(x + pad, top + (n + 1) * _LINE - 0.8, line)
            x += width
        pdf.line(pdf.l_margin, top + height, pdf.l_margin + total, top + height)
        pdf.set_y(top + height)

    row(section.columns, True)
    for values in section.rows:
        row(values, False)


def render(document: Document) -> bytes:
    """The PDF of ``document``."""
    pdf = _Pdf(document)
    pdf.add_page()
    for section in document.sections:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, latin1(section.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        if section.rows:
            _table(pdf, section)
        else:
            _paragraphs(pdf, section.paragraphs or [section.empty])
        pdf.ln(3)
    return bytes(pdf.output())


def wants_pdf(accept: str | None, format_param: str | None) -> bool:
    """Whether the caller asks for a PDF: ``_format=pdf`` (or ``application/pdf``), or an
    ``Accept`` whose first media type is ``application/pdf``."""
    if format_param:
        return format_param.strip().lower() in ("pdf", PDF)
    first = (accept or "").split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first == PDF


def wants_fhir(accept: str | None, format_param: str | None) -> bool:
    """Whether the caller asks for FHIR JSON explicitly (``_format=json`` or an ``Accept``
    whose first media type is a JSON one): a PDF is then sent as a Binary resource."""
    if format_param:
        return format_param.strip().lower() not in ("pdf", PDF)
    first = (accept or "").split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first in ("application/fhir+json", "application/json", "application/json+fhir")


def pdf_response(data: bytes, filename: str) -> Response:
    """The PDF as the answer (``inline``: a browser shows it, and can save it)."""
    headers = {**FHIR_RESPONSE_HEADERS, "Content-Disposition": f'inline; filename="{filename}"'}
    return Response(content=data, status_code=200, headers=headers, media_type=PDF)


def binary_of(data: bytes) -> dict[str, Any]:
    """The PDF as a Binary resource (not stored)."""
    return {"resourceType": "Binary", "contentType": PDF, "data": base64.b64encode(data).decode()}


def answer(
    data: bytes, filename: str, accept: str | None, format_param: str | None
) -> Response | FhirResponse:
    """The answer of an operation that makes a PDF: the PDF, or as a Binary resource when
    FHIR JSON is asked for."""
    if wants_fhir(accept, format_param):
        return FhirResponse(200, binary_of(data))
    return pdf_response(data, filename)
