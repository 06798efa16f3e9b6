"""What a person sees, in headless Chromium (Debian's chromium, started by path)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailer.contacts import example_contacts
from mailer.personalise import personalise
from mailer.preview import PreviewServer
from mailer.project import Project
from mailer.render import Renderer

from .conftest import ROOT, require_tool

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps"]


@pytest.fixture(scope="module")
def browser():
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def mail_files(tmp_path_factory):
    project = Project.at(ROOT)
    campaign = project.load_campaign()
    out = tmp_path_factory.mktemp("mails")
    contact = example_contacts(ROOT)[0]
    files = []
    for mail in Renderer(templates=project.templates, campaign=campaign, deployment=project.deployment()).render_all():
        path = out / f"{mail.slug}.html"
        path.write_text(personalise(mail, contact, settings=campaign.settings).html, encoding="utf-8")
        files.append(path)
    return files


def offline_page(browser, width: int, height: int = 900):
    """A page that records every request, so a test can show nothing left the machine."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    return page


def test_every_mail_fits_a_phone_and_fills_the_desktop_width(browser, mail_files):
    for width in (375, 600):
        page = offline_page(browser, width)
        for path in mail_files:
            page.goto(path.as_uri())
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{path.name} scrolls sideways at {width} px ({scroll} px wide)"
            widths = page.evaluate("Array.from(document.querySelectorAll('div[style*=\"max-width:600px\"]'))"
                                   ".map(d => d.getBoundingClientRect().width)")
            assert widths and all(abs(w - width) < 1 for w in widths), (path.name, width, widths)
            body = page.evaluate("document.body.innerText")
            assert "Meld u af" in body and "Leger des Heils" in body
        assert all(u.startswith("file://") for u in page.requests), page.requests
        page.close()


def test_screenshots_of_one_mail_at_both_widths(browser, mail_files):
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (600, 375):
        page = offline_page(browser, width, 1200)
        page.goto(mail_files[0].as_uri())
        shot = ARTIFACTS / f"mail-1-{width}px.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        # On a phone the text is at least 16 px: readable without zooming.
        size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.content div')).fontSize)")
        assert size >= 16
        page.close()


@pytest.fixture
def preview(project_copy: Path, home: Path):
    server = PreviewServer(Project.at(project_copy), port=0)
    server.start()
    yield server, project_copy
    server.stop()


def test_preview_lists_nine_mails_and_switches_views(browser, preview):
    server, _ = preview
    page = offline_page(browser, 1300)
    page.goto(server.url)
    # The token is traded for a cookie that page scripts cannot read, and leaves the address bar.
    assert page.url == server.origin
    assert page.evaluate("document.cookie") == ""
    assert page.locator("tr[data-mail]").count() == 9
    assert "Samen leven: ontmoetingsplekken in elke wijk" in page.inner_text("tr[data-mail='4']")
    page.click("tr[data-mail='3'] a")
    page.wait_for_selector("iframe.phone")
    assert page.locator("iframe.desktop").get_attribute("width") == "600"
    assert page.locator("iframe.phone").get_attribute("width") == "375"
    assert not page.locator("pre.text").is_visible()
    page.click("button[data-panel='p-text']")
    assert page.locator("pre.text").is_visible()
    assert "Geachte Renée Jansen," in page.inner_text("pre.text")
    page.click("button[data-panel='p-mjml']")
    assert "<mjml lang=\"nl\">" in page.inner_text("#p-mjml pre")
    # The contact picker searches (no list of everyone in the page) and shows another contact's personalisation.
    assert "unal.demir@example.nl" not in page.content()
    page.fill("#contact-search", "unal")
    page.wait_for_selector("#contact-results a")
    assert page.locator("#contact-results a").count() == 1
    page.click("#contact-results a")
    page.wait_for_url("**/mail-3.html?contact=unal.demir%40example.nl")
    assert "Ünal Demir" in page.inner_text("#contact-current")
    page.click("button[data-panel='p-text']")
    assert "Geachte Ünal Demir," in page.inner_text("pre.text")
    page.fill("#contact-search", "niemand-heet-zo")
    page.wait_for_selector("#contact-results li.more")
    assert page.inner_text("#contact-results") == "No contact matches."
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(server.origin)
    page.screenshot(path=str(ARTIFACTS / "preview-index.png"))
    assert all(u.startswith(server.origin) for u in page.requests), [u for u in page.requests if not u.startswith(server.origin)]
    page.close()


