"""Every header value is checked, whatever its source, and written so that no reader misreads it.

Messages are parsed back with the email package (policy=default), as a mail client would.
"""

from __future__ import annotations

import email
import json
import sqlite3
from dataclasses import replace
from email import policy
from pathlib import Path

import pytest

from mailer.contacts import Contact
from mailer.errors import HeaderError, SettingsError
from mailer.message import build_message
from mailer.personalise import personalise
from mailer.project import Project
from mailer.render import Renderer
from mailer.settings import load_campaign_settings, load_deployment_settings

from .conftest import CONFIGURED_SETTINGS, FIXED_NOW, ROOT

EXPECTED_FIELDS = {"From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Id",
                   "Content-Language", "MIME-Version", "Content-Type"}


@pytest.fixture(scope="module")
def setup():
    project = Project.at(ROOT)
    campaign = project.load_campaign()
    deployment = load_deployment_settings(Path("/nonexistent-home"))
    mail = Renderer(templates=project.templates, campaign=campaign, deployment=deployment).render(campaign.mail(3))
    return campaign, deployment, mail


def build(setup, contact: Contact, **kwargs):
    campaign, deployment, mail = setup
    kwargs.setdefault("sender", deployment.sender)
    kwargs.setdefault("campaign", campaign.settings)
    rendered = kwargs.pop("mail", mail)
    return build_message(personalise(rendered, contact, settings=campaign.settings), now=FIXED_NOW, **kwargs)


