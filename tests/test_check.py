"""``campaign check`` passes on the bundled campaign and fails on each deliberately broken copy."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from .conftest import ROOT

MAILS = "campaigns/gr2026/mails"


def findings(run, root: Path) -> tuple[int, list[dict]]:
    result = run("check", "--json", root=root)
    return result.exit_code, json.loads(result.output)["findings"]


def test_bundled_campaign_passes_with_only_sender_warnings(run):
    code, found = findings(run, ROOT)
    assert code == 0
    assert found and all(f["level"] == "warning" and "sender not configured" in f["message"] for f in found)


def test_configured_sender_gives_a_clean_check(run, configured_home):
    result = run("check")
    assert result.exit_code == 0
    assert "All checks pass." in result.output


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("breakage, expected", [
    ("image", "has no alt text"),
    ("oversized", "Gmail clips mails over 102 KB"),
    ("optout", "no opt-out link in the HTML"),
    ("http", "is not an absolute https:// address"),
    ("placeholder", "points at a placeholder"),
    ("leftover", "template syntax"),
    ("utm", "lacks utm_source"),
])
def test_each_check_fails_on_a_broken_copy(run, project_copy: Path, breakage: str, expected: str):
    mail = project_copy / MAILS / "03-sociale-basis.md"
    template = project_copy / "templates/mail.mjml.j2"
    if breakage == "image":
        edit(template, "<mj-wrapper padding=\"24px 0 0 0\">",
             "<mj-wrapper padding=\"24px 0 0 0\"><mj-section><mj-column><mj-image src=\"https://www.legerdesheils.nl/logo.png\" /></mj-column></mj-section>")
    elif breakage == "oversized":
        mail.write_text(mail.read_text(encoding="utf-8") + ("\nLange tekst. " * 10000), encoding="utf-8")
    elif breakage == "optout":
        edit(template, '<a href="{{ unsubscribe_mailto }}">Meld u af</a>, of mail naar {{ sender.optout_address }}', "")
    elif breakage == "http":
        mail.write_text(mail.read_text(encoding="utf-8") + "\n[Bron](http://www.cebeon.nl/rapport)\n", encoding="utf-8")
    elif breakage == "placeholder":
        mail.write_text(mail.read_text(encoding="utf-8") + "\n[Lees meer](https://example.com/TODO)\n", encoding="utf-8")
    elif breakage == "leftover":
        # Content is Jinja too (a misspelt name there is a render error, see test_election): raw
        # text gets template syntax past it into the mail.
        mail.write_text(mail.read_text(encoding="utf-8") + "\n{% raw %}{{ contact.naam }}{% endraw %}\n",
                        encoding="utf-8")
    elif breakage == "utm":
        # A link to the organisation's site written into the template by hand bypasses the
        # campaign's UTM parameters.
        edit(template, "Meer over ons werk: <a href=\"{{ campaign.website }}\">",
             "Meer over ons werk: <a href=\"https://www.legerdesheils.nl/over-ons\">")
    code, found = findings(run, project_copy)
    assert code == 1, found
    errors = [f for f in found if f["level"] == "error"]
    assert any(expected in f["message"] for f in errors), errors


def test_text_part_without_opt_out_fails(run, project_copy: Path):
    edit(project_copy / "templates/mail.txt.j2", "{{ unsubscribe_mailto }}", "")
    edit(project_copy / "templates/mail.txt.j2", "{{ sender.optout_address }}, of via deze link:", "")
    code, found = findings(run, project_copy)
    assert code == 1
    assert any("no opt-out in the text part" in f["message"] for f in found)


def test_long_subject_and_short_preheader_warn(run, project_copy: Path):
    mail = project_copy / MAILS / "04-samen-leven.md"
    edit(mail, 'subject = "Samen leven: ontmoetingsplekken in elke wijk"',
         'subject = "Samen leven doe je niet alleen: ontmoetingsplekken in elke wijk"')
    edit(mail, 'preheader = "Steun buurthuiskamers en buurtsteunpunten, en geef ruimte aan wie eenzaamheid wil bestrijden."',
         'preheader = "Ontmoeten."')
    code, found = findings(run, project_copy)
    assert code == 0
    messages = [f["message"] for f in found if f["mail"] == 4]
    assert any("subject is 63 characters" in m for m in messages)
    assert any("preheader is 10 characters" in m for m in messages)


def test_a_stored_schedule_outside_the_policy_is_reported(run, home: Path, project_ahead: Path):
    assert run("schedule", "--yes", root=project_ahead).exit_code == 0
    conn = sqlite3.connect(home / "campaign.sqlite3")
    due = conn.execute("SELECT due_at FROM schedule WHERE mail = 5").fetchone()[0]
    sunday_night = dt.datetime.strptime(due, "%Y-%m-%dT%H:%M:%SZ")
    sunday_night += dt.timedelta(days=(6 - sunday_night.weekday()), hours=12)
    conn.execute("UPDATE schedule SET due_at = ? WHERE mail = 5", (sunday_night.strftime("%Y-%m-%dT%H:%M:%SZ"),))
    conn.commit()
    conn.close()
    code, found = findings(run, ROOT)
    mail5 = [f["message"] for f in found if f["mail"] == 5]
    assert any("geen verzenddag (zondag)" in m for m in mail5)
    assert any("outside the send window" in m for m in mail5)
