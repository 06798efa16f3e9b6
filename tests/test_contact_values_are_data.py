"""A contact's values are data: template syntax in a name is text in the mail, never an error.

The check for template syntax left in a mail looks at the mail before contact values are filled
in; a contact named ``{{ 7*7 }}`` is sent as written, so build, preview and check agree.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mailer import checks
from mailer.contacts import Contact, import_contacts
from mailer.message import build_message
from mailer.personalise import personalise
from mailer.preview import build_site
from mailer.project import Project
from mailer.render import Renderer

from .conftest import FIXED_NOW

NAMES = ["{{ 7*7 }}", "{% if x %}Jan{% endif %}", "Jan <mj-text>", "Jan %%c.email%%", "}} Jan {{"]


def import_one(project: Project, tmp_path: Path, name: str, address: str = "jan@partij.example.nl") -> None:
    path = tmp_path / "lijst.csv"
    path.write_text(f'email,name,party,municipality\n{address},"{name}",Partij {{{{x}}}},Zwolle\n', encoding="utf-8")
    conn = project.connect()
    try:
        result = import_contacts(conn, path, default_basis="published-address")
    finally:
        conn.close()
    assert result.added == 1


@pytest.mark.parametrize("name", NAMES)
def test_no_check_finds_template_syntax_in_a_contacts_name(project_copy: Path, home: Path, name: str):
    project = Project.at(project_copy)
    campaign = project.load_campaign()
    deployment = project.deployment()
    contact = Contact(email="jan@partij.example.nl", name=name, party="Partij {{x}}", municipality="Zwolle")
    for mail in Renderer(templates=project.templates, campaign=campaign, deployment=deployment).render_all():
        personal = personalise(mail, contact, settings=campaign.settings)
        assert name in personal.text  # sent as written
        envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=FIXED_NOW)
        found = checks.check_mail(mail, personal, envelope, campaign=campaign.settings)
        assert not [f for f in found if "template syntax" in f.message], found


@pytest.mark.parametrize("name", NAMES[:2])
def test_build_and_preview_for_such_a_contact_pass_as_check_does(run, project_copy: Path, home: Path, tmp_path: Path,
                                                                  name: str):
    project = Project.at(project_copy)
    import_one(project, tmp_path, name)
    result = run("build", "--contact", "jan@partij.example.nl", "--out", str(tmp_path / "out"), root=project_copy)
    assert result.exit_code == 0, result.output
    assert "template syntax" not in result.output
    assert name in (tmp_path / "out" / "02-verantwoord-zorgbeleid.txt").read_text(encoding="utf-8")
    check = run("check", "--json", root=project_copy)
    assert check.exit_code == 0, check.output
    pages = build_site(project, contact="jan@partij.example.nl", live=True, now=FIXED_NOW)
    index = pages["index.html"].body.decode("utf-8")
    assert "error(s)" not in index and "template syntax" not in pages["mail-2.html"].body.decode("utf-8")


def test_template_syntax_left_by_the_template_is_still_an_error(project_copy: Path, home: Path):
    project = Project.at(project_copy)
    template = project_copy / "templates/mail.txt.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("Deze mail is verstuurd door", "{% raw %}{{ contact.naam }}{% endraw %} Deze mail "
                                     "is verstuurd door", 1), encoding="utf-8")
    campaign = project.load_campaign()
    deployment = project.deployment()
    contact = Contact(email="jan@partij.example.nl", name="Jan", party="P", municipality="M")
    mail = Renderer(templates=project.templates, campaign=campaign, deployment=deployment).render_all()[0]
    personal = personalise(mail, contact, settings=campaign.settings)
    envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=FIXED_NOW)
    found = [f.message for f in checks.check_mail(mail, personal, envelope, campaign=campaign.settings)]
    assert "template syntax '{{' left in the text part" in found
