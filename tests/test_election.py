"""A mail names one election: its campaign's (issue 14, item 1).

The election (kind, day, year) is the campaign's single fact in campaign.toml; every text
that names it takes it from there, `check` refuses any other year or date in a mail, and
`--election-date` cannot move a campaign to another election.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mailer.contacts import example_contacts
from mailer.errors import RenderError
from mailer.personalise import personalise
from mailer.project import Project
from mailer.render import Renderer
from mailer.settings import load_deployment_settings

from .conftest import ROOT, for_election

MAILS = "campaigns/gr2026/mails"


def rendered(root: Path):
    project = Project.at(root)
    campaign = project.load_campaign()
    renderer = Renderer(templates=project.templates, campaign=campaign,
                        deployment=load_deployment_settings(Path("/nonexistent-home")))
    contact = example_contacts(ROOT)[0]
    return [(m, personalise(m, contact, settings=campaign.settings)) for m in renderer.render_all()]


def test_a_campaign_for_2030_names_that_election_and_never_2026(project_copy: Path):
    for_election(project_copy, "2030-03-13")
    mails = rendered(project_copy)
    for mail, personal in mails:
        for where, text in (("HTML", personal.html), ("text", personal.text), ("subject", personal.subject),
                            ("preheader", mail.preheader)):
            assert "2026" not in text.replace("gr2026", ""), (mail.number, where)
            assert "18 maart" not in text, (mail.number, where)
        # The header band, in both parts.
        assert "Checklist verkiezingsprogramma · gemeenteraadsverkiezingen 2030" in personal.html, mail.number
        assert "Checklist verkiezingsprogramma · gemeenteraadsverkiezingen 2030" in personal.text, mail.number
    first_html, first_text = mails[0][1].html, mails[0][1].text
    assert "Op woensdag 13 maart 2030 worden de gemeenteraadsverkiezingen gehouden." in first_html
    assert "Op woensdag 13 maart 2030 worden de gemeenteraadsverkiezingen gehouden." in first_text
    # intro.md names the election through {{ election.year }}, not a year of its own.
    assert "richting de gemeenteraadsverkiezingen van 2030" in first_html
    assert " ".join(first_text.split()).count("richting de gemeenteraadsverkiezingen van 2030") == 1


def test_the_bundled_campaign_names_its_own_election():
    [(_, personal), *_] = rendered(ROOT)
    assert "Op woensdag 18 maart 2026 worden de gemeenteraadsverkiezingen gehouden." in personal.html
    assert "richting de gemeenteraadsverkiezingen van 2026" in personal.html


def findings(run, root: Path) -> tuple[int, list[dict]]:
    result = run("check", "--json", root=root)
    return result.exit_code, json.loads(result.output)["findings"]


def test_check_passes_a_campaign_copied_for_another_election(run, project_copy: Path):
    code, found = findings(run, for_election(project_copy, "2030-03-13"))
    assert code == 0
    assert not [f for f in found if f["level"] == "error"], found


@pytest.mark.parametrize("stray, named", [
    ("Met het oog op de gemeenteraadsverkiezingen van 2026 vragen wij uw aandacht.", "the year 2026"),
    ("In 2026 zagen wij dit vaker.", "the year 2026"),
    ("Sinds woensdag 18 maart 2026 is dat anders.", "the date '18 maart 2026'"),
    # A fact year (copy.fact_years) is no election, but a sentence about an election must name this one.
    ("De verkiezingen van 2022 lieten dit al zien.", "the year 2022"),
])
def test_check_refuses_a_year_or_date_that_is_not_the_election(run, project_copy: Path, stray: str, named: str):
    for_election(project_copy, "2030-03-13")
    path = project_copy / MAILS / "06-onbegrepen-gedrag.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("## Onze aanbevelingen", f"{stray}\n\n## Onze aanbevelingen", 1), encoding="utf-8")
    code, found = findings(run, project_copy)
    errors = [f for f in found if f["level"] == "error"]
    assert code == 1
    assert [f["mail"] for f in errors] == [6], errors
    assert named in errors[0]["message"]
    assert "not this campaign's election (gemeenteraadsverkiezingen of Wed 13 Mar 2030)" in errors[0]["message"]
    assert "copy.fact_years" in errors[0]["message"]


def test_check_refuses_a_stray_year_in_a_subject(run, project_copy: Path):
    path = project_copy / MAILS / "09-sekswerk.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('subject = "Sekswerk: duidelijk gemeentelijk beleid"',
                                 'subject = "Sekswerk: beleid voor 2031"'), encoding="utf-8")
    code, found = findings(run, project_copy)
    assert code == 1
    assert any(f["mail"] == 9 and "the subject names the year 2031" in f["message"] for f in found), found


def test_content_may_name_the_election_and_a_misspelt_name_is_an_error(project_copy: Path):
    for_election(project_copy, "2030-03-13")
    path = project_copy / MAILS / "03-sociale-basis.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("## Onze aanbevelingen",
                                 "Kies op {{ election.day_long }} ({{ election.name }}, {{ election.year }}).\n\n"
                                 "## Onze aanbevelingen", 1), encoding="utf-8")
    html = rendered(project_copy)[2][1].html
    assert "Kies op woensdag 13 maart 2030 (gemeenteraadsverkiezingen, 2030)." in html
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(i for i, t in enumerate(lines, start=1) if t.startswith("Kies op"))
    path.write_text(path.read_text(encoding="utf-8").replace("{{ election.year }}", "{{ election.yaer }}"),
                    encoding="utf-8")
    with pytest.raises(RenderError, match=rf"03-sociale-basis\.md:{line}: .*yaer.*content may name election\.name"):
        rendered(project_copy)


@pytest.mark.parametrize("command", [["plan"], ["schedule", "--yes"], ["simulate"]])
def test_another_election_date_is_refused_with_the_way_to_a_campaign_for_it(run, home: Path, command: list[str]):
    result = run(*command, "--election-date", "2027-04-14")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert ("--election-date 2027-04-14 is not the election of campaign gr2026 (Wed 18 Mar 2026, "
            "election_day in its campaign.toml)") in result.output
    assert "campaign new NAME --from-campaign gr2026 --election-day 2027-04-14" in result.output
    # Nothing was stored or simulated.
    if (home / "campaign.sqlite3").exists():
        conn = sqlite3.connect(home / "campaign.sqlite3")
        try:
            assert conn.execute("SELECT COUNT(*) FROM schedule").fetchone() == (0,)
        finally:
            conn.close()
    assert not (home / "simulation" / "gr2026" / "timeline.csv").exists()


def test_the_campaigns_own_election_date_is_accepted(run, project_ahead: Path):
    from .conftest import ELECTION_AHEAD

    result = run("plan", "--election-date", ELECTION_AHEAD, root=project_ahead)
    assert result.exit_code == 0, result.output
    assert result.output.count("09:00") == 9
