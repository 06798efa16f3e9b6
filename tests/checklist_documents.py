"""Real checklist documents for the `campaign new` tests: the bundled checklist (the text of
campaigns/gr2026) and a second, different one, written as .docx by python-docx (Word's heading
and list styles, real footnotes and hyperlinks) and as HTML that Chromium prints to a PDF.

A document is a plain structure: a title, intro paragraphs and themes, each with blocks
("p", inline), ("h", text) and ("ul"/"ol", items) where an item is (inline, children), and
footnotes by label. ``inline`` is a list of (text, href, note) triples.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
_SUPER = str.maketrans("¹²³⁴⁵⁶⁷⁸⁹", "123456789")


def _inline(token) -> list[tuple[str, str | None, str | None]]:
    out: list[tuple[str, str | None, str | None]] = []
    href = None
    for child in token.children or ():
        if child.type == "link_open":
            href = child.attrGet("href")
        elif child.type == "link_close":
            href = None
        elif child.type in ("text", "code_inline"):
            # A superscript digit after punctuation is a footnote mark (m² is a unit).
            for part in re.split(r"(?<=[.,;:!?])([¹²³⁴⁵⁶⁷⁸⁹])", child.content):
                if re.fullmatch(r"[¹²³⁴⁵⁶⁷⁸⁹]", part):
                    out.append(("", None, part.translate(_SUPER)))
                elif part:
                    out.append((part, href, None))
        elif child.type == "softbreak":
            out.append((" ", href, None))
    return out


def _blocks(source: str) -> tuple[list, dict[str, list]]:
    tokens = MarkdownIt("commonmark").parse(source)
    blocks: list = []
    notes: dict[str, list] = {}
    in_sources = False
    stack: list[list] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.type == "heading_open":
            text = tokens[i + 1].content
            in_sources = text in ("Bronnen", "Noten")
            if not in_sources:
                blocks.append(("h", text))
            i += 3
            continue
        if t.type in ("bullet_list_open", "ordered_list_open"):
            items: list = []
            if stack:
                stack[-1][-1][1].extend([])  # children attach below
                parent_item = stack[-1][-1]
                parent_item[1].append(("ol" if t.type == "ordered_list_open" else "ul", items))
            else:
                blocks.append(("ol" if t.type == "ordered_list_open" else "ul", items))
            stack.append(items)
        elif t.type in ("bullet_list_close", "ordered_list_close"):
            stack.pop()
        elif t.type == "list_item_open":
            stack[-1].append([None, []])
        elif t.type == "paragraph_open":
            inline = _inline(tokens[i + 1])
            if stack and stack[-1] and stack[-1][-1][0] is None:
                stack[-1][-1][0] = inline
            elif in_sources:
                label = inline[0][0][:1].translate(_SUPER) if inline and inline[0][0] else ""
                if inline and inline[0][2]:
                    label, inline = inline[0][2], inline[1:]
                elif label:
                    first = (inline[0][0][1:].lstrip(), inline[0][1], None)
                    inline = [first, *inline[1:]]
                notes[label] = inline
            else:
                blocks.append(("p", inline))
        i += 1
    return blocks, notes


def bundled_checklist() -> dict:
    """The checklist as the bundled campaign holds it: title, intro and the nine themes."""
    import tomllib

    from mailer.render import content_context, expand
    from mailer.settings import load_campaign_settings

    folder = ROOT / "campaigns" / "gr2026"
    settings = tomllib.loads((folder / "campaign.toml").read_text(encoding="utf-8"))
    # The printed checklist names its election where the campaign's files name the fact.
    context = content_context(load_campaign_settings(folder))

    def printed(path: Path, text: str) -> str:
        return expand(text, context, where=path, first_line=1)

    intro, _ = _blocks(printed(folder / "intro.md", (folder / "intro.md").read_text(encoding="utf-8")))
    themes = []
    for path in sorted((folder / "mails").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        front, body = text.split("+++", 2)[1:]
        theme = tomllib.loads(front)["theme"]
        blocks, notes = _blocks(printed(path, body))
        themes.append({"title": theme, "blocks": blocks, "notes": notes})
    return {"title": settings["name"], "intro": intro, "themes": themes}


def second_checklist() -> dict:
    """A different document: four themes, lists three deep, an ordered list, a tracked link."""
    tracked = "https://www.legerdesheils.nl/voorbeeld/buurtwerk?utm_source=nieuwsbrief&utm_medium=email&fbclid=abc123&pagina=2"
    other = "https://www.rijksoverheid.nl/onderwerpen/armoede?utm_campaign=herfst&id=7"
    return {
        "title": "Zes weken voor de Provinciale Staten",
        "intro": [("p", [("Een korte inleiding op vier punten voor de provincie.", None, None)])],
        "themes": [
            {"title": "Openbaar vervoer in de regio", "blocks": [
                ("p", [("Busverbindingen verdwijnen uit dorpen; dat raakt wie geen auto heeft.", None, None),
                       ("", None, "1")]),
                ("ul", [
                    ([("Houd de buurtbus rijden", None, None)], [("ul", [
                        ([("met vrijwillige chauffeurs", None, None)], [("ul", [
                            ([("en een vergoeding voor hun onkosten", None, None)], []),
                        ])]),
                        ([("en een vaste dienstregeling", None, None)], []),
                    ])]),
                    ([("Maak het reizen goedkoper voor mensen met een laag inkomen", None, None)], []),
                ]),
            ], "notes": {"1": [("Cijfers van het Centraal Bureau voor de Statistiek, 2024.", None, None)]}},
            {"title": "Buurtwerk dat blijft", "blocks": [
                ("p", [("Lees ", None, None), ("hoe buurtwerk helpt", tracked, None),
                       (" en wat de provincie kan doen.", None, None)]),
                ("ol", [
                    ([("Geef meerjarige subsidies", None, None)], []),
                    ([("Betrek bewoners bij de plannen", None, None)], []),
                ]),
            ], "notes": {}},
            {"title": "Armoede in de provincie", "blocks": [
                ("p", [("Meer gezinnen komen niet rond. Zie ook ", None, None), ("de cijfers", other, None),
                       (".", None, None)]),
                ("ul", [([("Zorg voor een provinciaal armoedefonds", None, None)], [])]),
            ], "notes": {}},
            {"title": "Natuur dichtbij voor iedereen", "blocks": [
                ("p", [("Groen in de wijk is goed voor de gezondheid van iedereen in de buurt.", None, None)]),
                ("ul", [([("Leg groene schoolpleinen aan", None, None)], []),
                        ([("Open natuurgebieden voor rolstoelen", None, None)], [])]),
            ], "notes": {}},
        ],
    }


def recommendations(theme: dict) -> list[str]:
    """Every list item's text of a theme, nested ones included, in order."""
    out: list[str] = []

    def walk(items: list) -> None:
        for inline, children in items:
            out.append(" ".join("".join(t for t, _, n in inline if n is None).split()))
            for _kind, sub in children:
                walk(sub)

    for kind, value in theme["blocks"]:
        if kind in ("ul", "ol"):
            walk(value)
    return out


