"""Benchmark of `campaign new` on a 20-page checklist, beside its baseline in the same run.

    .venv/bin/python bench/new.py            # .docx, and .pdf when Chromium is installed
    .venv/bin/python bench/new.py --rounds 5

The document is the bundled checklist repeated five times (45 themes; 22 pages as a PDF).
Measured in one process after start-up (imports done, one warm-up round): the work of
`campaign new` (read the document, draft every mail, write the folder, read it back) against
the baseline of merely opening the same document and reading its text with the same library
(python-docx iterating its paragraphs; pypdfium2 extracting each page's text).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.checklist_documents import bundled_checklist, chromium, print_pdf, to_html, write_docx  # noqa: E402


def twenty_pages(copies: int) -> dict:
    doc = bundled_checklist()
    themes = []
    for n in range(copies):
        for theme in doc["themes"]:
            themes.append({**theme, "title": f"{theme['title']} ({n + 1})"})
    return {**doc, "themes": themes}


def timed(fn, rounds: int) -> float:
    fn()  # warm-up: caches, imports on first use
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=5, help="copies of the nine themes (5 fill 22 pages)")
    args = parser.parse_args()

    import docx
    import pypdfium2 as pdfium

    from mailer.newcampaign import new_campaign

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project = work / "project"
        shutil.copytree(ROOT / "campaigns", project / "campaigns")
        doc = twenty_pages(args.copies)
        files = {"docx": write_docx(doc, work / "checklist.docx")}
        if chromium():
            files["pdf"] = print_pdf(to_html(doc), work / "checklist.pdf")
        else:
            print("Chromium is not installed: the PDF case is left out.")

        def baseline_docx() -> None:
            document = docx.Document(str(files["docx"]))
            sum(len(p.text) for p in document.paragraphs)

        def baseline_pdf() -> None:
            pdf = pdfium.PdfDocument(str(files["pdf"]))
            for page in pdf:
                textpage = page.get_textpage()
                textpage.get_text_range()
                textpage.close()
                page.close()
            pdf.close()

        print(f"{len(doc['themes'])} themes; {args.rounds} rounds each, median; after start-up (imports done).")
        for kind, path in files.items():
            pages = "-"  # a .docx has no pages of its own: it is the same text as the PDF
            if kind == "pdf":
                pdf = pdfium.PdfDocument(str(path))
                pages = str(len(pdf))
                pdf.close()

            def run() -> None:
                new_campaign(project, "bench2030", election_day=dt.date(2030, 3, 20), checklist=path,
                             base="gr2026", force=True)

            ours = timed(run, args.rounds)
            base = timed(baseline_docx if kind == "docx" else baseline_pdf, args.rounds)
            print(f"{kind:5} pages={pages:>3}  campaign new {ours * 1000:7.0f} ms   baseline (open and read) "
                  f"{base * 1000:7.0f} ms   ratio {ours / base:4.2f}")


if __name__ == "__main__":
    main()
