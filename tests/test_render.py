"""The render pipeline: MJML output fit for every inbox and phone, and a clean text part."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mailer.contacts import Contact, example_contacts
from mailer.errors import RenderError
from mailer.personalise import personalise
from mailer.project import Project
from mailer.render import Renderer, with_campaign_utm
from mailer.settings import load_deployment_settings

from . import golden
from .conftest import ROOT


@pytest.fixture(scope="module")
def rendered():
    project = Project.at(ROOT)
    campaign = project.load_campaign()
    renderer = Renderer(templates=project.templates, campaign=campaign,
                        deployment=load_deployment_settings(Path("/nonexistent-home")))
    return campaign, renderer.render_all()


def test_nine_mails_in_order_with_distinct_subjects(rendered):
    _, mails = rendered
    assert [m.number for m in mails] == list(range(1, 10))
    assert len({m.subject for m in mails}) == 9


def test_html_keeps_doctype_language_and_phone_layout(rendered):
    _, mails = rendered
    for m in mails:
        assert m.html.lower().startswith("<!doctype html>")
        assert '<html lang="nl"' in m.html
        media = re.findall(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})+\s*\}", m.html)
        assert media, "no @media rules left"
        assert any("!important" in rule for rule in media), "premailer stripped !important from @media"
        # Outlook's conditional comments survive the inliner.
        assert "<!--[if mso | IE]>" in m.html
        assert 'role="presentation"' in m.html


def test_no_remote_fonts_or_stylesheets(rendered):
    _, mails = rendered
    for m in mails:
        assert "@import" not in m.html
        assert "fonts.googleapis" not in m.html
        assert "<link" not in m.html
        assert not re.search(r"""src=["']https?://""", m.html)


def test_html_stays_under_gmail_clipping(rendered):
    campaign, mails = rendered
    contact = example_contacts(ROOT)[0]
    for m in mails:
        assert len(personalise(m, contact, settings=campaign.settings).html.encode()) < 102 * 1024


def test_text_part_is_clean_and_holds_the_opt_out(rendered):
    campaign, mails = rendered
    contact = example_contacts(ROOT)[0]
    for m in mails:
        text = personalise(m, contact, settings=campaign.settings).text
        assert "|" not in text
        assert "{{" not in text and "{%" not in text and "%%" not in text
        assert "<" not in text.replace("<mailto", "")
        assert "mailto:afmelden@example.org" in text
        assert m.preheader not in text  # the hidden preheader does not leak into the text
        assert all(len(line) <= 72 or "://" in line or "mailto:" in line for line in text.splitlines())


def test_text_part_numbers_links(rendered):
    _, mails = rendered
    text = mails[0].text
    assert "onderzoek van Cebeon (pdf) [1]" in text
    assert "[1] https://www.cebeon.nl/" in text
    assert "[2] https://www.legerdesheils.nl/artikel/woongeluk-voor-jimmy-en-zijn-buren?utm_source=" in text


def test_own_links_get_campaign_utm_and_lose_others(rendered):
    campaign, mails = rendered
    html = mails[0].html
    assert "utm_source=linkedin" not in html and "nijevelt" not in html
    assert "woongeluk-voor-jimmy-en-zijn-buren?utm_source=checklist-gr2026&amp;utm_medium=email&amp;utm_campaign=gr2026-checklist&amp;utm_content=01-wonen-eerst" in html
    # Links elsewhere keep their target exactly.
    assert 'href="https://www.cebeon.nl/wp-content/uploads/2022/04/20810-Maatschappelijke-kosten-en-baten-brede-aanpak-dakloosheid_rapport.pdf"' in html
    assert with_campaign_utm("https://example.org/x?a=1", campaign.settings) == "https://example.org/x?a=1"


def test_dates_are_written_in_dutch(rendered):
    _, mails = rendered
    assert "woensdag 18 maart 2026" in mails[0].html
    assert "woensdag 18 maart 2026" in mails[0].text


