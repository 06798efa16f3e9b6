"""Read a checklist document (.docx, born-digital .pdf, .md or .txt) into a neutral structure:
a title, the text before the first theme, and the themes in order, each with its paragraphs,
(nested) lists, links and footnotes, plus what the reader was unsure of.

Each format has its own reader that turns the document into a flat stream of elements
(heading, paragraph, list item, footnote); one assembler then finds the themes. So the rule
for what a theme is lives in one place: the headings of the highest level that occurs more
than once (or numbered headings in plain text), whatever the format.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .i18n import _
from .errors import ChecklistError

FORMATS = (".docx", ".pdf", ".md", ".markdown", ".txt")
_URL = re.compile(r"https?://[^\s<>\"'\]]+")
_URL_TRAIL = ".,;:!?)'\""
_SENTENCE_END = (".", "!", "?", ":", ";", "”", "\"", ")")
# 'uit- en doorstroom', 'dak- of thuisloos': a hyphen before these words is no broken word.
_SUSPENDED = {"en", "of", "en/of", "tot", "noch", "and", "or", "und", "oder", "et", "ou"}
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


# --- the neutral structure ------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """A piece of inline text: plain, a link (``href``) or a footnote reference (``note``)."""

    text: str
    href: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Paragraph:
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Subheading:
    text: str
    level: int  # 1 is the level just below the themes


@dataclass(frozen=True)
class Item:
    runs: tuple[Run, ...]
    children: "ListBlock | None" = None


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    items: tuple[Item, ...]


Block = Paragraph | Subheading | ListBlock


@dataclass(frozen=True)
class Footnote:
    label: str
    runs: tuple[Run, ...]
    referenced: bool = True


@dataclass(frozen=True)
class Theme:
    number: int
    title: str
    blocks: tuple[Block, ...]
    footnotes: tuple[Footnote, ...]
    where: str  # where the heading was found, for the report


@dataclass(frozen=True)
class Checklist:
    source: Path
    title: str
    intro: tuple[Block, ...]
    themes: tuple[Theme, ...]
    warnings: tuple[str, ...]  # what a person must look at: broken words, unsure headings...


def plain(runs: tuple[Run, ...] | list[Run]) -> str:
    """The text of some runs, without footnote references."""
    return "".join(r.text for r in runs if r.note is None)


def items_of(block: ListBlock) -> list[Item]:
    """Every item of a list, nested ones included, in document order."""
    out: list[Item] = []
    for item in block.items:
        out.append(item)
        if item.children:
            out += items_of(item.children)
    return out


# --- the flat element stream every reader produces ------------------------------------------

@dataclass
class _Element:
    kind: str  # "heading", "para", "item" or "note"
    where: str
    runs: list[Run] = field(default_factory=list)
    level: int = 0  # heading: 0 title, 1 highest; item: nesting depth from 0
    ordered: bool = False
    label: str = ""  # note: its label
    marked: bool = True  # item: a marker was seen (OCR loses some)
    unsure: str = ""  # heading: why the reader is not sure of it
    number: int | None = None  # heading: the number printed before it


def _add(runs: list[Run], text: str, *, href: str | None = None) -> None:
    """Append text, merged with the previous run when both are plain (or the same link)."""
    if not text:
        return
    if runs and runs[-1].note is None and runs[-1].href == href:
        runs[-1] = Run(runs[-1].text + text, href)
    else:
        runs.append(Run(text, href))


def _join_line(runs: list[Run], line: list[Run], warnings: list[str], where: str) -> None:
    """Continue ``runs`` with the runs of the next printed line: a word or URL broken at the line
    end is joined (and reported when it was a word), otherwise a space goes between."""
    if not line:
        return
    if not runs:
        runs.extend(line)
        return
    last = runs[-1].text if runs[-1].note is None else ""
    first = line[0].text if line[0].note is None else ""
    tail = last.rstrip().rsplit(None, 1)[-1] if last.strip() else ""
    head = first.lstrip().split(None, 1)[0] if first.strip() else ""
    glue = " "
    if tail and head:
        in_url = bool(_URL.search(tail)) and not _URL.match(head)
        if in_url and tail[-1] in "-/_?&=.#%" and re.match(r"[\w%./?&=#-]", head):
            glue = ""  # a URL the layout broke: it goes on without a space
        elif re.search(r"[^\W\d_]-$", tail) and head[:1].islower() and head.lower().strip(",.;:") not in _SUSPENDED:
            glue = ""
            runs[-1] = Run(last.rstrip()[:-1], runs[-1].href)
            word = re.sub(r"\W+$", "", tail[:-1] + head)
            warnings.append(_("{where}: joined '{tail}' and '{head}' across a line break as '{word}'; check the "
                              "word").format(
                where=where, tail=tail, head=head, word=word))
    if glue:
        runs[-1] = Run(runs[-1].text.rstrip(), runs[-1].href, runs[-1].note) if runs[-1].note is None else runs[-1]
        _add(runs, glue)
        line = [Run(line[0].text.lstrip(), line[0].href, line[0].note)] + line[1:]
    for r in line:
        if r.note is not None:
            runs.append(r)
        else:
            _add(runs, r.text, href=r.href)


def _normal_runs(runs: list[Run]) -> tuple[Run, ...]:
    """Whitespace collapsed, bare URLs made links, empty runs dropped."""
    out: list[Run] = []
    for r in runs:
        if r.note is not None:
            out.append(r)
            continue
        text = re.sub(r"\s+", " ", r.text.replace("\u00ad", ""))
        if r.href:
            _add(out, text, href=r.href)
            continue
        pos = 0
        for m in _URL.finditer(text):
            url = m.group(0).rstrip(_URL_TRAIL)
            if url.count("(") < url.count(")"):
                url = url[: url.rfind(")")]
            _add(out, text[pos : m.start()])
            _add(out, url, href=url)
            pos = m.start() + len(url)
        _add(out, text[pos:])
    while out and out[0].note is None and not out[0].text.strip():
        out.pop(0)
    if out and out[0].note is None:
        out[0] = Run(out[0].text.lstrip(), out[0].href)
    if out and out[-1].note is None:
        out[-1] = Run(out[-1].text.rstrip(), out[-1].href)
    return tuple(r for r in out if r.text or r.note is not None)


# --- the assembler --------------------------------------------------------------------------

def _theme_level(elements: list[_Element]) -> int | None:
    """The heading level of the themes: the highest that occurs more than once, else the only one."""
    counts: dict[int, int] = {}
    for e in elements:
        if e.kind == "heading" and e.level > 0:
            counts[e.level] = counts.get(e.level, 0) + 1
    repeated = sorted(level for level, n in counts.items() if n > 1)
    if repeated:
        return repeated[0]
    return min(counts) if counts else None


def _lists(items: list[_Element]) -> ListBlock:
    """Nest consecutive items by their depth."""
    base = min(i.level for i in items)

    def build(start: int, depth: int) -> tuple[ListBlock, int]:
        out: list[Item] = []
        ordered = items[start].ordered
        i = start
        while i < len(items):
            level = max(items[i].level - base, 0)
            if level < depth:
                break
            if level > depth:
                if out:
                    child, i = build(i, depth + 1)
                    last = out[-1]
                    out[-1] = Item(last.runs, child if last.children is None else
                                   ListBlock(last.children.ordered, last.children.items + child.items))
                    continue
                depth_items, i = build(i, depth + 1)  # deeper item with no parent: lift it
                out += depth_items.items
                continue
            out.append(Item(_normal_runs(items[i].runs)))
            i += 1
        return ListBlock(ordered, tuple(out)), i

    block, _ = build(0, 0)
    return block


def _blocks(elements: list[_Element], theme_level: int) -> tuple[Block, ...]:
    blocks: list[Block] = []
    pending: list[_Element] = []

    def flush() -> None:
        if pending:
            blocks.append(_lists(pending))
            pending.clear()

    for e in elements:
        if e.kind == "item":
            pending.append(e)
            continue
        flush()
        if e.kind == "para":
            runs = _normal_runs(e.runs)
            if runs:
                blocks.append(Paragraph(runs))
        elif e.kind == "heading":
            text = plain(_normal_runs(e.runs))
            if text:
                blocks.append(Subheading(text, max(e.level - theme_level, 1)))
    flush()
    return tuple(blocks)


def _strip_number(text: str) -> tuple[int | None, str]:
    m = re.match(r"^\s*(\d{1,2})\s*[.):]?\s+(\S.*)$", text)
    if m:
        return int(m.group(1)), m.group(2).strip()
    return None, text.strip()


def _references(blocks: tuple[Block, ...]) -> list[str]:
    found: list[str] = []

    def walk_runs(runs: tuple[Run, ...]) -> None:
        for r in runs:
            if r.note is not None and r.note not in found:
                found.append(r.note)

    def walk_list(block: ListBlock) -> None:
        for item in items_of(block):
            walk_runs(item.runs)

    for b in blocks:
        if isinstance(b, Paragraph):
            walk_runs(b.runs)
        elif isinstance(b, ListBlock):
            walk_list(b)
    return found


def assemble(elements: list[_Element], *, source: Path, warnings: list[str], looked_for: str) -> Checklist:
    """Find the title, the introduction and the themes in a reader's element stream."""
    level = _theme_level(elements)
    if level is None:
        raise ChecklistError(_("{source}: no themes found: looked for {looked_for}, and found none; give each theme "
                                "such a heading (or export the document with its heading styles)").format(
                                    source=source, looked_for=looked_for))
    headings = [i for i, e in enumerate(elements) if e.kind == "heading" and e.level == level]
    # Numbered theme headings: an unnumbered heading of the same level after them is end matter.
    numbered = [i for i in headings if _strip_number(plain(elements[i].runs))[0] is not None or
                elements[i].number is not None]
    end = len(elements)
    if len(numbered) >= 2 and len(numbered) < len(headings):
        after = [i for i in headings if i > numbered[-1] and i not in numbered]
        if after:
            end = after[0]
            warnings.append(_("{where}: the heading '{text}' is not numbered like the themes: it and what follows it "
                               "were not used").format(
                                   where=elements[end].where, text=plain(elements[end].runs).strip()))
        headings = [i for i in headings if i in numbered]
    for i, e in enumerate(elements[:end]):
        if e.kind == "heading" and e.level < level and headings and i > headings[0]:
            end = i
            warnings.append(_("{where}: the heading '{text}' is above the themes' level: it and what follows it were "
                               "not used").format(where=e.where, text=plain(e.runs).strip()))
            headings = [h for h in headings if h < end]
            break
    title = ""
    before = elements[: headings[0]]
    for i, e in enumerate(before):
        if e.kind == "heading" and e.level < level:
            title = plain(_normal_runs(e.runs)).strip()
            before = before[:i] + before[i + 1 :]
            break
    notes = {e.label: e for e in elements if e.kind == "note"}
    note_places: dict[str, int] = {}
    themes_elements: list[list[_Element]] = []
    for n, start in enumerate(headings):
        stop = headings[n + 1] if n + 1 < len(headings) else end
        body = [e for e in elements[start + 1 : stop] if e.kind != "note"]
        for e in elements[start + 1 : stop]:
            if e.kind == "note":
                note_places.setdefault(e.label, n)
        themes_elements.append(body)
    themes: list[Theme] = []
    used: set[str] = set()
    referenced_in: dict[str, int] = {}
    theme_blocks = [_blocks(body, level) for body in themes_elements]
    for n, blocks in enumerate(theme_blocks):
        for label in _references(blocks):
            referenced_in.setdefault(label, n)
    for n, start in enumerate(headings):
        h = elements[start]
        printed, title_text = _strip_number(plain(_normal_runs(h.runs)))
        if h.unsure:
            warnings.append(_("{where}: heading of theme {number} read as '{title_text}': {unsure}").format(
                where=h.where, number=n + 1, title_text=title_text, unsure=h.unsure))
        footnotes: list[Footnote] = []
        for label in _references(theme_blocks[n]):
            if label in notes and label not in used:
                used.add(label)
                footnotes.append(Footnote(label, _normal_runs(notes[label].runs)))
            elif label not in notes:
                warnings.append(_("theme {number} ({title_text}): a reference to footnote '{label}' has no footnote "
                                  "text").format(
                    number=n + 1, title_text=title_text, label=label))
        for label, place in note_places.items():
            if place == n and label not in referenced_in and label not in used:
                used.add(label)
                footnotes.append(Footnote(label, _normal_runs(notes[label].runs), referenced=False))
                warnings.append(_("{where}: footnote '{label}' is referenced nowhere in the text; it was put with "
                                  "theme {number} ({title_text}), where it stands: move it where it belongs").format(
                                       where=notes[label].where, label=label, number=n + 1, title_text=title_text))
        themes.append(Theme(number=n + 1, title=title_text, blocks=theme_blocks[n], footnotes=tuple(footnotes),
                            where=h.where))
    return Checklist(source=source, title=title, intro=_blocks([e for e in before if e.kind != "note"], level),
                     themes=tuple(themes), warnings=tuple(warnings))


