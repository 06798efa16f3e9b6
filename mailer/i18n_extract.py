"""Babel extraction for cli.py: click help, written as docstrings and ``help=`` strings, is
translated at display time, so it is extracted here without a ``_()`` around every one of them.

Used through babel.cfg (``[extractors] cli = mailer.i18n_extract:extract_cli``) and by the
catalog test. Only the build and the tests import it.
"""

from __future__ import annotations

import ast
import io
import inspect
from typing import IO, Any, Iterator


def _is_click_decorator(node: ast.expr) -> bool:
    """``@cli.command(...)``, ``@contacts.group()``, ``@click.group(...)`` and the like."""
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr in ("command", "group")


def extract_cli(fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: dict[str, Any]) -> Iterator[tuple]:
    """Everything the Python extractor finds, plus command docstrings and literal ``help=`` texts."""
    from babel.messages.extract import extract_python

    source = fileobj.read()
    yield from extract_python(io.BytesIO(source), keywords, comment_tags, options)
    tree = ast.parse(source.decode(options.get("encoding", "utf-8")))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(_is_click_decorator(d) for d in node.decorator_list):
            doc = ast.get_docstring(node)
            if doc:
                yield node.lineno, None, doc, []
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in ("help", "short_help") and isinstance(kw.value, ast.Constant) \
                        and isinstance(kw.value.value, str):
                    yield kw.value.lineno, None, inspect.cleandoc(kw.value.value), []


def compile_catalogs(localedir: Any = None) -> list[Any]:
    """Compile every ``.po`` under ``localedir`` to its ``.mo`` when the ``.mo`` is missing or older.

    What `pybabel compile` does in the Makefile's install step; the tests call it so that a
    changed ``.po`` is never tested through a stale ``.mo``. Returns the ``.mo`` files written.
    """
    from pathlib import Path

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    from .i18n import DOMAIN, LOCALEDIR

    written = []
    for po in sorted(Path(localedir or LOCALEDIR).glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f)
        tmp = mo.with_suffix(".mo.tmp")
        with tmp.open("wb") as f:
            write_mo(f, catalog)  # fuzzy entries are left out, as pybabel compile does
        tmp.replace(mo)
        written.append(mo)
    return written