def parse(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


def header_lines(data: bytes) -> dict[str, list[bytes]]:
    """Each field's physical lines, as written (continuation lines with their field)."""
    out: dict[str, list[bytes]] = {}
    current = b""
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if not line[:1].isspace():
            current = line.split(b":", 1)[0]
        out.setdefault(current.decode(), []).append(line)
    return out


def assert_folded(data: bytes, *fields: str) -> None:
    lines = header_lines(data)
    assert all(len(line) <= 998 for group in lines.values() for line in group)
    for field in fields:
        assert all(len(line) <= 78 for line in lines[field]), lines[field]


HOSTILE_NAMES = [
    "=?utf-8?b?QmNjOiB4QGV2aWw=?=",  # an encoded word that decodes to "Bcc: x@evil"
    "Jan =?utf-8?q?Bcc:_x@evil?= Jansen",
    "=?utf-8?b?QmNjOiB4QGV2aWw=?= Zoë",
    "Jansen, Jan <evil@attacker.example>",
    'Eva "Bcc: x@evil"',
    "Jan  Jansen",  # two spaces: a phrase of atoms would lose one
    "Jansen.",
    "Zoë van den Berg " * 11 + "Zoë",
    "Leger des Heils, afdeling Communicatie en Public Affairs, " * 3 + "Nederland",
    "Bcc: x@evil.example",
    "Ünal\\Çelik \"=?\"",
    "Zoë",
]
# A word too long for a line cannot fold, and neither can a name of only encoded words
# (readers disagree about the space between two of them): a longer line, far from 998.
UNFOLDABLE_NAMES = ["A" * 200, "Ünal-Çelik-Öztürk-" * 11, "Ünal Çelik Öztürk " * 4 + "Ünal", "😀" * 200]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_display_name_decodes_to_exactly_the_contacts_name(setup, name):
    contact = Contact(email="jan@example.nl", name=name, party="P", municipality="M")
    env = build(setup, contact)
    msg = parse(env.data)
    [to] = msg["To"].addresses
    assert to.display_name == name
    assert to.addr_spec == "jan@example.nl"
    assert set(msg.keys()) == EXPECTED_FIELDS  # no Bcc, Cc or anything else smuggled in
    assert_folded(env.data, "From", "To", "Subject", "List-Id")
    assert not msg["To"].defects


def test_a_name_with_double_spaces_keeps_its_words(setup):
    # Python's email package collapses a run of spaces inside an encoded-word in a phrase;
    # every word and nothing else still arrives.
    for name in ("Jan  Jansen", "Zoë  van den Berg"):
        env = build(setup, Contact(email="jan@example.nl", name=name, party="P", municipality="M"))
        shown = parse(env.data)["To"].addresses[0].display_name
        assert shown == name if name.isascii() else shown.split() == name.split()


@pytest.mark.parametrize("name", UNFOLDABLE_NAMES)
def test_a_name_without_spaces_stays_within_998(setup, name):
    env = build(setup, Contact(email="jan@example.nl", name=name, party="P", municipality="M"))
    msg = parse(env.data)
    if not name.startswith("😀"):  # hundreds of 4-byte characters: RFC 2047 folding, see headers._run
        assert msg["To"].addresses[0].display_name == name
    assert set(msg.keys()) == EXPECTED_FIELDS
    assert_folded(env.data, "From", "Subject", "List-Id")


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"])
def test_a_bidi_control_in_a_contact_value_is_never_sent(setup, char):
    contact = Contact(email="jan@example.nl", name=f"Jan{char}snasnaJ", party="P", municipality="M")
    with pytest.raises(HeaderError, match=rf"contact j\*\*\*@example.nl: name contains a bidi control character \(U\+{ord(char):04X}\)"):
        build(setup, contact)


@pytest.mark.parametrize("char", ["\t", "\x85", "\x1b", "\u2028"])
def test_a_control_character_in_a_contact_value_is_never_sent(setup, char):
    contact = Contact(email="jan@example.nl", name="Jan", party=f"Partij{char}X", municipality="M")
    with pytest.raises(HeaderError, match="contact j\\*\\*\\*@example.nl: party contains a"):
        build(setup, contact)


def test_a_long_subject_is_folded_and_decodes_exactly(setup):
    campaign, deployment, mail = setup
    for subject in ("Een lange onderwerpregel over kwetsbare groepen " * 4,
                    "Zoë, één thema: " + "ü" * 120,
                    "Geen-spaties-" * 12):
        subject = subject.strip()
        env = build(setup, Contact(email="jan@example.nl", name="Jan", party="P", municipality="M"),
                    mail=replace(mail, subject=subject))
        msg = parse(env.data)
        assert msg["Subject"] == subject
        assert_folded(env.data, "Subject")


def test_a_long_list_id_and_names_are_folded(setup):
    campaign, deployment, mail = setup
    settings = replace(campaign.settings, name="Meer aandacht voor kwetsbare groepen in de samenleving, "
                                               "een checklist voor verkiezingsprogramma's (Zoë)",
                       list_id="gemeenteraadsverkiezingen-2026.checklist-kwetsbare-groepen.legerdesheils.nl")
    sender = replace(deployment.sender, name="Leger des Heils, afdeling Communicatie en Public Affairs Nederland",
                     reply_to="reacties@example.org")
    env = build(setup, Contact(email="jan@example.nl", name="Jan", party="P", municipality="M"),
                campaign=settings, sender=sender)
    msg = parse(env.data)
    assert msg["List-Id"] == f"{settings.name} <{settings.list_id}>"
    assert msg["From"].addresses[0].display_name == sender.name
    assert msg["Reply-To"].addresses[0].display_name == sender.name
    assert_folded(env.data, "From", "Reply-To", "Subject", "List-Id")


def test_list_unsubscribe_with_two_entries_is_folded_between_them(setup):
    campaign, deployment, mail = setup
    sender = replace(deployment.sender, optout_url="https://www.example.org/afmelden")
    env = build(setup, Contact(email="jan@example.nl", name="Jan", party="P", municipality="M"), sender=sender)
    lines = header_lines(env.data)["List-Unsubscribe"]
    assert len(lines) == 2 and lines[0].endswith(b">,") and lines[1].startswith(b" <mailto:")
    unsub = parse(env.data)["List-Unsubscribe"]
    assert unsub.startswith("<https://www.example.org/afmelden?list=") and ", <mailto:" in unsub


# --- settings: every value that reaches a header is checked where it is read ----------------------

def campaign_toml(tmp_path: Path, **values: str) -> Path:
    folder = tmp_path / "gr"
    folder.mkdir()
    text = (ROOT / "campaigns/gr2026/campaign.toml").read_text(encoding="utf-8")
    for key, value in values.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old, f"{key} = {value}")
    (folder / "campaign.toml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("key, value, expected", [
    ("list_id", '"gr2026.checklist\\r\\nBcc: evil@attacker.example"', "list_id: contains a line break"),
    ("list_id", '"gr2026 checklist.legerdesheils"', "list_id: 'gr2026 checklist.legerdesheils' is not a list id"),
    ("list_id", '"zonder-punt"', "list_id: 'zonder-punt' is not a list id"),
    ("list_id", '"<gr2026.legerdesheils>"', "is not a list id"),
    ("name", '"Verkiezingen \\u202Eslennak"', "name: contains a bidi control character (U+202E)"),
    ("name", '"Verkiezingen\\tnu"', "name: contains a control character (U+0009)"),
    ("name", '"' + "x" * 151 + '"', "name: is 151 characters long; at most 150 are allowed"),
    ("name", '"' + "é" * 120 + '"', "URL-encoded for the List-Unsubscribe header it is"),
])
def test_campaign_values_that_reach_headers_are_refused_with_file_and_key(tmp_path, key, value, expected):
    folder = campaign_toml(tmp_path, **{key: value})
    with pytest.raises(SettingsError) as err:
        load_campaign_settings(folder)
    assert str(err.value).startswith(f"{folder / 'campaign.toml'}: {key}: ")
    assert expected in str(err.value)


