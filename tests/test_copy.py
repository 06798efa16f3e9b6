"""The series reads as a letter (issue 15): one register, a named signatory, the frame of
mail 1 and mail 9, copy that reads right for any party, and the editor's corrections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailer.contacts import Contact, example_contacts
from mailer.content import load_campaign
from mailer.errors import SettingsError
from mailer.personalise import personalise
from mailer.project import Project
from mailer.render import Renderer
from mailer.settings import load_deployment_settings

from .conftest import CONFIGURED_SETTINGS, ROOT

CAMPAIGN = ROOT / "campaigns" / "gr2026"
THEMES = [m.theme for m in load_campaign(CAMPAIGN).mails]


def render(root: Path = ROOT, home: Path = Path("/nonexistent-home"), contact: Contact | None = None):
    project = Project.at(root)
    campaign = project.load_campaign()
    renderer = Renderer(templates=project.templates, campaign=campaign, deployment=load_deployment_settings(home))
    contact = contact or example_contacts(ROOT)[0]
    return [personalise(m, contact, settings=campaign.settings) for m in renderer.render_all()]


def visible(html: str) -> str:
    text = re.sub(r"<(style|title|head)\b.*?</\1>|<[^>]+>", " ", html, flags=re.S | re.I)
    return " ".join(text.replace("&nbsp;", " ").split())


def flat(text: str) -> str:
    return " ".join(text.split())


def test_subjects_and_preheaders_stay_within_the_editors_limits():
    for mail in load_campaign(CAMPAIGN).mails:
        assert len(mail.subject) <= 47, mail.subject
        assert 85 <= len(mail.preheader) <= 94, mail.preheader


def test_subjects_say_what_the_mail_asks_not_only_the_theme():
    mails = load_campaign(CAMPAIGN).mails
    for number in (3, 4, 5):
        mail = mails[number - 1]
        assert mail.subject.casefold() != mail.theme.casefold(), mail.subject
        assert mail.subject.casefold() not in mail.preheader.casefold()
    assert "jeugdstelsel dat werkt" not in mails[4].preheader


def test_mail_1_introduces_the_checklist_once_lists_the_themes_the_rhythm_and_the_way_out():
    first = render()[0]
    text, html = flat(first.text), visible(first.html)
    for body in (text, html):
        assert body.count("Met het oog op") == 0 and body.count("Met het oog daarop") == 1
        assert "checklist opgesteld" not in body
        assert "U ontvangt de checklist in negen mails, ongeveer één per week, elk over één punt:" in body
        assert "Wilt u deze mails liever niet ontvangen? Meld u dan af" in body
        assert "deelt het Leger des Heils" not in body and "in negen delen" not in body
    listed = re.findall(r"^(\d)\. (.+)$", first.text, flags=re.M)
    assert [t for _, t in listed][:9] == THEMES
    assert re.findall(r"<li[^>]*>([^<]+)</li>", first.html)[:9] == THEMES
    # The opt-out is a link in the body too, before the first recommendation.
    assert first.html.index("Meld u dan af") < first.html.index("Onze aanbevelingen")


def test_mails_2_to_9_open_with_one_short_line_and_name_their_part_once():
    for personal in render()[1:]:
        n = personal.mail.number
        for body in (flat(personal.text), visible(personal.html)):
            assert len(re.findall(rf"deel {n} van 9", body, flags=re.I)) == 1, (n, body[:300])
            assert "Het Leger des Heils draagt zorg voor tienduizenden mensen in kwetsbare posities." in body
            assert "met het oog op" not in body.lower()


def test_mail_9_closes_the_series_with_the_nine_themes():
    last = render()[-1]
    assert "Dit was het laatste deel van de checklist. De negen punten op een rij:" in flat(last.text)
    tail = last.text[last.text.index("laatste deel"):]
    assert [t for _, t in re.findall(r"^(\d)\. (.+)$", tail, flags=re.M)] == THEMES
    assert re.findall(r"<li[^>]*>([^<]+)</li>", last.html)[-9:] == THEMES


def test_the_copy_reads_right_for_a_party_with_an_article():
    vvd = Contact(email="fractie@vvd.example.nl", name="Jan Smit", party="VVD", municipality="Zwolle")
    for personal in render(contact=vvd):
        for body in (flat(personal.text), visible(personal.html)):
            assert "van VVD in" not in body
            assert "Neem deze punten mee in het verkiezingsprogramma van uw partij." in body
            assert "als contactpersoon van VVD (Zwolle)." in body


def test_one_formal_register():
    personal = render()[3]
    assert personal.text.startswith("LEGER DES HEILS") and "Geachte Renée Jansen," in personal.text
    nameless = Contact(email="info@partij.example.nl", party="Stadspartij", municipality="Groningen")
    assert "Geachte heer, mevrouw," in render(contact=nameless)[3].text
    for body in (flat(personal.text), visible(personal.html)):
        assert "Reageer dan op deze mail." in body
        assert "gewoon" not in body and "Beste " not in body


def test_the_organisation_takes_its_article_from_the_settings(project_copy: Path):
    personal = render()[1]
    assert "Deze mail is verstuurd door het Leger des Heils," in flat(personal.text)
    assert "Deze mail is verstuurd door het Leger des Heils," in visible(personal.html)
    toml = project_copy / "campaigns" / "gr2026" / "campaign.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('name = "Leger des Heils"\n', 'name = "Stichting Onderdak"\n', 1)
                    .replace('article = "het"', 'article = ""'), encoding="utf-8")
    other = render(project_copy)[1]
    assert "Deze mail is verstuurd door Stichting Onderdak," in flat(other.text)


def test_a_named_signatory_signs_and_example_values_are_flagged(home: Path):
    example = load_deployment_settings(home)
    assert {"signatory.name is 'Voornaam Achternaam', an example value",
            "signatory.email is 'beleid@example.org', an example value"} <= set(example.problems)
    home.mkdir(parents=True)
    (home / "settings.toml").write_text(CONFIGURED_SETTINGS, encoding="utf-8")
    configured = load_deployment_settings(home)
    assert configured.configured, configured.problems
    personal = render(home=home)[0]
    assert "Met vriendelijke groet,\n\nAnne de Vries\nbeleidsadviseur, Leger des Heils\n" \
           "+31 36 000 00 00 · anne.devries@zender.test-org.nl\n" in personal.text
    html = visible(personal.html)
    assert "Met vriendelijke groet, Anne de Vries beleidsadviseur, Leger des Heils +31 36 000 00 00 · " \
           "anne.devries@zender.test-org.nl" in html


@pytest.mark.parametrize(("old", "new", "message"), [
    ('name = "Anne de Vries"', 'name = "Anne\\nde Vries"', "signatory.name: contains a line break"),
    ('email = "anne.devries@zender.test-org.nl"', 'email = "anne@@zender"', "signatory.email: 'anne@@zender' is not a usable mail address"),
    ('role = "beleidsadviseur"', 'role = ""', "signatory.role: must not be empty"),
])
def test_a_wrong_signatory_names_file_and_key(home: Path, old: str, new: str, message: str):
    home.mkdir(parents=True)
    assert old in CONFIGURED_SETTINGS
    (home / "settings.toml").write_text(CONFIGURED_SETTINGS.replace(old, new), encoding="utf-8")
    with pytest.raises(SettingsError, match=re.escape(f"{home / 'settings.toml'}: {message}")):
        load_deployment_settings(home)


# What a careful Dutch editor marked (issue 15), per mail: (wrong, right).
CORRECTIONS = {
    1: [("neemt op veel plekken toe en uit- en doorstroom", "neemt op veel plekken toe, en de uit- en doorstroom"),
        ("Niet alleen voor mensen zelf heeft dit positieve effecten",
         "Dit heeft niet alleen positieve effecten voor de mensen zelf, maar bespaart de samenleving ook veel geld."),
        ("Nationaal Actieplan Dakloosheid en/of", "Nationaal Actieplan Dakloosheid (NAD) en/of"),
        ("elke geïnvesteerde euro in", "elke in ‘Eerst een Thuis’ geïnvesteerde euro"),
        ("## Bronnen", "## Noten"),
        ("Lees hier meer", "[het artikel over Jimmy en zijn buren]")],
    2: [("gemeentes", "gemeenten bij de inkoop en financiering")],
    3: [("Vanwege uiteenlopende redenen", "Om uiteenlopende redenen"),
        ("standaard onderdeel", "dienen een vast onderdeel te zijn van het gemeentelijk beleid"),
        ("zo werkt de gemeente", "zo kan de gemeente werken")],
    4: [("Van hulp bij schulden tot het faciliteren", "Dat varieert van hulp bij schulden tot")],
    5: [("De aantallen maatregelen dalen", "Het aantal maatregelen daalt"),
        ("waarin de aanpak van armoede", "waarin armoede- en schuldhulp, jeugdhulp en onderwijs samenwerken"),
        ("hierin een grote rol", "Geef maatschappelijke organisaties daarin een rol.")],
    6: [("die te maken hebben met complexe", "die met complexe problematiek kampen"),
        ("(waaronder de gemeente) committeren zich", "(waaronder de gemeente) moeten zich committeren")],
    7: [("maar is de hulp en zorg", "maar zijn de hulp en zorg"),
        ("met meermaals de dood", "in meerdere gevallen zelfs met de dood tot gevolg"),
        ("de rechten van deze persoon toetst", "zijn of haar rechten toetst"),
        ("Op die manier wordt", "Anders wordt hun problematiek alleen maar erger."),
        ("onder bijvoorbeeld EU-burgers", "onder meer onder EU-burgers")],
    8: [("mogelijkheden van traumabehandeling", "mogelijkheden voor traumabehandeling"),
        ("nodig, en een lokale aanpak", "Zorg voor een sterke lokale aanpak.")],
    9: [("Denk aan: de vergunningseisen", "Denk aan vergunningseisen, vestigingscriteria, handhaving en toezicht, "
                                         "en de bestrijding van mensenhandel")],
}


@pytest.mark.parametrize("number", sorted(CORRECTIONS))
def test_the_editors_corrections_are_in(number: int):
    mail = load_campaign(CAMPAIGN).mail(number)
    source = mail.path.read_text(encoding="utf-8")
    for wrong, right in CORRECTIONS[number]:
        assert wrong not in source, wrong
        assert right in source, right