def test_personal_fields_are_escaped_and_url_encoded(rendered):
    campaign, mails = rendered
    evil = Contact(email="a+b@example.org", name="<script>alert(1)</script>", party="A&B \"Lijst\"",
                   municipality="'s-Hertogenbosch")
    personal = personalise(mails[1], evil, settings=campaign.settings)
    assert "<script>" not in personal.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in personal.html
    assert "A&amp;B &#x27;" not in personal.html and "A&amp;B &quot;Lijst&quot;" in personal.html
    assert "&#x27;s-Hertogenbosch" in personal.html
    # Inside the opt-out link the address is URL-encoded, not HTML-escaped.
    assert "body=a%2Bb@example.org" in personal.html
    assert "Geachte <script>alert(1)</script>," in personal.text


def test_salutation_falls_back_without_a_name(rendered):
    campaign, mails = rendered
    nameless = Contact(email="info@partij.example.nl", party="Stadspartij", municipality="Groningen")
    assert "Geachte heer, mevrouw," in personalise(mails[0], nameless, settings=campaign.settings).html


def test_golden_mail_matches():
    for name, text in golden.render_golden().items():
        expected = (golden.GOLDEN / name).read_text(encoding="utf-8")
        assert text == expected, f"{name} differs from tests/golden; if intended, run `make golden` and review the diff"


def test_broken_template_names_file_and_line(project_copy: Path, home: Path):
    tpl = project_copy / "templates" / "mail.mjml.j2"
    lines = tpl.read_text(encoding="utf-8").splitlines()
    lines[20] = lines[20] + " {{ campaign.no_such_value }}"
    tpl.write_text("\n".join(lines), encoding="utf-8")
    project = Project.at(project_copy)
    renderer = Renderer(templates=project.templates, campaign=project.load_campaign(), deployment=project.deployment())
    with pytest.raises(RenderError, match=r"mail\.mjml\.j2:21: .*no_such_value"):
        renderer.render_all()


def test_remote_stylesheet_is_refused_before_anything_is_fetched(project_copy: Path, home: Path):
    tpl = project_copy / "templates" / "mail.mjml.j2"
    text = tpl.read_text(encoding="utf-8").replace("<mj-style>", "<mj-style>@import url(https://fonts.googleapis.com/css?family=Roboto);", 1)
    tpl.write_text(text, encoding="utf-8")
    project = Project.at(project_copy)
    renderer = Renderer(templates=project.templates, campaign=project.load_campaign(), deployment=project.deployment())
    with pytest.raises(RenderError, match="remote stylesheet"):
        renderer.render_all()


@pytest.mark.parametrize("text", [
    "Neem deze punten mee in het verkiezingsprogramma van Partij voor de Wijk in Zwolle. Heeft u vragen?",
    "kort",
    "een-heel-lang-woord-dat-niet-past-" * 4 + " en dan nog wat woorden erachter aan om te vullen",
    "  spaties   tussen\twoorden  ",
])
def test_fast_paragraph_fill_matches_textwrap(text):
    import textwrap

    from mailer.personalise import fill_paragraph

    expected = textwrap.fill(" ".join(text.split()), width=72, break_long_words=False, break_on_hyphens=False)
    assert fill_paragraph(text) == expected


def test_fast_paragraph_fill_matches_textwrap_on_random_paragraphs():
    import random
    import textwrap

    from mailer.personalise import fill_paragraph

    rng = random.Random(2026)
    for _ in range(2000):
        words = ["x" * rng.choice([1, 2, 3, 5, 8, 13, 40, 71, 72, 73, 90]) for _ in range(rng.randint(0, 30))]
        text = "".join(w + rng.choice([" ", "  ", "\t", "\n"]) for w in words)
        width = rng.choice([72, 20, 10])
        expected = textwrap.fill(" ".join(text.split()), width=width, break_long_words=False, break_on_hyphens=False)
        assert fill_paragraph(text, width) == expected, (text, width)