def settings_home(tmp_path: Path, **values: str) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    text = CONFIGURED_SETTINGS
    for key, value in values.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old, f"{key} = {value}")
    (home / "settings.toml").write_text(text, encoding="utf-8")
    return home


@pytest.mark.parametrize("key, value, expected", [
    ("optout_address", '"afmelden@legerdesheils.nl>,<https://evil.example/x"', "is not a usable mail address"),
    ("address", '"communicatie@legerdesheils"', "is not a usable mail address: The part after the @-sign is not valid"),
    ("reply_to", '"reacties@localhost"', "is not a usable mail address"),
    ("address", '"jan@@legerdesheils.nl"', "is not a usable mail address"),
    ("optout_url", '"https://www.legerdesheils.nl/afmelden>,<mailto:evil@attacker.example"',
     "holds '>', which cannot stand in the List-Unsubscribe header"),
    ("optout_url", '"https://www.legerdesheils.nl/afmelden,mailto:evil@attacker.example"', "holds ','"),
    ("optout_url", '"https://www.legerdesheils.nl/a?next=mailto:evil@attacker.example"', "holds a mailto: address"),
    ("optout_url", '"https://www.legerdesheils.nl/af melden"', "holds ' '"),
    ("optout_url", '"mailto:afmelden@legerdesheils.nl"', "must be an https:// address"),
    ("optout_url", '"https://localhost/afmelden"', "has no full host name"),
    ("name", '"Leger des Heils\\u202E"', "sender.name: contains a bidi control character (U+202E)"),
    ("name", '"Leger des Heils\\r\\nBcc: evil@attacker.example"', "sender.name: contains a line break"),
])
def test_sender_values_are_refused_with_file_and_key(tmp_path, key, value, expected):
    home = settings_home(tmp_path, **{key: value})
    with pytest.raises(SettingsError) as err:
        load_deployment_settings(home)
    message = str(err.value)
    assert message.startswith(f"{home / 'settings.toml'}: sender.{key}: "), message
    assert expected in message


def test_sender_addresses_are_stored_in_their_ascii_form(tmp_path):
    home = settings_home(tmp_path, address='"Campagne@Bücher.nl"', optout_address='"afmelden@bücher.nl"',
                         optout_url='"https://www.legerdesheils.nl/afmelden?bron=mail"')
    sender = load_deployment_settings(home).sender
    assert sender.address == "Campagne@xn--bcher-kva.nl"
    assert sender.optout_address == "afmelden@xn--bcher-kva.nl"
    assert sender.domain == "xn--bcher-kva.nl"


# --- campaign check, the worker and simulate -----------------------------------------------------

def check(run, root: Path = ROOT) -> tuple[int, list[dict], str]:
    result = run("check", "--json", root=root)
    try:
        return result.exit_code, json.loads(result.output)["findings"], result.output
    except json.JSONDecodeError:
        return result.exit_code, [], result.output


def test_check_refuses_a_list_id_that_would_add_a_bcc(run, project_copy: Path):
    toml = project_copy / "campaigns/gr2026/campaign.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'list_id = "gr2026.checklist.legerdesheils"', 'list_id = "gr2026.checklist.legerdesheils\\r\\nBcc: evil@attacker.example"'),
        encoding="utf-8")
    result = run("check", root=project_copy)
    assert result.exit_code == 1
    assert "All checks pass" not in result.output
    assert f"Error: {toml}: list_id: contains a line break" in result.output


def test_check_refuses_a_smuggled_opt_out_address(run, configured_home):
    settings = configured_home / "settings.toml"
    settings.write_text(CONFIGURED_SETTINGS.replace(
        'optout_address = "afmelden@zender.test-org.nl"',
        'optout_address = "afmelden@legerdesheils.nl>,<https://evil.example/x"'), encoding="utf-8")
    result = run("check")
    assert result.exit_code == 1
    assert f"Error: {settings}: sender.optout_address: 'afmelden@legerdesheils.nl>,<https://evil.example/x' " \
           "is not a usable mail address" in result.output