# --- .docx ----------------------------------------------------------------------------------

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def write_docx(doc: dict, path: Path) -> Path:
    """Word's way: Title, Heading 1 per theme, Heading 2 inside, List Bullet/Number N, footnotes."""
    import docx
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml

    document = docx.Document()
    document.add_paragraph(doc["title"], style="Title")
    notes_xml: list[str] = []
    footnotes = Part(PackURI("/word/footnotes.xml"),
                     "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml", b"",
                     document.part.package)
    document.part.relate_to(footnotes, RT.FOOTNOTES)
    counter = [0]

    def add_inline(paragraph, inline, notes: dict) -> None:
        for text, href, note in inline:
            if note is not None:
                counter[0] += 1
                nid = counter[0]
                ref = parse_xml(f'<w:r xmlns:w="{W_NS}"><w:rPr><w:vertAlign w:val="superscript"/></w:rPr>'
                                f'<w:footnoteReference w:id="{nid}"/></w:r>')
                paragraph._p.append(ref)
                body = ""
                for ntext, nhref, _ in notes[note]:
                    run = f'<w:r><w:t xml:space="preserve">{html.escape(ntext)}</w:t></w:r>'
                    if nhref:
                        rid = footnotes.relate_to(nhref, RT.HYPERLINK, is_external=True)
                        run = f'<w:hyperlink r:id="{rid}">{run}</w:hyperlink>'
                    body += run
                notes_xml.append(f'<w:footnote w:id="{nid}"><w:p><w:r><w:rPr><w:vertAlign w:val="superscript"/>'
                                 f'</w:rPr><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> </w:t></w:r>{body}'
                                 "</w:p></w:footnote>")
            elif href:
                rid = document.part.relate_to(href, RT.HYPERLINK, is_external=True)
                paragraph._p.append(parse_xml(
                    f'<w:hyperlink xmlns:w="{W_NS}" xmlns:r="{R_NS}" r:id="{rid}"><w:r><w:rPr>'
                    f'<w:rStyle w:val="Hyperlink"/></w:rPr><w:t xml:space="preserve">{html.escape(text)}</w:t>'
                    "</w:r></w:hyperlink>"))
            else:
                paragraph.add_run(text)

    def add_list(kind: str, items: list, depth: int, notes: dict) -> None:
        base = "List Number" if kind == "ol" else "List Bullet"
        style = base if depth == 0 else f"{base} {depth + 1}"
        for inline, children in items:
            add_inline(document.add_paragraph(style=style), inline, notes)
            for sub_kind, sub in children:
                add_list(sub_kind, sub, depth + 1, notes)

    def add_blocks(blocks: list, notes: dict) -> None:
        for kind, value in blocks:
            if kind == "p":
                add_inline(document.add_paragraph(), value, notes)
            elif kind == "h":
                document.add_heading(value, level=2)
            else:
                add_list(kind, value, 0, notes)

    add_blocks(doc["intro"], {})
    for n, theme in enumerate(doc["themes"], start=1):
        document.add_heading(f"{n}. {theme['title']}", level=1)
        add_blocks(theme["blocks"], theme["notes"])
    footnotes._blob = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                       f'<w:footnotes xmlns:w="{W_NS}" xmlns:r="{R_NS}">'
                       '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
                       '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
                       f'</w:r></w:p></w:footnote>{"".join(notes_xml)}</w:footnotes>').encode("utf-8")
    document.save(str(path))
    return path