class TestStoredRenders:
    """Rendered mails kept between processes: found again only while every input is the same."""

    def renderer(self, root, home):
        from mailer.project import Project

        project = Project.at(root)
        return Renderer(templates=project.templates, campaign=project.load_campaign(), deployment=project.deployment(),
                        cache=home / "cache")

    def count_renders(self, monkeypatch) -> list[int]:
        import mailer.render as render_module

        calls: list[int] = []
        real = render_module.Renderer._render

        def counting(self, mail):
            calls.append(mail.number)
            return real(self, mail)

        monkeypatch.setattr(render_module.Renderer, "_render", counting)
        return calls

    def fresh_process(self):
        import mailer.render as render_module

        render_module._RENDER_CACHE.clear()  # what a new process starts with

    def test_a_new_process_reads_what_an_earlier_one_rendered(self, project_copy, home, monkeypatch):
        calls = self.count_renders(monkeypatch)
        first = self.renderer(project_copy, home).render_all()
        assert len(calls) == 9 and len(list((home / "cache").glob("*.json"))) == 9
        self.fresh_process()
        again = self.renderer(project_copy, home).render_all()
        assert len(calls) == 9  # nothing rendered again
        assert again == first
        # A home moved elsewhere (as the benchmark copies it) still finds them.
        import shutil

        moved = home.with_name("moved")
        shutil.copytree(home, moved)
        monkeypatch.setenv("CAMPAIGN_HOME", str(moved))
        self.fresh_process()
        assert self.renderer(project_copy, moved).render_all() == first and len(calls) == 9

    def test_any_changed_input_renders_anew(self, project_copy, home, monkeypatch):
        calls = self.count_renders(monkeypatch)
        self.renderer(project_copy, home).render_all()
        # A template's bytes (a comment changes no output, but the key all the same).
        tpl = project_copy / "templates" / "mail.txt.j2"
        tpl.write_text(tpl.read_text(encoding="utf-8") + "{# opmerking #}", encoding="utf-8")
        self.fresh_process()
        self.renderer(project_copy, home).render(self.renderer(project_copy, home).campaign.mail(4))
        assert calls[-1] == 4 and len(calls) == 10
        # The next mail's theme shows in this one ("volgende keer"): editing mail 5 renders 4 again.
        path = next((project_copy / "campaigns/gr2026/mails").glob("05-*.md"))
        path.write_text(path.read_text(encoding="utf-8").replace('theme = "', 'theme = "Nieuw: ', 1), encoding="utf-8")
        self.fresh_process()
        mail4 = self.renderer(project_copy, home).render(self.renderer(project_copy, home).campaign.mail(4))
        assert len(calls) == 11 and "Nieuw: " in mail4.text
        # The sender and the signatory, from the deployment settings.
        home.mkdir(parents=True, exist_ok=True)
        from .conftest import CONFIGURED_SETTINGS

        settings = CONFIGURED_SETTINGS.replace('contact = "Leger des Heils, Postbus 1234', 'contact = "Postbus 4321')
        (home / "settings.toml").write_text(settings, encoding="utf-8")
        self.fresh_process()
        mail4 = self.renderer(project_copy, home).render(self.renderer(project_copy, home).campaign.mail(4))
        assert len(calls) == 12 and "Postbus 4321" in mail4.html
        (home / "settings.toml").write_text(settings.replace("Anne de Vries", "Anne de Vries-Jansen"), encoding="utf-8")
        self.fresh_process()
        mail4 = self.renderer(project_copy, home).render(self.renderer(project_copy, home).campaign.mail(4))
        assert len(calls) == 13 and "Anne de Vries-Jansen" in mail4.html

    def test_an_unreadable_stored_render_is_rendered_anew(self, project_copy, home, monkeypatch):
        calls = self.count_renders(monkeypatch)
        first = self.renderer(project_copy, home).render(self.renderer(project_copy, home).campaign.mail(2))
        (stored,) = (home / "cache").glob("*.json")
        stored.write_text('{"number": 2, "html": "<p>half', encoding="utf-8")
        self.fresh_process()
        again = self.renderer(project_copy, home).render(self.renderer(project_copy, home).campaign.mail(2))
        assert len(calls) == 2 and again == first
        assert json.loads(stored.read_text(encoding="utf-8"))["html"] == first.html