def store_contact_as_before(home: Path, email_address: str, **values: str) -> None:
    """A contact row as an import before these rules could leave it (straight into SQLite)."""
    conn = sqlite3.connect(home / "campaign.sqlite3")
    fields = {"name": "", "party": "P", "municipality": "M", "role": "", "extra": "{}", "basis": "published-address",
              **values}
    conn.execute("INSERT INTO contacts (email, email_key, name, party, municipality, role, extra, basis, source,"
                 " imported_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'oud.csv','2026-01-01T00:00:00Z','2026-01-01T00:00:00Z')",
                 (email_address, email_address.casefold(), fields["name"], fields["party"], fields["municipality"],
                  fields["role"], fields["extra"], fields["basis"]))
    conn.commit()
    conn.close()


def test_check_names_stored_contacts_that_cannot_be_sent(run, home: Path):
    assert run("contacts", "import", str(ROOT / "contacts/example.csv")).exit_code == 0
    store_contact_as_before(home, "roos@example.nl", name="Roos\u202eJansen")
    store_contact_as_before(home, "tab@example.nl", name="Tab\tTabsma")
    store_contact_as_before(home, "lang@example.nl", municipality="M" * 5000)
    code, found, output = check(run)
    assert code == 1
    errors = [f["message"] for f in found if f["level"] == "error"]
    assert any(m.startswith("contact r***@example.nl: name contains a bidi control character (U+202E)") for m in errors)
    assert any(m.startswith("contact t***@example.nl: name contains a control character (U+0009)") for m in errors)
    assert any(m.startswith("contact l***@example.nl: municipality is 5000 characters long; at most 200") for m in errors)
    for address in ("roos@example.nl", "tab@example.nl", "lang@example.nl"):
        assert address not in output


def test_simulate_validates_before_it_deletes_the_previous_simulation(run, home: Path):
    assert run("contacts", "import", str(ROOT / "contacts/example.csv")).exit_code == 0
    assert run("simulate").exit_code == 0
    out = home / "simulation" / "gr2026"
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert before
    store_contact_as_before(home, "tab@example.nl", name="Tab\tTabsma")
    store_contact_as_before(home, "roos@example.nl", name="Roos\u202eJansen")
    result = run("simulate")
    assert result.exit_code == 1
    assert f"nothing was simulated and the previous simulation in {out} is kept" in result.output
    assert "contact t***@example.nl: name contains a control character (U+0009)" in result.output
    assert "contact r***@example.nl: name contains a bidi control character (U+202E)" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


# --- import: contacts that could never be sent are refused, with line and column ------------------

def test_import_refuses_values_that_cannot_stand_in_a_header(run, tmp_path: Path):
    f = tmp_path / "lijst.csv"
    rows = [
        "naam,email,partij,gemeente,functie,wijk",
        '"Jan\tJansen",jan@example.nl,A,Ede,,',
        "Piet\x85Pietersen,piet@example.nl,A,Ede,,",
        "L" * 5000 + ",lang@example.nl,A,Ede,,",
        "Roos,roos@example.nl,Partij\u202eA,Ede,,",
        "Gem,gem@example.nl,A," + "G" * 201 + ",,",
        "Rol,rol@example.nl,A,Ede,raads\u200flid,",
        "Wijk,wijk@example.nl,A,Ede,," + "W" * 1001,
        "Goed,goed@example.nl,A,Ede,raadslid,Noord",
        "Zoë,zoë@example.nl,A,Ede,,",
    ]
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run("contacts", "import", str(f))
    assert result.exit_code == 1
    out = result.output
    assert "nothing was imported" in out
    assert f"{f}:2: column 'naam': contains a control character (U+0009)" in out
    assert f"{f}:3: column 'naam': contains a line break" in out  # U+0085, NEL
    assert f"{f}:4: column 'naam': is 5000 characters long; at most 200 are allowed" in out
    assert f"{f}:5: column 'partij': contains a bidi control character (U+202E)" in out
    assert f"{f}:6: column 'gemeente': is 201 characters long; at most 200 are allowed" in out
    assert f"{f}:7: column 'functie': contains a bidi control character (U+200F)" in out
    assert f"{f}:8: column 'wijk': is 1001 characters long; at most 1000 are allowed" in out
    assert f"{f}:10: column 'email'" in out  # a non-ASCII local part needs SMTPUTF8
    assert f"{f}:9:" not in out
    assert run("contacts", "import", "--skip-invalid", str(f)).exit_code == 0
    listed = json.loads(run("contacts", "list", "--json").output)
    assert [r["email"] for r in listed] == ["goed@example.nl"]


# --- the worker: a contact stored before these rules is skipped and recorded, not sent ----------

