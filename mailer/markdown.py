"""Markdown content to the HTML fragment and the plain text of a mail, from one token stream.

The text part is made from the content itself, not scraped from the layout HTML: layout tables
would turn into pipes and the hidden preheader would leak into the text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

TEXT_WIDTH = 72


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # Raw HTML is off: content is prose; layout belongs in the templates.
    return MarkdownIt("commonmark", {"html": False, "typographer": False})


def parse(source: str, *, rewrite_link: Callable[[str], str]) -> list[Token]:
    """Parse Markdown and pass every link target through ``rewrite_link``."""
    tokens = _parser().parse(source)
    for tok in tokens:
        for child in tok.children or ():
            if child.type == "link_open":
                child.attrSet("href", rewrite_link(str(child.attrGet("href") or "")))
    return tokens


def to_html(tokens: list[Token]) -> str:
    """The HTML fragment for inside an ``mj-text``."""
    return _parser().renderer.render(tokens, _parser().options, {})


def to_text(tokens: list[Token], links: list[str], *, width: int = TEXT_WIDTH) -> str:
    """Plain text with links as numbered references ``[n]``.

    ``links`` is shared by the parts of one mail, so that intro and body number their links
    in one sequence; targets are appended to it in order of first appearance.
    """
    blocks: list[str] = []
    list_lines: list[str] | None = None
    stack: list[list] = []  # per open list: [ordered, counter]
    pending_marker = ""

    def inline_text(tok: Token) -> str:
        out: list[str] = []
        for child in tok.children or ():
            if child.type in ("text", "code_inline"):
                out.append(child.content)
            elif child.type == "softbreak":
                out.append(" ")
            elif child.type == "hardbreak":
                out.append("\n")
            elif child.type == "link_close":
                href = str(child.meta.get("href", ""))
                if href not in links:
                    links.append(href)
                out.append(f" [{links.index(href) + 1}]")
            elif child.type == "image":
                out.append(child.content or "")
        return "".join(out)

    for tok in tokens:
        # The reference is written where the link closes: give that token the target.
        opened: list[Token] = []
        for child in tok.children or ():
            if child.type == "link_open":
                opened.append(child)
            elif child.type == "link_close" and opened:
                child.meta["href"] = opened.pop().attrGet("href")
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            text = inline_text(tokens[i + 1])
            blocks.append(f"{text}\n{('=' if tok.tag == 'h1' else '-') * len(text)}")
        elif tok.type in ("bullet_list_open", "ordered_list_open"):
            if not stack:
                list_lines = []
            stack.append([tok.type == "ordered_list_open", 0])
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            stack.pop()
            if not stack and list_lines is not None:
                blocks.append("\n".join(list_lines))
                list_lines = None
        elif tok.type == "list_item_open":
            stack[-1][1] += 1
            pending_marker = f"{stack[-1][1]}." if stack[-1][0] else "-"
        elif tok.type == "paragraph_open":
            text = inline_text(tokens[i + 1])
            if list_lines is not None:
                depth = "  " * (len(stack) - 1)
                marker = pending_marker or ""
                pending_marker = ""
                indent = depth + " " * (len(marker) + 1) if marker else depth + "  "
                first = depth + marker + " " if marker else indent
                list_lines.append(textwrap.fill(text, width=width, initial_indent=first, subsequent_indent=indent,
                                                break_long_words=False, break_on_hyphens=False))
            else:
                blocks.append(textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(blocks)


def references(links: list[str]) -> str:
    """The numbered link list that ends the text part."""
    return "\n".join(f"[{n}] {href}" for n, href in enumerate(links, start=1))
