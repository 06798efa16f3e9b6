"""The interface in Dutch and English: the catalog is complete, the language follows the locale
(CAMPAIGN_LANG overrides it), --json stays English, and moments are written one way."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from mailer import i18n

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "mailer" / "locale" / "nl" / "LC_MESSAGES" / "campaign.po"
PERCENT = re.compile(r"%\(\w+\)[sd]")


def placeholders(text: str) -> set[str]:
    """The fields a message is formatted with: ``{name}`` (as str.format reads them, so that ``{{``
    is a literal brace) and click's ``%(prog)s``."""
    import string

    try:
        fields = {name for _text, name, _spec, _conv in string.Formatter().parse(text) if name is not None}
    except ValueError:
        fields = {"<unbalanced braces>"}
    return fields | set(PERCENT.findall(text))


def extracted() -> dict:
    """Every msgid in the code, extracted as `make catalog` does (babel.cfg, keyword N_)."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords={**DEFAULT_KEYWORDS, "N_": None}):
        found.setdefault(message, f"{filename}:{lineno}")
    return found


def test_every_message_in_the_code_has_a_dutch_translation() -> None:
    from babel.messages.pofile import read_po

    with PO.open("rb") as f:
        catalog = read_po(f)
    missing, bad_placeholders = [], []
    for message, where in extracted().items():
        msgid = message if isinstance(message, str) else message[0]
        entry = catalog.get(msgid)
        strings = [entry.string] if entry is not None and isinstance(entry.string, str) else list(entry.string or ()) \
            if entry is not None else []
        if entry is None or entry.fuzzy or not strings or not all(strings):
            missing.append(f"{where}: {msgid!r}")
            continue
        # A plural's forms may each leave out a placeholder ("Bedoelt u {possibility}?"), but
        # together they use the msgid's, and none that the code does not pass.
        wanted = set().union(*(placeholders(m) for m in (message if isinstance(message, tuple) else [message])))
        used = set().union(*(placeholders(t) for t in strings))
        if used != wanted or (isinstance(message, str) and placeholders(strings[0]) != wanted):
            bad_placeholders.append(f"{where}: {msgid!r} -> {strings!r}")
    assert not missing, "no Dutch translation (make catalog, then translate):\n" + "\n".join(missing)
    assert not bad_placeholders, "placeholders differ from the msgid:\n" + "\n".join(bad_placeholders)


def test_the_language_follows_the_locale_and_campaign_lang_overrides_it() -> None:
    assert i18n.choose_language({"LANG": "nl_NL.UTF-8"}) == "nl"
    assert i18n.choose_language({"LANG": "nl_BE.UTF-8"}) == "nl"
    assert i18n.choose_language({"LANG": "en_US.UTF-8"}) == "en"
    assert i18n.choose_language({"LANG": "de_DE.UTF-8"}) == "en"
    assert i18n.choose_language({}) == "en"
    assert i18n.choose_language({"LANGUAGE": "nl:en", "LANG": "en_US.UTF-8"}) == "nl"
    assert i18n.choose_language({"LC_ALL": "en_GB.UTF-8", "LANG": "nl_NL.UTF-8"}) == "en"
    assert i18n.choose_language({"LC_MESSAGES": "nl_NL.UTF-8", "LANG": "en_US.UTF-8"}) == "nl"
    assert i18n.choose_language({"CAMPAIGN_LANG": "en", "LANG": "nl_NL.UTF-8"}) == "en"
    assert i18n.choose_language({"CAMPAIGN_LANG": "nl", "LANG": "C"}) == "nl"


def test_a_missing_catalog_falls_back_to_english(tmp_path: Path) -> None:
    assert i18n.setup("nl", localedir=tmp_path) == "en"
    assert i18n._("Show this message and exit.") == "Show this message and exit."


def test_the_compiled_catalog_gives_dutch() -> None:
    assert i18n.setup("nl") == "nl"
    assert i18n._("Show this message and exit.") != "Show this message and exit."


def test_a_moment_is_written_one_way_in_the_campaign_time_zone() -> None:
    winter = dt.datetime(2027, 2, 3, 8, 0, tzinfo=dt.timezone.utc)
    summer = dt.datetime(2026, 7, 1, 7, 30, tzinfo=dt.timezone.utc)
    assert i18n.format_moment(winter, "Europe/Amsterdam", lang="nl") == "wo 3 feb. 2027 09:00"
    assert i18n.format_moment(winter, "Europe/Amsterdam", lang="en") == "Wed 3 Feb 2027 09:00"
    assert i18n.format_moment(summer, "Europe/Amsterdam", lang="nl") == "wo 1 jul. 2026 09:30"
    assert i18n.format_day(dt.date(2026, 5, 4), lang="nl") == "ma 4 mei 2026"


def test_a_shortened_text_ends_in_an_ellipsis_at_a_word_boundary() -> None:
    assert i18n.shorten("Wonen en dakloosheid", 40) == "Wonen en dakloosheid"
    assert i18n.shorten("Armoede en schulden in de gemeente", 20) == "Armoede en schulden…"
    assert i18n.shorten("Armoede en schulden in de gemeente", 15) == "Armoede en…"
    assert len(i18n.shorten("Armoedebestrijdingsbeleid", 10)) == 10


# --- the CLI in both languages ------------------------------------------------------------------

from .conftest import ELECTION_AHEAD, ROOT as PROJECT  # noqa: E402


@pytest.fixture
def dutch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dutch staff member's terminal: LANG=nl_NL.UTF-8 and nothing that overrides it."""
    for name in ("CAMPAIGN_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "nl_NL.UTF-8")


@pytest.fixture
def english_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dutch locale with CAMPAIGN_LANG=en: the override wins."""
    monkeypatch.setenv("LANG", "nl_NL.UTF-8")
    monkeypatch.setenv("CAMPAIGN_LANG", "en")


@pytest.fixture
def ahead(run, project_ahead: Path):
    def invoke(*args: str):
        return run(*args, root=project_ahead)

    return invoke


def test_help_in_dutch_has_clicks_own_texts_and_whole_summaries(dutch, run) -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert result.output.startswith("Gebruik: cli [OPTIES] OPDRACHT [ARGUMENTEN]...")  # CliRunner names it "cli"
    assert "Opties:" in result.output and "Opdrachten:" in result.output
    assert "Toon deze hulp en stop." in result.output
    assert "Importeer, toon, zoek en wis contactpersonen." in result.output
    assert "Usage:" not in result.output and "Show this message" not in result.output
    # No summary is cut off with click's "...": each is a whole sentence that fits.
    assert "...\n" not in result.output.split("\n", 1)[1]
    sub = run("contacts", "import", "--help")
    assert "Alles of niets" in sub.output and "Toon wat er zou veranderen; sla niets op." in sub.output


def test_help_in_english_with_the_override(english_override, run) -> None:
    result = run("--help")
    assert result.output.startswith("Usage: cli [OPTIONS]")
    assert "Show this message and exit." in result.output
    assert "Import, list, look up and erase contacts." in result.output
    assert "...\n" not in result.output.split("\n", 1)[1]


def test_a_usage_error_in_dutch(dutch, run) -> None:
    result = run("plan", "--start", "morgen")
    assert result.exit_code == 2
    assert "Fout: Ongeldige waarde voor '--start'" in result.output
    assert "Typ 'cli plan --help' voor hulp." in result.output


def test_plan_in_dutch_and_english(dutch, ahead, monkeypatch: pytest.MonkeyPatch) -> None:
    result = ahead("plan")
    assert result.exit_code == 0, result.output
    assert "thema" in result.output and "verzenden duurt" in result.output
    assert "Verkiezingsdag: " in result.output and "Tijden in Europe/Amsterdam." in result.output
    day = dt.date.fromisoformat(ELECTION_AHEAD)
    assert f"Verkiezingsdag: {i18n.format_day(day, lang='nl')}." in result.output
    monkeypatch.setenv("CAMPAIGN_LANG", "en")
    english = ahead("plan")
    assert f"Election day: {i18n.format_day(day, lang='en')}." in english.output
    assert "theme" in english.output and "verzenden" not in english.output


def test_status_in_dutch_and_json_stays_english(dutch, ahead) -> None:
    assert ahead("contacts", "import", str(PROJECT / "contacts/example.csv")).exit_code == 0
    assert ahead("schedule", "--yes").exit_code == 0
    result = ahead("status")
    assert result.exit_code == 0, result.output
    assert "gepland" in result.output and "postvak uit" in result.output
    assert "verzendweg: postvak uit." in result.output
    assert "Contactpersonen: 5 actief, 0 afgemeld, 0 onbestelbaar, 0 verwijderd." in result.output
    assert "Worker: heeft nog nooit gedraaid." in result.output
    # Every moment in the table in the one Dutch form: "wo 3 feb. 2027 09:00".
    moments = re.findall(r"\b(?:ma|di|wo|do|vr|za|zo) \d{1,2} [a-z]+\.? \d{4} \d\d:\d\d\b", result.output)
    assert len(moments) == 9
    data = json.loads(ahead("status", "--json").output)
    assert data["mails"][0]["state"] == "scheduled"
    assert data["contacts"]["active"] == 5 and "Worker" not in json.dumps(data)


def test_an_import_with_errors_in_dutch(dutch, run, tmp_path: Path) -> None:
    bad = tmp_path / "leden.csv"
    bad.write_text("e-mail,naam,partij,gemeente\njan@@example.nl,Jan,PvdA,Almere\n,Piet,VVD,Lelystad\n",
                   encoding="utf-8")
    result = run("contacts", "import", str(bad))
    assert result.exit_code == 1
    assert f"Fout: {bad}: 2 problemen; er is niets geïmporteerd (verbeter het bestand, of gebruik --skip-invalid" \
        in result.output
    assert f"{bad}:2: kolom 'e-mail': 'jan@@example.nl' is geen geldig adres (" in result.output
    assert f"{bad}:3: kolom 'e-mail': is leeg" in result.output
    assert "Traceback" not in result.output


def test_an_import_with_errors_in_english(english_override, run, tmp_path: Path) -> None:
    bad = tmp_path / "leden.csv"
    bad.write_text("e-mail,naam,partij,gemeente\n,Piet,VVD,Lelystad\n", encoding="utf-8")
    result = run("contacts", "import", str(bad))
    assert result.exit_code == 1
    assert f"Error: {bad}: 1 problem; nothing was imported" in result.output
    assert f"{bad}:2: column 'e-mail': is empty" in result.output


def test_the_preview_in_dutch_says_lang_nl(dutch, run, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = run("preview", "--no-serve", "--out", str(out))
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text(encoding="utf-8")
    assert '<html lang="nl"' in index
    assert "Onderwerp en voorvertoning" in index and "niet gepland" in index
    page = (out / "mail-1.html").read_text(encoding="utf-8")
    assert "Desktop en telefoon" in page and "volgende →" in page and "Alle mails" in page
    assert "Desktop and phone" not in page


def test_the_preview_in_english_says_lang_en(english_override, run, tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert run("preview", "--no-serve", "--out", str(out)).exit_code == 0
    page = (out / "mail-1.html").read_text(encoding="utf-8")
    assert '<html lang="en"' in page and "Desktop and phone" in page and "next →" in page


@pytest.mark.parametrize("moment, expected", [
    (dt.datetime(2027, 2, 3, 8, 0, tzinfo=dt.timezone.utc), "Wed, 03 Feb 2027 09:00:00 +0100"),
    (dt.datetime(2026, 7, 1, 7, 30, tzinfo=dt.timezone.utc), "Wed, 01 Jul 2026 09:30:00 +0200"),
])
def test_the_date_header_is_local_time_with_its_offset(moment: dt.datetime, expected: str) -> None:
    import email
    from email import policy

    from mailer.contacts import example_contacts
    from mailer.message import build_message
    from mailer.personalise import personalise
    from mailer.project import Project
    from mailer.render import Renderer

    project = Project.at(PROJECT)
    campaign = project.load_campaign()
    deployment = project.deployment()
    mail = Renderer(templates=project.templates, campaign=campaign, deployment=deployment).render(campaign.mail(1))
    personal = personalise(mail, example_contacts(PROJECT)[0], settings=campaign.settings)
    envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=moment)
    assert email.message_from_bytes(envelope.data, policy=policy.default)["Date"] == expected


def test_check_findings_in_dutch_and_check_json_in_english(dutch, run, project_copy: Path) -> None:
    mail = next((project_copy / "campaigns/gr2026/mails").glob("01-*.md"))
    text = mail.read_text(encoding="utf-8")
    mail.write_text(text.replace('subject = "Wonen Eerst: herstel begint met een thuis"',
                                 'subject = "Wonen Eerst: herstel begint met een thuis, voor iedereen in de gemeente"'),
                    encoding="utf-8")
    result = run("check", root=project_copy)
    assert "niveau" in result.output and "bevinding" in result.output
    assert "waarschuwing  1     onderwerp is 71 tekens; telefoons tonen er ongeveer 50" in result.output
    data = json.loads(run("check", "--json", root=project_copy).output)
    assert {"level": "warning", "mail": 1, "message": "subject is 71 characters; phones show about 50"} \
        in data["findings"]


def test_the_calendar_follows_the_language(dutch, ahead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dutch_ics, english_ics = tmp_path / "plan-nl.ics", tmp_path / "plan-en.ics"
    assert ahead("plan", "--ics", str(dutch_ics)).exit_code == 0
    monkeypatch.setenv("CAMPAIGN_LANG", "en")
    assert ahead("plan", "--ics", str(english_ics)).exit_code == 0
    assert "SUMMARY:Mail 1 van 9: Wonen Eerst" in dutch_ics.read_text(encoding="utf-8")
    assert "SUMMARY:Mail 1 of 9: Wonen Eerst" in english_ics.read_text(encoding="utf-8")


def test_simulate_and_its_timeline_headings_in_dutch(dutch, ahead, home: Path) -> None:
    result = ahead("simulate")
    assert result.exit_code == 0, result.output
    assert "het beleid van de campagne (nog niet gepland)" in result.output
    assert "Er is niets verzonden en niets als bezorgd vastgelegd." in result.output
    header = (home / "simulation/gr2026/timeline.csv").read_text(encoding="utf-8").splitlines()[0]
    # contact_id stays as it is: erasure finds a person's lines by it.
    assert header == "moment,mail,thema,contactpersoon,partij,gemeente,bestand,contact_id"


def test_no_function_hides_the_translation_function_behind_a_variable() -> None:
    """``for _ in ...`` in a function that also calls ``_()`` makes ``_`` a local there, and the
    message would crash (UnboundLocalError or 'int' is not callable) exactly when it is needed."""
    import ast

    hidden = []
    for path in [PROJECT / "cli.py", *sorted((PROJECT / "mailer").glob("*.py"))]:
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            nodes = list(ast.walk(fn))
            # A comprehension's variables live in its own scope: `for _ in` there hides nothing.
            in_comprehension = {id(t) for n in nodes if isinstance(n, ast.comprehension) for t in ast.walk(n.target)}
            if any(isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store)
                   and id(n) not in in_comprehension for n in nodes) and \
                    any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_" for n in nodes):
                hidden.append(f"{path.name}:{fn.lineno} {fn.name}")
    assert not hidden


# --- what was left in English: inbox, stored texts, moments, metavars -------------------------------

from .test_inbox import CORPUS, inbox_home  # noqa: E402,F401 (a fixture)

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def test_the_inbox_table_in_dutch_and_its_json_in_english(dutch, inbox_home, run) -> None:
    result = run("inbox", "--from", str(CORPUS))
    assert result.exit_code == 0, result.output
    assert "5 onbestelbaar (blijvend), 1 onbestelbaar (tijdelijk), 1 vertraging, 5 afmeldingen, 1 klacht, " \
           "3 automatische antwoorden, 2 antwoorden, 1 overig." in result.output
    assert "als onbestelbaar gemarkeerd; krijgt geen mail meer" in result.output
    assert "op de blokkeerlijst gezet (niet geïmporteerd)" in result.output
    assert "19 bericht(en) gelezen uit 19 .eml-bestand(en) in " in result.output
    assert "automatisch antwoord" in result.output and "in de lijst gezet voor medewerkers" in result.output
    # The file names hold English words too ("optout-english.eml"): look at whole cells only.
    for english in ("bounce-hard", "optout", "autoreply", "reply", "marked bounced", "listed for staff", "none"):
        assert not re.search(rf"\s{english}(?:\s|[:;])", result.output), english
    again = json.loads(run("inbox", "--from", str(CORPUS), "--json").output)
    assert {o["action"] for o in again} == {"already handled"}
    assert {o["kind"] for o in again} >= {"bounce-hard", "optout", "autoreply", "reply"}


def test_a_dry_run_of_the_inbox_says_would_in_dutch(dutch, inbox_home, run) -> None:
    result = run("inbox", "--from", str(CORPUS), "--dry-run")
    assert "zou als onbestelbaar worden gemarkeerd; krijgt dan geen mail meer" in result.output
    assert "zou op de blokkeerlijst worden gezet (niet geïmporteerd)" in result.output


def test_contacts_show_in_dutch_translates_stored_texts_and_writes_moments_one_way(dutch, inbox_home, run) -> None:
    from mailer import store

    assert run("inbox", "--from", str(CORPUS)).exit_code == 0
    conn = store.connect(inbox_home)
    with store.transaction(conn):
        conn.execute("UPDATE ledger SET error = 'resent: the previous worker stopped while sending' WHERE mail = 1")
        conn.execute("UPDATE ledger SET state = 'failed', error = 'gave up after 5 attempts: held back: the server"
                     " refused 3 messages in a row with: 550 5.7.1 rejected' WHERE mail = 2")
    result = run("contacts", "show", "jan.bakker@wijkpartij.example.nl")
    assert result.exit_code == 0, result.output
    assert "opnieuw verzonden: de vorige worker stopte tijdens het verzenden" in result.output
    assert "opgegeven na 5 pogingen: tegengehouden: de server weigerde 3 berichten achter elkaar met: " \
           "550 5.7.1 rejected" in result.output
    bounced = run("contacts", "show", "anouk.mulder@groen-ede.example.nl").output
    assert re.search(r"onbestelbaar(?: \([\d.]+\))?, per mail", bounced), bounced
    assert "onbestelbaar (blijvend)" in result.output and "afmelding" in result.output
    assert not ISO.search(result.output), result.output
    assert re.search(r"\b(?:ma|di|wo|do|vr|za|zo) \d{1,2} [a-z]+\.? \d{4} \d\d:\d\d\b", result.output)
    data = json.loads(run("contacts", "show", "jan.bakker@wijkpartij.example.nl", "--json").output)
    assert ISO.match(data["sends"][0]["sent_at"])
    assert data["sends"][0]["error"] == "resent: the previous worker stopped while sending"
    assert json.loads(run("contacts", "show", "anouk.mulder@groen-ede.example.nl", "--json").output)[
        "status_reason"].startswith("bounced")


def test_an_unknown_stored_text_is_shown_as_it_is(dutch) -> None:
    from mailer.i18n_stored import stored

    i18n.setup("nl")
    assert stored("550 5.1.1 <x@example.nl>: Recipient address rejected") == \
        "550 5.1.1 <x@example.nl>: Recipient address rejected"
    assert stored("none: already bounced") == "niets: al onbestelbaar"
    assert stored("a mailing (Precedence: bulk), not a person") == "een massamailing (Precedence: bulk), geen persoon"
    i18n.setup("en")
    assert stored("none: already bounced") == "none: already bounced"


def test_the_metavars_in_usage_and_help_follow_the_language(dutch, run, monkeypatch: pytest.MonkeyPatch) -> None:
    show = run("contacts", "show", "--help").output
    assert show.startswith("Gebruik: cli contacts show [OPTIES] E-MAILADRES")
    unsubscribe = run("contacts", "unsubscribe", "--help").output
    assert "[OPTIES] [E-MAILADRESSEN]..." in unsubscribe and "--from BESTAND" in unsubscribe
    assert "--reason TEKST" in unsubscribe
    assert "EMAIL" not in unsubscribe and "FILE" not in unsubscribe and "TEXT" not in unsubscribe
    assert "--campaign NAAM" in run("status", "--help").output
    assert "--start [JJJJ-MM-DD]" in run("plan", "--help").output
    monkeypatch.setenv("CAMPAIGN_LANG", "en")
    assert run("contacts", "show", "--help").output.startswith("Usage: cli contacts show [OPTIONS] EMAIL")
    english = run("contacts", "unsubscribe", "--help").output
    assert "[OPTIONS] [EMAILS]..." in english and "--from FILE" in english and "--reason TEXT" in english
    assert "--start [YYYY-MM-DD]" in run("plan", "--help").output


def test_the_review_lines_of_campaign_new_in_dutch_and_json_in_english(dutch, run, project_copy: Path) -> None:
    result = run("new", "gr2030", "--from-campaign", "gr2026", "--election-day", "2030-03-20", root=project_copy)
    assert result.exit_code == 0, result.output
    assert "campaign.toml: schedule.blackouts is +4 jaar verschoven met de verkiezing; controleer de datums " \
           "(schoolvakanties verschillen per jaar)" in result.output
    assert "moved" not in result.output and "check the" not in result.output
    assert "geschreven uit campagne gr2026: 9 mail(s)." in result.output
    data = json.loads(run("new", "gr2031", "--from-campaign", "gr2026", "--election-day", "2031-03-19", "--json",
                          root=project_copy).output)
    assert any(line.startswith("campaign.toml: schedule.blackouts moved +5 year(s) with the election")
               for line in data["review"])


def test_init_writes_the_settings_comments_in_dutch_with_the_same_keys_and_values(dutch, run, home: Path) -> None:
    import tomllib

    from mailer.settings import SETTINGS_TEMPLATE

    result = run("init")
    assert result.exit_code == 0, result.output
    text = (home / "settings.toml").read_text(encoding="utf-8")
    assert "# Geschreven door `campaign init`. Elke waarde hieronder is een VOORBEELD op example.org:" in text
    assert "Written by" not in text and "Where replies go" not in text
    assert tomllib.loads(text) == tomllib.loads(SETTINGS_TEMPLATE)
    # The keys one uncomments are the same keys as in English.
    commented = {line for line in SETTINGS_TEMPLATE.splitlines() if re.match(r"# [a-z_]+ = |# \[", line)}
    assert commented <= set(text.splitlines())
    # Still the example values: the sender counts as not configured.
    from mailer.settings import load_deployment_settings

    assert load_deployment_settings(home).problems


def test_reactivate_writes_its_moment_one_way_in_dutch(dutch, run, home: Path, tmp_path: Path) -> None:
    from mailer import store
    from mailer.contacts import set_status

    contacts = tmp_path / "a.csv"
    contacts.write_text("email,party,municipality\na@example.nl,A,Ede\n", encoding="utf-8")
    assert run("contacts", "import", str(contacts)).exit_code == 0
    conn = store.connect(home)
    set_status(conn, ["a@example.nl"], status="bounced", reason="550 user unknown")
    conn.close()
    result = run("contacts", "reactivate", "a@example.nl")
    assert result.exit_code == 0, result.output
    assert not ISO.search(result.output), result.output
    assert re.search(r"\b(?:ma|di|wo|do|vr|za|zo) \d{1,2} [a-z]+\.? \d{4} \d\d:\d\d\b", result.output)


def test_an_unknown_outcome_is_stored_in_english_and_shown_in_dutch(dutch) -> None:
    # A worker running in Dutch loses the connection after the final dot: the ledger keeps the
    # error in English (so that an English reader and scripts see the same words), and a Dutch
    # reader sees it whole in Dutch.
    from mailer.i18n_stored import stored
    from mailer.message import Envelope
    from mailer.transport import SmtpTransport, TransportConfig, UnknownOutcome

    from .smtp_server import Server

    i18n.setup("nl")
    try:
        with Server() as smtp:
            smtp.recorder.script["r@example.nl"] = ["drop-after-data"]
            config = TransportConfig(kind="smtp", host="127.0.0.1", port=smtp.port)
            transport = SmtpTransport(config, env={}, timeout=5)
            envelope = Envelope(sender="z@example.org", recipient="r@example.nl", message_id="<1@x>",
                                data=b"Subject: 1\r\n\r\nbericht\r\n")
            with pytest.raises(UnknownOutcome) as caught:
                transport.send(envelope)
            transport.close()
        text = str(caught.value)
        assert text == "connection lost while the message was handed over: the server closed the connection"
        assert stored(text) == "verbinding verbroken terwijl het bericht werd overgedragen: " \
                               "de server heeft de verbinding verbroken"
    finally:
        i18n.setup("en")