def test_the_worker_records_an_unsendable_stored_contact_and_sends_the_rest(configured_home, tmp_path, monkeypatch):
    from .smtp_server import Server
    from .test_deliver import MAIL1, ledger, prepare, run_worker

    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=smtp.url)
        store_contact_as_before(configured_home, "roos@example.nl", name="Roos\u202eJansen")
        store_contact_as_before(configured_home, "tab@example.nl", name="Tab\tTabsma")
        stats = run_worker(project, MAIL1)
        assert stats.sent == 2 and stats.failed == 2
        assert sorted(m["To"].addresses[0].addr_spec for m in smtp.recorder.messages) == ["a@example.nl", "b@example.nl"]
        assert ledger(project) == {"sent": 2, "failed": 2}
        conn = sqlite3.connect(configured_home / "campaign.sqlite3")
        errors = sorted(r[0] for r in conn.execute("SELECT error FROM ledger WHERE state = 'failed'"))
        conn.close()
        assert errors[0].startswith("HeaderError: contact r***@example.nl: name contains a bidi control character (U+202E)")
        assert errors[1].startswith("HeaderError: contact t***@example.nl: name contains a control character (U+0009)")
        assert not any("roos@" in e or "tab@" in e for e in errors)


# --- an IDN contact: import, build, simulate and send ------------------------------------------------

def test_an_idn_contact_is_built_simulated_and_sent_in_its_ascii_form(run, configured_home, tmp_path, monkeypatch):
    from .smtp_server import Server
    from .test_deliver import MAIL1, prepare, run_worker

    ascii_form = "piet@xn--bcher-kva.nl"
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["Piet@Bücher.nl"], smtp_url=smtp.url)
        stats = run_worker(project, MAIL1)
        assert stats.sent == 1 and stats.failed == 0
        assert smtp.recorder.rcpts == ["Piet@xn--bcher-kva.nl"]
        [msg] = smtp.recorder.messages
        assert msg["To"].addresses[0].addr_spec.lower() == ascii_form
        assert "body=Piet@xn--bcher-kva.nl" in msg["List-Unsubscribe"]
    out = tmp_path / "build"
    result = run("build", "--out", str(out), root=project.root)
    assert result.exit_code == 0, result.output
    built = parse((out / "01-wonen-eerst.eml").read_bytes())
    assert built["To"].addresses[0].addr_spec.lower() == ascii_form
    result = run("build", "--out", str(out), "--contact", "piet@bücher.nl", root=project.root)
    assert result.exit_code == 0, result.output
    result = run("simulate", root=project.root)
    assert result.exit_code == 0, result.output
    # Mail 1 was sent above, so the simulation starts at mail 2.
    first = sorted((configured_home / "simulation" / "gr2026").glob("02-*/*.eml"))[0]
    assert parse(first.read_bytes())["To"].addresses[0].addr_spec.lower() == ascii_form


@pytest.mark.parametrize("subject, expected", [
    ("Wonen \\u202Eeerst", "field 'subject': contains a bidi control character (U+202E)"),
    ("Wonen\\teerst", "field 'subject': contains a control character (U+0009)"),
    ("W" * 201, "field 'subject': is 201 characters long; at most 200 are allowed"),
])
def test_a_subject_that_cannot_stand_in_a_header_is_refused_with_file_and_line(run, project_copy: Path, subject, expected):
    mail = project_copy / "campaigns/gr2026/mails/01-wonen-eerst.md"
    lines = mail.read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("subject = "))
    lines[n] = f'subject = "{subject}"'
    mail.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("check", root=project_copy)
    assert result.exit_code == 1
    assert f"Error: {mail}:{n + 1}: {expected}" in result.output


def test_many_generated_names_decode_exactly_and_add_no_header(setup):
    import random

    rng = random.Random(11)
    alphabet = "abcXYZ019 ._-'\"\\(),:;<>@[]=?!#$%&*+/^`{|}~éëüçøßЖжΩ中😀"
    for _ in range(400):
        name = " ".join(rng.choice(alphabet) * rng.randint(1, 3) + "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
                        for _ in range(rng.randint(1, 8))).strip()
        name = " ".join(word for word in name.split(" ") if word) or "x"  # single spaces: see the test above
        env = build(setup, Contact(email="jan@example.nl", name=name, party="P", municipality="M"))
        msg = parse(env.data)
        [to] = msg["To"].addresses
        assert (to.display_name, to.addr_spec) == (name, "jan@example.nl"), env.data.split(b"\r\n\r\n")[0]
        assert set(msg.keys()) == EXPECTED_FIELDS
        assert all(len(line) <= 998 for line in env.data.split(b"\r\n\r\n")[0].split(b"\r\n"))