# --- entry point ----------------------------------------------------------------------------

def read_checklist(path: Path) -> Checklist:
    """Read a checklist document; the format follows from the file's suffix."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ChecklistError(_("{path}: cannot read '{suffix}' files; give a .docx, .pdf, .md or .txt").format(
            path=path, suffix=suffix or 'no suffix'))
    if not path.is_file():
        raise ChecklistError(_("{path}: no such file").format(path=path))
    try:
        head = path.read_bytes()[:8]
    except OSError as exc:
        raise ChecklistError(_("{path}: cannot be read: {strerror}").format(path=path, strerror=exc.strerror)) from None
    if suffix == ".docx":
        return _read_docx(path, head)
    if suffix == ".pdf":
        return _read_pdf(path, head)
    return _read_text(path)


# --- .md and .txt (the OCR text included) ---------------------------------------------------

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_NOTE = re.compile(r"^\s{0,3}\[\^([^\]]+)\]:\s*(.*)$")
_NUMBERED = re.compile(r"^\s{0,3}(\d{1,2})[.):]?\s+(\S.*)$")
_BULLET = re.compile(r"^(\s*)([•·▪◦‣●○■□➢►\-–—*+]|[Oo](?=\s+[A-ZÀ-Ý])|\d{1,2}[.)])\s+(\S.*)$")
_NOTE_LINE = re.compile(r"^\s{0,3}(\*{1,3}|†|\d{1,2}|[¹²³⁴⁵⁶⁷⁸⁹⁰]+)\s+(\S.*)$")
_WORD = re.compile(r"[^\W\d_]{2,}|\d{2,}")
_INLINE = re.compile(r"\[\^([^\]]+)\]|\[([^\]]+)\]\((\S+?)\)|<(https?://[^>\s]+)>|(?<=[^\W\d_])([¹²³⁴⁵⁶⁷⁸⁹⁰]+|\*{1,3})(?=[\s.,;:!?)]|$)")


def _inline(text: str) -> list[Run]:
    """Markdown links, autolinks and footnote references; ``*`` or a superscript digit after a word
    is a reference too (as a printed document shows them)."""
    runs: list[Run] = []
    pos = 0
    for m in _INLINE.finditer(text):
        _add(runs, text[pos : m.start()])
        if m.group(1):
            runs.append(Run("", note=m.group(1)))
        elif m.group(2):
            _add(runs, m.group(2), href=m.group(3))
        elif m.group(4):
            _add(runs, m.group(4), href=m.group(4))
        else:
            runs.append(Run("", note=m.group(5).translate(_SUPERSCRIPT)))
        pos = m.end()
    _add(runs, text[pos:])
    return runs


_NORMAL_WORD = re.compile(r"^[A-ZÀ-Ýa-zß-ÿ][a-zß-ÿ]*[,.;:]?$")
_VOWEL = re.compile(r"[aeiouyàáâäèéêëìíîïòóôöùúûü]", re.I)


def _sentence_start(tokens: list[str]) -> int | None:
    """Where a sentence starts among the words of an OCR heading line: a capitalised word
    followed by two ordinary words (the heading's own fragments are split letters)."""
    def normal(word: str) -> bool:
        return bool(_NORMAL_WORD.match(word)) and bool(_VOWEL.search(word)) and len(word.rstrip(",.;:")) >= 2

    for i, word in enumerate(tokens):
        if word[:1].isupper() and normal(word) and len(tokens) >= i + 3 and normal(tokens[i + 1]) and normal(tokens[i + 2]):
            return i
    return None


def _read_text(path: Path) -> Checklist:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ChecklistError(_("{path}:{line}: not UTF-8 text (byte 0x{raw}); save the file as UTF-8").format(
            path=path, line=line, raw=format(raw[exc.start], "02x"))) from None
    lines = text.splitlines()
    vocabulary = _vocabulary(text)
    markdown = any(_MD_HEADING.match(line) for line in lines)
    warnings: list[str] = []
    elements: list[_Element] = []
    current: _Element | None = None
    after_blank = True
    expected = 1
    references: set[str] = set()
    title_done = markdown
    skip_to = 0
    for n, line in enumerate(lines, start=1):
        where = f"{path.name}:{n}"
        if n < skip_to:
            continue
        if not line.strip() or not _WORD.search(line):
            # A line without a word is layout noise of the scan ('|', 'o}') or a blank line.
            if line.strip() and not re.fullmatch(r"[-*_=#\s]+", line):
                warnings.append(_("{where}: dropped the line {line_text}, which holds no word").format(
                    where=where, line_text=repr(line.strip())))
            current = None
            after_blank = True
            continue
        if markdown:
            m = _MD_HEADING.match(line)
            if m:
                elements.append(_Element("heading", where, _inline(m.group(2)), level=len(m.group(1))))
                current, after_blank = None, False
                continue
            m = _MD_NOTE.match(line)
            if m:
                current = _Element("note", where, _inline(m.group(2)), label=m.group(1))
                elements.append(current)
                after_blank = False
                continue
        else:
            if not title_done and not elements and after_blank and current is None:
                # The first paragraph of a plain text is its title when it is short.
                block = []
                for later in lines[n - 1 :]:
                    if not later.strip():
                        break
                    block.append(later.strip())
                joined = " ".join(block)
                title_done = True
                if len(joined) <= 150 and not _NUMBERED.match(line):
                    elements.append(_Element("heading", where, [Run(joined.strip("“”\"' "))], level=0))
                    skip_to = n + len(block)
                    current, after_blank = None, True
                    continue
            m = _NUMBERED.match(line)
            # The scan may put a line of the text before the heading: no blank line is required.
            if m and int(m.group(1)) == expected and m.group(2)[:1].isalpha():
                expected += 1
                rest = m.group(2).strip()
                tokens = rest.split()
                start = _sentence_start(tokens)
                unsure = ""
                if start is None and len(rest) <= 60:
                    title, body = rest, ""
                elif start is None:
                    title, body = " ".join(tokens[:3]), " ".join(tokens[3:])
                    unsure = "the heading runs into the text on its line; only its first words were taken"
                else:
                    title, body = " ".join(tokens[:start]), " ".join(tokens[start:])
                    unsure = ("the heading was printed beside the text and the scan mixed them: its words may be "
                              "broken, and parts of it may stand in the text below")
                clean = " ".join(t for t in title.split() if _WORD.search(t) or t.isalpha()) or title
                if not unsure and _looks_broken(clean):
                    unsure = "its words look broken by the scan, and text of the page may have run into it"
                if unsure:
                    mended = mend_title(clean, vocabulary)
                    if mended != clean:
                        unsure += f" (the scan read '{clean}'; its pieces were joined into words found in the text)"
                        clean = mended
                elements.append(_Element("heading", where, [Run(f"{m.group(1)} {clean}")], level=1,
                                         unsure=unsure, number=int(m.group(1))))
                current = None
                if body:
                    current = _Element("para", where, _inline(body))
                    elements.append(current)
                after_blank = False
                continue
        m = _NOTE_LINE.match(line)
        if m and after_blank and (m.group(1) in references or (m.group(1).isdigit() and not markdown)
                                  or m.group(1).translate(_SUPERSCRIPT) in references):
            label = m.group(1).translate(_SUPERSCRIPT)
            current = _Element("note", where, _inline(m.group(2)), label=label)
            elements.append(current)
            after_blank = False
            continue
        m = _BULLET.match(line)
        if m and not (m.group(2).startswith("*") and "*" in references and after_blank and not markdown):
            indent = len(m.group(1).expandtabs(4))
            current = _Element("item", where, _inline(m.group(3)), level=indent // 2,
                               ordered=m.group(2)[0].isdigit())
            elements.append(current)
            for r in current.runs:
                if r.note:
                    references.add(r.note)
            after_blank = False
            continue
        runs = _inline(line.strip())
        for r in runs:
            if r.note:
                references.add(r.note)
        if current is not None and not after_blank:
            _join_line(current.runs, runs, warnings, where)
        elif (current is None and elements and elements[-1].kind in ("para", "item") and not markdown
              and line.strip()[:1].islower() and not plain(elements[-1].runs).rstrip().endswith(_SENTENCE_END)):
            # The layout split a paragraph with blank lines (a scan of a narrow column).
            current = elements[-1]
            _join_line(current.runs, runs, warnings, where)
        else:
            current = _Element("para", where, runs)
            elements.append(current)
        after_blank = False
    if not markdown:
        elements = _lost_markers(elements, warnings)
        looked_for = ("numbered theme headings ('1 Title', '2 Title', ... each after a blank line) "
                      "or Markdown headings ('# Title', '## Theme')")
    else:
        looked_for = "Markdown headings ('# Title', '## Theme'); the level that occurs more than once holds the themes"
    return assemble(elements, source=path, warnings=warnings, looked_for=looked_for)


def _vocabulary(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in re.findall(r"[^\W\d_]+", text.lower()):
        counts[word] = counts.get(word, 0) + 1
    return counts


def mend_title(title: str, vocabulary: dict[str, int]) -> str:
    """Join the pieces of a heading that a scan split ('WO nen' -> 'Wonen', 'A an d ac ht' ->
    'Aandacht') into words the document uses elsewhere: the fewest pieces that are all known
    words (or the start of one, from five letters), trying 'l' for a capital 'I' (a common misread)."""
    tokens = title.split()
    own: dict[str, int] = {}
    for t in tokens:
        own[t.lower()] = own.get(t.lower(), 0) + 1
    words = [w for w in vocabulary if len(w) >= 5]

    def known(piece: str) -> str | None:
        for candidate in dict.fromkeys((piece.lower(), piece.replace("I", "l").lower())):
            if not candidate.isalpha():
                return None
            if vocabulary.get(candidate, 0) - own.get(candidate, 0) >= 1:
                return candidate
            if len(candidate) >= 5 and any(w.startswith(candidate) and w != candidate for w in words):
                return candidate
        return None

    n = len(tokens)
    # best[i]: (unknown pieces, pieces, words) for tokens[:i]
    best: list[tuple[int, int, list[str]] | None] = [None] * (n + 1)
    best[0] = (0, 0, [])
    for i in range(n):
        if best[i] is None:
            continue
        for j in range(i + 1, min(n, i + 6) + 1):
            joined = "".join(tokens[i:j])
            word = known(joined)
            unknown = 0 if word else 1
            if word is None:
                if j > i + 1:
                    continue
                word = joined
            cand = (best[i][0] + unknown, best[i][1] + 1, best[i][2] + [word])
            if best[j] is None or cand[:2] < best[j][:2]:
                best[j] = cand
    result = best[n][2] if best[n] else tokens
    # A lone letter left over is the scan's noise.
    result = [w for w in result if len(w) > 1 or len(result) == 1]
    text = " ".join(result)
    return text[:1].upper() + text[1:].lower() if text and all(w.islower() or w.isupper() for w in result) else text


def _looks_broken(title: str) -> bool:
    """Letters split or cased as no word is: 'IM‘k', 'ntWO', a lone 'g'."""
    for token in title.split():
        word = token.strip(",.;:()")
        if len(word) == 1 and word.isalpha() and word not in ("&",):
            return True
        if re.search(r"[a-zß-ÿ][A-ZÀ-Ý]", word) or (word.isalpha() and not _VOWEL.search(word)):
            return True
    return False


def _lost_markers(elements: list[_Element], warnings: list[str]) -> list[_Element]:
    """A scan loses bullets: in a theme, paragraphs after its first list item are items too (under
    an item that ends with ':' they are its sub-items), and a theme without any bullet has its
    first paragraph as text and the others as items."""
    out: list[_Element] = []
    theme: list[_Element] = []

    def close() -> None:
        if not theme:
            return
        has_items = any(e.kind == "item" for e in theme)
        seen_item = False
        parent: _Element | None = None
        first_para = True
        changed = 0
        for e in theme:
            if e.kind == "item":
                seen_item = True
                parent = e if plain(e.runs).rstrip().endswith(":") else None
            elif e.kind == "para" and (seen_item or (not has_items and not first_para)):
                e.kind, e.marked = "item", False
                e.level = parent.level + 1 if parent is not None else 0
                changed += 1
            if e.kind == "para":
                first_para = False
        if changed:
            warnings.append(_("{where}: {changed} paragraph(s) of this theme had no bullet in the text and were read "
                               "as recommendations; check the list in the mail").format(
                                   where=theme[0].where, changed=changed))
        theme.clear()

    for e in elements:
        if e.kind == "heading":
            close()
            out.append(e)
            if e.level >= 1:
                theme.append(_Element("marker", e.where))
            continue
        out.append(e)
        if theme:
            theme.append(e)
    close()
    return [e for e in out if e.kind != "marker"]


# --- .docx ----------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def _read_docx(path: Path, head: bytes) -> Checklist:
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ChecklistError(_("{path}: the file is encrypted (password-protected) or an old .doc; save it from Word "
                               "as a .docx without a password").format(path=path))
    if not head.startswith(b"PK"):
        raise ChecklistError(_("{path}: not a Word document (.docx is a zip file); save it from Word as .docx").format(
            path=path))
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ChecklistError(_("{path}: cannot be read as a Word document ({exc}); save it from Word as .docx").format(
            path=path, exc=exc)) from None
    except Exception as exc:  # lxml raises its own errors for a damaged part
        raise ChecklistError(_("{path}: the Word document is damaged ({error_type}: {exc}); save it anew from "
                               "Word").format(
            path=path, error_type=type(exc).__name__, exc=exc)) from None
    warnings: list[str] = []
    numbering = _docx_numbering(document)
    notes = _docx_footnotes(document)
    elements: list[_Element] = []
    for i, p in enumerate(document.paragraphs, start=1):
        where = f"{path.name}, paragraph {i}"
        runs = _docx_runs(p)
        if not plain(runs).strip() and not any(r.note for r in runs):
            continue
        style = (p.style.name if p.style is not None else "") or ""
        ppr = p._p.pPr
        num_pr = ppr.numPr if ppr is not None else None
        outline = _docx_outline(p)
        if style == "Title":
            elements.append(_Element("heading", where, runs, level=0))
        elif m := re.match(r"Heading (\d)", style):
            elements.append(_Element("heading", where, runs, level=int(m.group(1))))
        elif outline is not None:
            elements.append(_Element("heading", where, runs, level=outline + 1))
        elif num_pr is not None or style.startswith("List"):
            level = 0
            ordered = "Number" in style
            if num_pr is not None and num_pr.ilvl is not None:
                level = int(num_pr.ilvl.val)
            elif m := re.search(r"(\d)$", style):
                level = int(m.group(1)) - 1
            if num_pr is not None and num_pr.numId is not None:
                fmt = numbering.get((int(num_pr.numId.val), level))
                if fmt is not None:
                    ordered = fmt not in ("bullet", "none")
            elements.append(_Element("item", where, runs, level=level, ordered=ordered))
        else:
            elements.append(_Element("para", where, runs))
    for label, runs in notes.items():
        elements.append(_Element("note", f"{path.name}, footnote {label}", runs, label=label))
    if document.tables:
        warnings.append(_("{name}: the document has {count} table(s); their text was not read").format(
            name=path.name, count=len(document.tables)))
    return assemble(elements, source=path, warnings=warnings,
                    looked_for="paragraphs in Word's heading styles (Heading 1, Heading 2, ...); the level that occurs "
                               "more than once holds the themes")


def _docx_outline(p) -> int | None:
    ppr = p._p.pPr
    if ppr is None:
        return None
    lvl = ppr.find(f"{_W}outlineLvl")
    if lvl is None:
        return None
    value = int(lvl.get(f"{_W}val", "9"))
    return value if value < 9 else None


def _docx_runs(p) -> list[Run]:
    from docx.text.hyperlink import Hyperlink

    runs: list[Run] = []
    for part in p.iter_inner_content():
        if isinstance(part, Hyperlink):
            url = part.url
            _add(runs, part.text, href=url or None)
            continue
        ref = part._r.find(f"{_W}footnoteReference")
        if ref is not None:
            runs.append(Run("", note=ref.get(f"{_W}id")))
            continue
        text = part.text
        if part.font.superscript and re.fullmatch(r"\s*(\d{1,2}|\*{1,3})\s*", text or ""):
            runs.append(Run("", note=text.strip()))
            continue
        _add(runs, text)
    return runs


def _docx_numbering(document) -> dict[tuple[int, int], str]:
    """(numId, level) -> the number format ('bullet', 'decimal', ...) from the numbering part."""
    try:
        part = document.part.numbering_part
    except (NotImplementedError, KeyError):
        return {}
    root = part.element
    abstract: dict[str, dict[int, str]] = {}
    for a in root.findall(f"{_W}abstractNum"):
        levels = {}
        for lvl in a.findall(f"{_W}lvl"):
            fmt = lvl.find(f"{_W}numFmt")
            levels[int(lvl.get(f"{_W}ilvl", "0"))] = fmt.get(f"{_W}val") if fmt is not None else "decimal"
        abstract[a.get(f"{_W}abstractNumId")] = levels
    out: dict[tuple[int, int], str] = {}
    for num in root.findall(f"{_W}num"):
        ref = num.find(f"{_W}abstractNumId")
        if ref is None:
            continue
        for level, fmt in abstract.get(ref.get(f"{_W}val"), {}).items():
            out[(int(num.get(f"{_W}numId")), level)] = fmt
    return out


def _docx_footnotes(document) -> dict[str, list[Run]]:
    """Word's own footnotes (the footnotes part), by id."""
    from lxml import etree

    part = None
    for rel in document.part.rels.values():
        if rel.reltype.endswith("/footnotes") and not rel.is_external:
            part = rel.target_part
    if part is None:
        return {}
    root = etree.fromstring(part.blob)
    links = {rid: rel.target_ref for rid, rel in part.rels.items() if rel.is_external}
    out: dict[str, list[Run]] = {}
    for note in root.findall(f"{_W}footnote"):
        if note.get(f"{_W}type") in ("separator", "continuationSeparator", "continuationNotice"):
            continue
        runs: list[Run] = []
        for p in note.findall(f"{_W}p"):
            if runs:
                _add(runs, " ")
            for child in p:
                if child.tag == f"{_W}hyperlink":
                    text = "".join(t.text or "" for t in child.iter(f"{_W}t"))
                    _add(runs, text, href=links.get(child.get(f"{_R}id")))
                elif child.tag == f"{_W}r" and child.find(f"{_W}footnoteRef") is None:
                    _add(runs, "".join(t.text or "" for t in child.iter(f"{_W}t")))
        out[note.get(f"{_W}id")] = runs
    return out


# --- .pdf -----------------------------------------------------------------------------------

NO_TEXT_LAYER = "no text layer: export the document as .docx or run OCR first"


@dataclass
class _Line:
    page: int
    top: float
    bottom: float
    x0: float
    size: float
    bold: bool
    words: list[dict]
    bullet_x: float | None = None  # a drawn bullet before the line
    marker: str = ""  # a printed marker ('•', '1.') taken off the line


def _read_pdf(path: Path, head: bytes) -> Checklist:
    if not head.startswith(b"%PDF"):
        raise ChecklistError(_("{path}: not a PDF file (it does not start with %PDF)").format(path=path))
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ChecklistError(_("{path}: the PDF is encrypted (it needs a password); save a copy without a password "
                                   "or export the document as .docx").format(path=path)) from None
        raise ChecklistError(_("{path}: cannot be read as a PDF ({exc}); export it anew, or as .docx").format(
            path=path, exc=exc)) from None
    try:
        lines = _pdf_lines(pdf)
    except pdfium.PdfiumError as exc:
        raise ChecklistError(_("{path}: the PDF is damaged and cannot be read ({exc}); export it anew").format(
            path=path, exc=exc)) from None
    finally:
        pdf.close()
    if not lines:
        raise ChecklistError(_("{path}: {NO_TEXT_LAYER}").format(path=path, NO_TEXT_LAYER=NO_TEXT_LAYER))
    warnings: list[str] = []
    elements = _pdf_elements(lines, path, warnings)
    return assemble(elements, source=path, warnings=warnings,
                    looked_for="headings set in a larger type than the text (or in bold on a line of their own); "
                               "the level that occurs more than once holds the themes")


def _pdf_links(pdf, page, height: float) -> list[tuple[float, float, float, float, str]]:
    """The page's link areas with a web address: (x0, top, x1, bottom, uri), top from the page's top."""
    import ctypes

    import pypdfium2.raw as raw

    out = []
    pos, link = ctypes.c_int(0), raw.FPDF_LINK()
    while raw.FPDFLink_Enumerate(page.raw, ctypes.byref(pos), ctypes.byref(link)):
        rect = raw.FS_RECTF()
        if not raw.FPDFLink_GetAnnotRect(link, ctypes.byref(rect)):
            continue
        action = raw.FPDFLink_GetAction(link)
        if not action or raw.FPDFAction_GetType(action) != raw.PDFACTION_URI:
            continue
        size = raw.FPDFAction_GetURIPath(pdf.raw, action, None, 0)
        buffer = ctypes.create_string_buffer(size)
        raw.FPDFAction_GetURIPath(pdf.raw, action, buffer, size)
        uri = buffer.value.decode("utf-8", "replace")
        if uri:
            out.append((rect.left, height - rect.top, rect.right, height - rect.bottom, uri))
    return out


def _pdf_words(pdf, page, height: float) -> list[dict]:
    """Words with their box (top from the page's top), effective type size and font name.

    A word ends at a space, a line end, a change of type size (a raised footnote mark) or a gap.
    """
    import ctypes

    import pypdfium2.raw as raw

    textpage = page.get_textpage()
    try:
        tp = textpage.raw
        words: list[dict] = []
        word: dict | None = None
        matrix = raw.FS_MATRIX()
        font = ctypes.create_string_buffer(128)
        flags = ctypes.c_int()
        for i in range(raw.FPDFText_CountChars(tp)):
            code = raw.FPDFText_GetUnicode(tp, i)
            # PDFium reports a hyphen that ends a line as 0x02: it is the printed hyphen.
            ch = "-" if code == 2 else chr(code) if code else " "
            if ch.isspace() or code in (0xFFFE, 0xFFFF) or raw.FPDFText_IsGenerated(tp, i) == 1:
                word = None
                continue
            raw.FPDFText_GetMatrix(tp, i, ctypes.byref(matrix))
            size = raw.FPDFText_GetFontSize(tp, i) * ((matrix.c ** 2 + matrix.d ** 2) ** 0.5 or 1.0)
            rect = raw.FS_RECTF()
            raw.FPDFText_GetLooseCharBox(tp, i, ctypes.byref(rect))
            x0, x1, t, b = rect.left, rect.right, height - rect.top, height - rect.bottom
            if word is not None and (abs(size - word["size"]) > 0.3 or x0 - word["x1"] > size * 0.3
                                     or abs(t - word["top"]) > size * 0.5):
                word = None
            if word is None:
                raw.FPDFText_GetFontInfo(tp, i, font, 128, ctypes.byref(flags))
                word = {"text": "", "x0": x0, "x1": x1, "top": t, "bottom": b, "size": size,
                        "fontname": font.value.decode("latin-1", "replace")}
                words.append(word)
            word["text"] += ch
            word["x1"] = max(word["x1"], x1)
            word["top"], word["bottom"] = min(word["top"], t), max(word["bottom"], b)
        return words
    finally:
        textpage.close()


def _pdf_lines(pdf) -> list[_Line]:
    import pypdfium2.raw as raw

    lines: list[_Line] = []
    pages = len(pdf)
    for number in range(pages):
        page = pdf[number]
        try:
            height = page.get_height()
            words = _pdf_words(pdf, page, height)
            if not words:
                continue
            for x0, top, x1, bottom, uri in _pdf_links(pdf, page, height):
                for w in words:
                    cx, cy = (w["x0"] + w["x1"]) / 2, (w["top"] + w["bottom"]) / 2
                    if x0 - 1 <= cx <= x1 + 1 and top - 1 <= cy <= bottom + 1:
                        w["href"] = uri
            dots = []
            for obj in page.get_objects(filter=[raw.FPDF_PAGEOBJ_PATH]):
                left, bottom_, right, top_ = obj.get_bounds()
                if right - left <= 8 and top_ - bottom_ <= 8:
                    dots.append((left, right, height - top_, height - bottom_))
        finally:
            page.close()
        lines += _page_lines(number + 1, words, dots)
    lines.sort(key=lambda ln: (ln.page, round(ln.top / 3), ln.x0))
    return _drop_running(lines, pages)


def _page_lines(number: int, words: list[dict], dots: list[tuple[float, float, float, float]]) -> list[_Line]:
    """Words into printed lines; columns side by side (a heading beside its text) split at a wide gap."""
    lines: list[_Line] = []
    rows: list[list[dict]] = []
    for w in sorted(words, key=lambda w: (w["top"], w["x0"])):
        mid = (w["top"] + w["bottom"]) / 2
        for row in rows:
            main = row[0]
            if main["top"] - 1 <= mid <= main["bottom"] + 1:
                row.append(w)
                break
        else:
            rows.append([w])
    for row in rows:
        row.sort(key=lambda w: w["x0"])
        size = max(w["size"] for w in row)
        segments: list[list[dict]] = [[row[0]]]
        for w in row[1:]:
            prev = segments[-1][-1]
            small = w if w["size"] < prev["size"] else prev
            mark = re.fullmatch(r"\d{1,2}|\*{1,3}", small["text"]) is not None  # a raised footnote mark
            big_change = abs(w["size"] - prev["size"]) > 1.5 and not mark
            if w["x0"] - prev["x1"] > size * 2.5 or big_change:
                segments.append([w])
            else:
                segments[-1].append(w)
        for seg in segments:
            full = [w for w in seg if w["size"] >= max(x["size"] for x in seg) * 0.85] or seg
            line = _Line(page=number, top=min(w["top"] for w in full), bottom=max(w["bottom"] for w in full),
                         x0=seg[0]["x0"], size=max(w["size"] for w in seg),
                         bold=all(re.search(r"bold|black|heavy|semibold", w["fontname"], re.I) for w in full),
                         words=seg)
            for d in dots:
                if d[1] <= line.x0 and line.x0 - d[1] <= 24 and line.top - 1 <= (d[2] + d[3]) / 2 <= line.bottom + 1:
                    line.bullet_x = d[0]
            lines.append(line)
    return lines


def _drop_running(lines: list[_Line], pages: int) -> list[_Line]:
    """Page numbers and running headers or footers are no part of the text."""
    def key(ln: _Line) -> str:
        return re.sub(r"\d+", "#", " ".join(w["text"] for w in ln.words))

    counts: dict[str, set[int]] = {}
    for ln in lines:
        counts.setdefault(key(ln), set()).add(ln.page)
    out = []
    for ln in lines:
        text = " ".join(w["text"] for w in ln.words)
        if re.fullmatch(r"(pagina |page )?\d{1,3}( / \d{1,3}| of \d{1,3})?", text, re.I):
            continue
        if pages >= 3 and len(counts[key(ln)]) >= max(3, pages // 2):
            continue
        out.append(ln)
    return out


def _pdf_elements(lines: list[_Line], path: Path, warnings: list[str]) -> list[_Element]:
    weights: dict[float, int] = {}
    for ln in lines:
        for w in ln.words:
            weights[round(w["size"], 1)] = weights.get(round(w["size"], 1), 0) + len(w["text"])
    body = max(weights, key=weights.get)
    lines = _headings_first(lines, body)
    heading_sizes = sorted({round(ln.size * 2) / 2 for ln in lines if ln.size >= body * 1.15}, reverse=True)
    bullet_xs = sorted({round(ln.bullet_x / 4) * 4 for ln in lines if ln.bullet_x is not None})
    marker_re = re.compile(r"^([•·▪◦‣●○■□➢►\-–—]|\d{1,2}[.)])$")
    elements: list[_Element] = []
    current: _Element | None = None
    prev: _Line | None = None
    item_x: float | None = None
    text_x: dict[int, float] = {}
    last_heading: tuple[_Element, _Line] | None = None
    for ln in lines:
        where = f"{path.name}, page {ln.page}"
        gap = (ln.top - prev.bottom) if prev is not None and prev.page == ln.page else None
        words = ln.words
        first = words[0]["text"]
        # A footnote: a small line that starts with its label.
        if ln.size <= body * 0.9 and (re.fullmatch(r"\d{1,2}|\*{1,3}|[¹²³⁴⁵⁶⁷⁸⁹⁰]+", first) and len(words) > 1):
            current = _Element("note", where, _word_runs(words[1:], ln.size), label=first.translate(_SUPERSCRIPT))
            elements.append(current)
            prev, item_x = ln, None
            continue
        if current is not None and current.kind == "note" and ln.size <= body * 0.9 and gap is not None and gap < ln.size:
            _join_line(current.runs, _word_runs(words, ln.size), warnings, where)
            prev = ln
            continue
        rounded = round(ln.size * 2) / 2
        if rounded in heading_sizes:
            level = heading_sizes.index(rounded) + 1
            runs = [Run(" ".join(w["text"] for w in words))]
            # A heading over two lines; printed beside its text, the text's lines come between.
            if (last_heading is not None and last_heading[0].level == level and last_heading[1].page == ln.page
                    and abs(last_heading[1].x0 - ln.x0) < 2 and ln.top - last_heading[1].bottom < ln.size * 0.6):
                _join_line(last_heading[0].runs, runs, warnings, where)
                last_heading = (last_heading[0], ln)
                if current is last_heading[0]:
                    prev = ln
                continue
            current = _Element("heading", where, runs, level=level)
            elements.append(current)
            last_heading = (current, ln)
            prev, item_x = ln, None
            continue
        marker = ""
        if ln.bullet_x is None and marker_re.match(first) and len(words) > 1:
            marker = first
            words = words[1:]
        runs = _word_runs(words, ln.size)
        new_block = gap is None or gap > ln.size * 0.7
        if ln.bullet_x is not None or marker:
            mx = ln.bullet_x if ln.bullet_x is not None else ln.x0
            key = round(mx / 4) * 4
            level = sum(1 for x in bullet_xs if x < key - 1) if ln.bullet_x is not None else _marker_level(text_x, mx)
            current = _Element("item", where, runs, level=level, ordered=bool(marker[:1].isdigit()))
            elements.append(current)
            item_x = words[0]["x0"]
            text_x[level] = mx
            prev = ln
            continue
        if (current is not None and current.kind == "item" and item_x is not None and abs(ln.x0 - item_x) < 3
                and not new_block):
            _join_line(current.runs, runs, warnings, where)
            prev = ln
            continue
        bold_heading = (ln.bold and new_block and len(" ".join(w["text"] for w in words)) <= 80
                        and not words[-1]["text"].endswith((".", ",", ";")))
        if bold_heading:
            current = _Element("heading", where, runs, level=len(heading_sizes) + 1,
                               unsure="found from bold type only, not from a larger size")
            elements.append(current)
            prev, item_x = ln, None
            continue
        if current is not None and current.kind == "para" and not new_block:
            _join_line(current.runs, runs, warnings, where)
        elif (current is not None and current.kind in ("para", "item") and gap is None and runs
              and (runs[0].text[:1].islower()) and not plain(current.runs).rstrip().endswith(_SENTENCE_END)):
            _join_line(current.runs, runs, warnings, where)  # a paragraph that goes on on the next page
        else:
            current = _Element("para", where, runs)
            elements.append(current)
            item_x = None
        prev = ln
    # Bold lines that are not headings of the theme level are reported only when used.
    for e in elements:
        if e.kind == "heading" and e.unsure and e.level > 1:
            warnings.append(_("{where}: '{text}' was taken as a subheading ({unsure})").format(
                where=e.where, text=plain(e.runs), unsure=e.unsure))
            e.unsure = ""
    return elements


def _headings_first(lines: list[_Line], body: float) -> list[_Line]:
    """A heading printed beside its text starts a little lower than the text's first line: it
    goes before the text lines beside it."""
    ordered: list[_Line] = []
    for ln in lines:
        k = len(ordered)
        if ln.size >= body * 1.15:
            while (k > 0 and ordered[k - 1].page == ln.page and ordered[k - 1].bottom > ln.top + 1
                   and ordered[k - 1].x0 > ln.x0 + 20 and ordered[k - 1].size < body * 1.15):
                k -= 1
        ordered.insert(k, ln)
    return ordered


def _marker_level(text_x: dict[int, float], x: float) -> int:
    for level, seen in sorted(text_x.items()):
        if abs(seen - x) < 4:
            return level
    deeper = [lv for lv, seen in text_x.items() if seen < x - 4]
    return max(deeper) + 1 if deeper else 0


def _word_runs(words: list[dict], size: float) -> list[Run]:
    """The runs of a printed line: raised small digits are footnote references, link areas links."""
    runs: list[Run] = []
    top = min((w["top"] for w in words if w["size"] >= size * 0.85), default=words[0]["top"])
    for i, w in enumerate(words):
        text = w["text"]
        if w["size"] < size * 0.85 and w["top"] < top - 0.5 and re.fullmatch(r"\d{1,2}|\*{1,3}", text):
            runs.append(Run("", note=text))
            continue
        if i and runs:
            # Between two words of one link the space belongs to the link.
            prev_href = runs[-1].href if runs[-1].note is None else None
            _add(runs, " ", href=prev_href if prev_href and prev_href == w.get("href") else None)
        _add(runs, text, href=w.get("href"))
    return runs


def slug_of(text: str, *, limit: int = 40) -> str:
    """ASCII, lower case, words joined by '-', at most ``limit`` characters, cut at a word."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = ""
    for w in words:
        candidate = f"{out}-{w}" if out else w
        if len(candidate) > limit:
            break
        out = candidate
    return out or (words[0][:limit] if words else "thema")
