"""The nine mails as content: complete, in order, clean of the scan's errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailer.content import load_campaign, parse_mail
from mailer.errors import ContentError

from .conftest import ROOT

CAMPAIGN = ROOT / "campaigns" / "gr2026"

THEMES = [
    "Wonen Eerst",
    "Verantwoord zorgbeleid",
    "Werk aan een sociale basis voor iedereen",
    "Samen leven doe je niet alleen",
    "Jeugd",
    "Werk aan een menswaardig bestaan voor personen met onbegrepen gedrag",
    "Aandacht voor dakloze EU-burgers",
    "Bestrijd mensenhandel in de gemeente",
    "Sekswerk",
]

# One distinctive phrase per recommendation of the checklist, in its order.
RECOMMENDATIONS = {
    1: ["Door de inzet op Wonen Eerst", "Flexibele woonunits (20/25 m²)", "Leegstaand vastgoed ombouwen",
        "braakliggende terreinen", "dragende en vragende huurders", "Breid het aantal Housing First-trajecten uit",
        "Breng huisuitzettingen terug naar een minimum", "passende woon-zorgplekken"],
    2: ["vierkantsfinanciering", "(vinger aan de pols)"],
    3: ["Investeer in de sociale basis", "kostendelersnorm", "toegang hebben tot schuldhulpverlening",
        "Vroegsignalering en preventie van schulden", "lopende schuldhulpverleningstrajecten over",
        "Zet vanuit de gemeente in op maatschappelijke participatie"],
    4: ["Zorg dat elke wijk ontmoetingsplekken heeft", "Zet actief in op de bestrijding van eenzaamheid"],
    5: ["intergenerationele armoede", "Stimuleer een integrale aanpak bij gezinnen",
        "Passende hulp op langere termijn", "(duur/intensiteit)"],
    6: ["Er is vaak geen passende plek", "Samenwerking is broodnodig", "Investeer in een brede en makkelijk toegankelijke bemoeizorg"],
    7: ["fysiek loket", "Checklist Recht op gelijke behandeling", "voldoende opvangplekken en zorgmogelijkheden",
        "(bijvoorbeeld ESF+)", "Zorg dat bedrijven voldoen"],
    8: ["Zorg voor meer veilige opvangplekken", "daadkrachtige lokale aanpak van mensenhandel",
        "Medewerkers van de gemeente moeten getraind worden"],
    9: ["adequaat en effectief gemeentelijk prostitutiebeleid", "Investeer in goede uitstapprogramma’s"],
}

# Scan errors and slips listed in the seed README; none may reach a mail.
SCAN_ERRORS = ["maatsch.appelijke", "neer.rf.t", "financiéle", "creéren", "creéer", "geinformeerd",
               "tweeénhalve", "Zetvanuit", "Zetactief", "Investeerin", "Erisvaak", "Doordeinzet",
               "Biedt bij", "Breidt", "wordt inricht", "WO nen", "Jjeugd", "vit.", "Creé€er",
               "utm_source=linkedin", "nijevelt", "woon-fopvang", "gemeentelijke beleid", "\nO "]


def test_nine_mails_in_checklist_order():
    campaign = load_campaign(CAMPAIGN)
    assert [m.number for m in campaign.mails] == list(range(1, 10))
    assert [m.theme for m in campaign.mails] == THEMES


def test_subjects_distinct_short_and_name_the_theme():
    campaign = load_campaign(CAMPAIGN)
    subjects = [m.subject for m in campaign.mails]
    assert len(set(subjects)) == 9
    for m in campaign.mails:
        assert len(m.subject) <= 50, m.subject
        assert 40 <= len(m.preheader) <= 100, m.preheader
        # The subject says the theme: it shares a significant word with it.
        words = {w.lower() for w in re.findall(r"\w{5,}", m.theme)}
        assert words & {w.lower() for w in re.findall(r"\w{5,}", m.subject)}, m.subject


@pytest.mark.parametrize("number", range(1, 10))
def test_every_recommendation_present_once_as_a_list_item(number):
    mail = load_campaign(CAMPAIGN).mail(number)
    items = [line for line in mail.body.splitlines() if re.match(r"\s*- ", line)]
    assert len(items) == len(RECOMMENDATIONS[number])
    for phrase, item in zip(RECOMMENDATIONS[number], items):
        assert phrase in item


def test_no_scan_errors_reach_the_content():
    campaign = load_campaign(CAMPAIGN)
    texts = [campaign.intro] + [m.body + m.subject + m.preheader for m in campaign.mails]
    for text in texts:
        for error in SCAN_ERRORS:
            assert error not in text, error


def test_sources_carry_over_with_their_links():
    body = load_campaign(CAMPAIGN).mail(1).body
    assert "https://www.cebeon.nl/wp-content/uploads/2022/04/20810-Maatschappelijke-kosten-en-baten-brede-aanpak-dakloosheid_rapport.pdf" in body
    assert "https://www.legerdesheils.nl/artikel/woongeluk-voor-jimmy-en-zijn-buren" in body
    assert "tweeënhalve euro" in body and "2022" in body


def test_front_matter_errors_name_file_line_and_field(tmp_path: Path):
    path = tmp_path / "01-x.md"
    path.write_text('+++\nnumber = "een"\ntheme = "X"\nsubject = "S"\npreheader = "P"\n+++\nBody\n', encoding="utf-8")
    with pytest.raises(ContentError, match=r"01-x\.md:2: field 'number': expected int"):
        parse_mail(path)
    path.write_text('+++\nnumber = 1\ntheme = "X"\nsubject = "S"\n+++\nBody\n', encoding="utf-8")
    with pytest.raises(ContentError, match=r"01-x\.md:5: field 'preheader': missing"):
        parse_mail(path)
    path.write_text('+++\nnumber = 1\ntheme = "X\nsubject = "S"\n+++\nBody\n', encoding="utf-8")
    with pytest.raises(ContentError, match=r"01-x\.md:3: front matter"):
        parse_mail(path)


def test_duplicate_numbers_are_refused(project_copy: Path):
    mails = project_copy / "campaigns" / "gr2026" / "mails"
    text = (mails / "02-verantwoord-zorgbeleid.md").read_text(encoding="utf-8")
    (mails / "02-verantwoord-zorgbeleid.md").write_text(text.replace("number = 2", "number = 3"), encoding="utf-8")
    with pytest.raises(ContentError, match="number': 3 is also the number of"):
        load_campaign(project_copy / "campaigns" / "gr2026")
