"""Golden output for one mail: ``make golden`` (python -m tests.golden) regenerates it.

Tests compare against these files and never write them: a change in rendering shows up
as a diff that a person reviews and commits.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
MAIL = 2


def render_golden() -> dict[str, str]:
    """Mail 2 for the first example contact, on the example sender settings."""
    from mailer.contacts import example_contacts
    from mailer.personalise import personalise
    from mailer.project import Project
    from mailer.render import Renderer
    from mailer.settings import load_deployment_settings

    project = Project.at(ROOT)
    campaign = project.load_campaign()
    with tempfile.TemporaryDirectory() as empty_home:
        deployment = load_deployment_settings(Path(empty_home))
    mail = Renderer(templates=project.templates, campaign=campaign, deployment=deployment).render(campaign.mail(MAIL))
    personal = personalise(mail, example_contacts(ROOT)[0], settings=campaign.settings)
    return {f"{mail.slug}.mjml": mail.mjml, f"{mail.slug}.html": personal.html, f"{mail.slug}.txt": personal.text}


def main() -> int:
    GOLDEN.mkdir(exist_ok=True)
    for name, text in render_golden().items():
        (GOLDEN / name).write_text(text, encoding="utf-8")
        print(f"wrote {GOLDEN / name}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    raise SystemExit(main())