def wait_for(predicate, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_preview_reloads_after_an_edit_and_shows_errors(browser, preview):
    server, root = preview
    page = offline_page(browser, 1300)
    page.goto(server.url)
    # The live reload asks /__version with the cookie, like every other request.
    page.goto(server.origin + "mail-2.html")
    mail = root / "campaigns/gr2026/mails/02-verantwoord-zorgbeleid.md"
    original = mail.read_text(encoding="utf-8")
    mail.write_text(original.replace('subject = "Verantwoord zorgbeleid voor de meest kwetsbaren"',
                                     'subject = "Zorgbeleid: ruimte voor wie het nodig heeft"'), encoding="utf-8")
    waited = wait_for(lambda: "Zorgbeleid: ruimte voor wie het nodig heeft" in page.inner_text("h2"))
    assert waited < 3
    mail.write_text(original.replace("number = 2", 'number = "twee"'), encoding="utf-8")
    wait_for(lambda: "cannot be built" in page.inner_text("body"))
    assert "02-verantwoord-zorgbeleid.md:2: field 'number'" in page.inner_text("body")
    mail.write_text(original, encoding="utf-8")
    wait_for(lambda: page.locator("h2").count() and "Verantwoord zorgbeleid" in page.inner_text("h2"))
    page.close()


def test_static_preview_for_colleagues(run, tmp_path: Path, browser):
    out = tmp_path / "static"
    result = run("preview", "--no-serve", "--out", str(out))
    assert result.exit_code == 0, result.output
    page = offline_page(browser, 1300)
    page.goto((out / "index.html").as_uri())
    assert page.locator("tr[data-mail]").count() == 9
    page.click("tr[data-mail='9'] a")
    page.wait_for_selector("iframe.desktop")
    assert "Sekswerk" in page.inner_text("h2")
    assert all(u.startswith("file://") for u in page.requests)
    page.close()


def test_the_contact_search_shows_a_few_matches_as_text(browser, project_copy: Path, home: Path, tmp_path: Path):
    import csv

    from mailer.contacts import import_contacts

    path = tmp_path / "lijst.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "party", "municipality"])
        for i in range(200):
            writer.writerow([f"lid{i:03d}@partij.example.nl", f"Lid{i:03d} Partijgenoot", "Partij", "Gemeente"])
        # A name from a spreadsheet is text, never markup.
        writer.writerow(["kwaad@partij.example.nl", "<img src=x onerror=\"document.title='pwned'\">Kwaad", "Partij",
                         "Gemeente"])
    project = Project.at(project_copy)
    conn = project.connect()
    import_contacts(conn, path, default_basis="published-address")
    conn.close()
    server = PreviewServer(project, port=0)
    server.start()
    try:
        page = offline_page(browser, 1300)
        page.goto(server.url)
        assert "lid150@" not in page.content()
        page.fill("#contact-search", "lid1")
        page.wait_for_selector("#contact-results li.more")
        assert page.locator("#contact-results a").count() == 20
        assert "type more to narrow" in page.inner_text("#contact-results")
        page.fill("#contact-search", "lid150")
        wait_for(lambda: page.locator("#contact-results a").count() == 1)
        page.fill("#contact-search", "kwaad")
        wait_for(lambda: "kwaad@" in page.inner_text("#contact-results"))
        assert "<img src=x" in page.inner_text("#contact-results a")
        assert page.locator("#contact-results img").count() == 0 and page.title() != "pwned"
        ARTIFACTS.mkdir(exist_ok=True)
        page.fill("#contact-search", "lid1")
        page.wait_for_selector("#contact-results li.more")
        page.screenshot(path=str(ARTIFACTS / "preview-contact-search.png"))
        page.fill("#contact-search", "lid150")
        wait_for(lambda: "lid150@" in page.inner_text("#contact-results"))
        page.click("#contact-results a")
        page.wait_for_url("**/?contact=lid150%40partij.example.nl")
        assert "Lid150 Partijgenoot" in page.inner_text("#contact-current")
        assert all(u.startswith(server.origin) for u in page.requests)
        page.close()
    finally:
        server.stop()


def test_a_browser_without_the_token_sees_nothing(browser, preview):
    server, _ = preview
    context = browser.new_context()  # a context of its own: no cookie
    stranger = context.new_page()
    for path in ("", "mail-1.html", "raw/1.html", "__contacts?q=r", "__version"):
        response = stranger.goto(server.origin + path)
        assert response.status == 403, path
        assert "@" not in stranger.content() and "Renée" not in stranger.content()
    context.close()