# --- HTML printed to PDF by Chromium --------------------------------------------------------

STYLE = """
@page { size: A4; margin: 22mm 20mm; }
body { font-family: 'Liberation Serif', serif; font-size: 11pt; line-height: 1.35; }
h1 { font-size: 22pt; } h2 { font-size: 16pt; margin-top: 18pt; } h3 { font-size: 13pt; }
p.note { font-size: 8pt; } a { color: #c8102e; }
"""


SIDE_HEADINGS = """
h2 { float: left; width: 38mm; margin: 0 6mm 0 0; font-size: 17pt; color: #c8102e; }
section { overflow: hidden; }
"""


def to_html(doc: dict, *, side_headings: bool = False) -> str:
    """The document as HTML; ``side_headings`` sets each theme's heading in a column beside its
    text, as the published checklist does."""
    def inline(parts: list, notes_used: list) -> str:
        out = ""
        for text, href, note in parts:
            if note is not None:
                notes_used.append(note)
                out += f"<sup>{html.escape(note)}</sup>"
            elif href:
                out += f'<a href="{html.escape(href)}">{html.escape(text)}</a>'
            else:
                out += html.escape(text)
        return out

    def items(kind: str, entries: list, used: list) -> str:
        inner = ""
        for parts, children in entries:
            inner += "<li>" + inline(parts, used) + "".join(items(k, sub, used) for k, sub in children) + "</li>"
        return f"<{kind}>{inner}</{kind}>"

    def blocks(entries: list, used: list) -> str:
        out = ""
        for kind, value in entries:
            if kind == "p":
                out += f"<p>{inline(value, used)}</p>"
            elif kind == "h":
                out += f"<h3>{html.escape(value)}</h3>"
            else:
                out += items(kind, value, used)
        return out

    body = f"<h1>{html.escape(doc['title'])}</h1>" + blocks(doc["intro"], [])
    for n, theme in enumerate(doc["themes"], start=1):
        used: list = []
        section = f"<h2>{n}. {html.escape(theme['title'])}</h2>" + blocks(theme["blocks"], used)
        for label in used:
            section += f"<p class='note'><sup>{html.escape(label)}</sup> {inline(theme['notes'][label], [])}</p>"
        body += f"<section>{section}</section>"
    style = STYLE + (SIDE_HEADINGS if side_headings else "")
    return (f"<!doctype html><html lang='nl'><head><meta charset='utf-8'><style>{style}</style></head>"
            f"<body>{body}</body></html>")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def print_pdf(page: str, path: Path) -> Path:
    """Chromium's print-to-PDF: a born-digital PDF as a browser or word processor makes one."""
    source = path.with_suffix(".html")
    source.write_text(page, encoding="utf-8")
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={path}", source.as_uri()], check=True, capture_output=True, timeout=120)
    return path


# --- Markdown -------------------------------------------------------------------------------

def to_markdown(doc: dict) -> str:
    """`# title`, `## N. theme`, lists indented under their item, footnotes as `[^n]`."""
    def inline(parts: list) -> str:
        out = ""
        for text, href, note in parts:
            if note is not None:
                out += f"[^{note}]"
            elif href:
                out += f"[{text}]({href})"
            else:
                out += text
        return out

    def items(kind: str, entries: list, indent: str) -> list[str]:
        lines = []
        for n, (parts, children) in enumerate(entries, start=1):
            marker = f"{n}." if kind == "ol" else "-"
            lines.append(f"{indent}{marker} {inline(parts)}")
            for sub_kind, sub in children:
                lines += items(sub_kind, sub, indent + " " * (len(marker) + 1))
        return lines

    def blocks(entries: list) -> list[str]:
        out = []
        for kind, value in entries:
            if kind == "p":
                out.append(inline(value))
            elif kind == "h":
                out.append(f"### {value}")
            else:
                out.append("\n".join(items(kind, value, "")))
        return out

    parts = [f"# {doc['title']}", *blocks(doc["intro"])]
    for n, theme in enumerate(doc["themes"], start=1):
        parts += [f"## {n}. {theme['title']}", *blocks(theme["blocks"])]
        parts += [f"[^{label}]: {inline(note)}" for label, note in theme["notes"].items()]
    return "\n\n".join(parts) + "\n"
