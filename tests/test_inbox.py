"""`campaign inbox`: bounces, opt-outs, complaints, auto-replies and replies read from a mailbox.

The corpus in tests/fixtures/inbox/ was written for the project (fictional addresses) in the
formats that real mail systems send; each is classified here as a person would classify it.
"""

from __future__ import annotations

import json
import mailbox
import shutil
import sqlite3
from pathlib import Path

import pytest

from mailer import store
from mailer.inbox import OwnAddresses, classify
from mailer.message import message_id

from .conftest import CONFIGURED_SETTINGS

CORPUS = Path(__file__).parent / "fixtures" / "inbox"
DOMAIN = "zender.test-org.nl"
SETTINGS = CONFIGURED_SETTINGS.replace('optout_url = ""', 'optout_url = ""\nbounce_address = "bounces@zender.test-org.nl"')
OWN = OwnAddresses(optout="afmelden@zender.test-org.nl",
                   replies=frozenset({"campagne@zender.test-org.nl", "reacties@zender.test-org.nl",
                                      "bounces@zender.test-org.nl"}))

CONTACTS = """email;name;party;municipality
jan.bakker@wijkpartij.example.nl;Jan Bakker;Wijkpartij;Zwolle
petra.smit@dorpsbelang.example.nl;Petra Smit;Dorpsbelang;Ede
kees.visser@stadspartij.example.org;Kees Visser;Stadspartij;Utrecht
anouk.mulder@groen-ede.example.nl;Anouk Mulder;Groen Ede;Ede
lisa.dekker@lokaal.example.nl;Lisa Dekker;Lokaal;Zwolle
bas.vermeulen@samen.example.org;Bas Vermeulen;Samen;Rotterdam
emma.bos@dorpsbelang.example.nl;Emma Bos;Dorpsbelang;Ede
tom.jacobs@stembureau.example.org;Tom Jacobs;Stembureau;Almere
"""
# (mail, contact) sends the corpus answers; every contact was sent mails 1 to 4.
SENT_MAILS = (1, 2, 3, 4)

# What a person reading each message would say it is, and whom it concerns.
EXPECTED = {
    "arf-abuse-report.eml": ("complaint", "bas.vermeulen@samen.example.org"),
    "exim-non-dsn.eml": ("bounce-hard", "petra.smit@dorpsbelang.example.nl"),
    "gmail-dsn-no-original.eml": ("bounce-hard", "anouk.mulder@groen-ede.example.nl"),
    "office365-dsn-5.1.10.eml": ("bounce-hard", "kees.visser@stadspartij.example.org"),
    "ooo-afwezig-subject-only.eml": ("autoreply", "petra.smit@dorpsbelang.example.nl"),
    "ooo-english.eml": ("autoreply", "emma.bos@dorpsbelang.example.nl"),
    "ooo-exchange-nl.eml": ("autoreply", "kees.visser@stadspartij.example.org"),
    "optout-english.eml": ("optout", "bas.vermeulen@samen.example.org"),
    "optout-forwarded.eml": ("optout", "kees.visser@stadspartij.example.org"),
    "optout-mailto-with-body.eml": ("optout", "jan.bakker@wijkpartij.example.nl"),
    "optout-mailto-without-body.eml": ("optout", "lisa.dekker@lokaal.example.nl"),
    "optout-not-imported.eml": ("optout", "nieuw.raadslid@burgerbelang.example.nl"),
    "other-newsletter.eml": ("other", "nieuws@gemeentenet.example.com"),
    "postfix-delayed.eml": ("delay", "emma.bos@dorpsbelang.example.nl"),
    "postfix-dsn-5.1.1.eml": ("bounce-hard", "jan.bakker@wijkpartij.example.nl"),
    "postfix-mailbox-full.eml": ("bounce-soft", "lisa.dekker@lokaal.example.nl"),
    "qmail-non-dsn.eml": ("bounce-hard", "tom.jacobs@stembureau.example.org"),
    "reply-in-thread.eml": ("reply", "emma.bos@dorpsbelang.example.nl"),
    "reply-new-thread.eml": ("reply", "petra.smit@dorpsbelang.example.nl"),
}


@pytest.fixture
def inbox_home(home: Path, tmp_path: Path, run) -> Path:
    """A configured home with the corpus's contacts imported and mails 1-4 sent to each."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    csv_path = tmp_path / "partijen.csv"
    csv_path.write_text(CONTACTS, encoding="utf-8")
    assert run("contacts", "import", str(csv_path)).exit_code == 0
    conn = store.connect(home)
    with store.transaction(conn):
        for row in conn.execute("SELECT id, email FROM contacts").fetchall():
            for mail in SENT_MAILS:
                conn.execute("INSERT INTO ledger (campaign, mail, contact_id, state, message_id, updated_at, sent_at)"
                             " VALUES ('gr2026', ?, ?, 'sent', ?, ?, ?)",
                             (mail, row["id"], message_id("gr2026", mail, row["email"], DOMAIN),
                              f"2026-01-0{mail}T09:00:00Z", f"2026-01-0{mail}T09:00:00Z"))
    conn.close()
    return home


def statuses(home: Path) -> dict[str, str]:
    conn = sqlite3.connect(store.db_path(home))
    try:
        return dict(conn.execute("SELECT email, status FROM contacts").fetchall())
    finally:
        conn.close()


def inbox_json(run, *args: str) -> list[dict]:
    result = run("inbox", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_message_of_the_corpus_is_classified_as_a_person_would(name):
    kind, _ = EXPECTED[name]
    found = classify((CORPUS / name).read_bytes(), own=OWN)
    # 'reply-new-thread' is a contact writing without replying: a reply once the database says
    # she is a contact (checked in the next test); on its own it is 'other'.
    assert found.kind == (kind if name != "reply-new-thread.eml" else "other")


def test_the_corpus_read_from_a_folder_of_eml_files_changes_exactly_what_it_should(inbox_home, run):
    out = inbox_json(run, "--from", str(CORPUS))
    by_file = {Path(o["source"]).name: o for o in out}
    assert {name: (o["kind"], o["contact"]) for name, o in by_file.items()} == EXPECTED
    # Each bounce tied to the exact send by the Message-ID returned in it; the Gmail one by its recipient.
    assert (by_file["postfix-dsn-5.1.1.eml"]["campaign"], by_file["postfix-dsn-5.1.1.eml"]["mail"]) == ("gr2026", 2)
    assert by_file["exim-non-dsn.eml"]["mail"] == 3
    assert by_file["arf-abuse-report.eml"]["mail"] == 4
    assert by_file["gmail-dsn-no-original.eml"]["mail"] == 4  # fallback: the latest send to her
    reply = by_file["reply-in-thread.eml"]
    assert (reply["party"], reply["municipality"], reply["mail"]) == ("Dorpsbelang", "Ede", 2)
    assert reply["subject"] == "Re: Wie helpt er als de schulden zich opstapelen?"
    assert statuses(inbox_home) == {
        "jan.bakker@wijkpartij.example.nl": "unsubscribed",  # opted out (and bounced: the opt-out stays)
        "petra.smit@dorpsbelang.example.nl": "bounced",
        "kees.visser@stadspartij.example.org": "unsubscribed",  # bounced, then opted out by a forward
        "anouk.mulder@groen-ede.example.nl": "bounced",
        "lisa.dekker@lokaal.example.nl": "unsubscribed",  # one soft bounce, then an opt-out
        "bas.vermeulen@samen.example.org": "unsubscribed",  # abuse report
        "emma.bos@dorpsbelang.example.nl": "active",  # delay, out of office and a reply change nothing
        "tom.jacobs@stembureau.example.org": "bounced",
    }
    conn = store.connect(inbox_home)
    reason = conn.execute("SELECT status_reason, status_at FROM contacts WHERE email LIKE 'lisa%'").fetchone()
    assert reason[0] == "per mail" and reason[1]
    # A bounced contact's unsent mails are suppressed: no further mail.
    conn.execute("INSERT INTO ledger (campaign, mail, contact_id, message_id, updated_at) SELECT 'gr2026', 5, id,"
                 " 'x', 'now' FROM contacts WHERE email LIKE 'tom%'")
    conn.close()

    # Read again: nothing changes, every message is recognised.
    again = inbox_json(run, "--from", str(CORPUS))
    assert {o["action"] for o in again} == {"already handled"}
    assert statuses(inbox_home)["emma.bos@dorpsbelang.example.nl"] == "active"

    # The address that was never imported is refused by a later import.
    later = inbox_home.parent / "later.csv"
    later.write_text("email;party;municipality\nnieuw.raadslid@burgerbelang.example.nl;Burgerbelang;Almere\n",
                     encoding="utf-8")
    result = run("contacts", "import", str(later))
    assert "opted out earlier" in result.output
    assert "nieuw.raadslid@burgerbelang.example.nl" not in statuses(inbox_home)


def test_the_table_names_the_counts_and_where_replies_wait(inbox_home, run):
    result = run("inbox", "--from", str(CORPUS))
    assert result.exit_code == 0, result.output
    assert "Read 19 message(s) from 19 .eml file(s)" in result.output
    assert "5 bounce-hard, 1 bounce-soft, 1 delay, 5 optout, 1 complaint, 3 autoreply, 2 reply, 1 other" in result.output
    assert "stay unread there" in result.output


def test_a_dry_run_shows_what_would_change_and_changes_nothing(inbox_home, run):
    before = statuses(inbox_home)
    out = inbox_json(run, "--from", str(CORPUS), "--dry-run")
    actions = {Path(o["source"]).name: o["action"] for o in out}
    assert actions["exim-non-dsn.eml"] == "would be marked bounced; no further mail"
    assert actions["optout-not-imported.eml"] == "would be put on the suppression list (not imported)"
    assert statuses(inbox_home) == before
    conn = store.connect(inbox_home)
    assert conn.execute("SELECT COUNT(*) FROM inbox_seen").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0] == 0
    conn.close()
    # And the real run afterwards still applies everything.
    assert {o["action"] for o in inbox_json(run, "--from", str(CORPUS))} != {"already handled"}


def test_mbox_and_maildir_are_read_like_the_folder(inbox_home, run, tmp_path):
    names = sorted(EXPECTED)
    box = mailbox.mbox(tmp_path / "export.mbox")
    for name in names[:10]:
        box.add((CORPUS / name).read_bytes())
    box.close()
    md = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for name in names[10:]:
        md.add((CORPUS / name).read_bytes())
    md.close()
    first = inbox_json(run, "--from", str(tmp_path / "export.mbox"))
    second = inbox_json(run, "--from", str(tmp_path / "Maildir"))
    assert [(o["kind"], o["contact"]) for o in first + second] == [EXPECTED[n] for n in names[:10]] + sorted(
        (EXPECTED[n] for n in names[10:]), key=lambda e: [(o["kind"], o["contact"]) for o in second].index(e))
    assert statuses(inbox_home)["petra.smit@dorpsbelang.example.nl"] == "bounced"


def test_soft_bounces_on_three_mails_in_a_row_make_a_contact_bounced(inbox_home, run, tmp_path):
    full = (CORPUS / "postfix-mailbox-full.eml").read_bytes()
    lisa = "lisa.dekker@lokaal.example.nl"
    folder = tmp_path / "soft"
    folder.mkdir()
    for mail in (2, 3):
        old = message_id("gr2026", 4, lisa, DOMAIN).encode()
        new = message_id("gr2026", mail, lisa, DOMAIN).encode()
        (folder / f"{mail}.eml").write_bytes(full.replace(old, new).replace(b"Message-Id: <2026", f"Message-Id: <{mail}".encode()))
    out = inbox_json(run, "--from", str(folder))
    assert [o["action"] for o in out] == ["counted: 1 of 3 soft bounces in a row", "counted: 2 of 3 soft bounces in a row"]
    assert statuses(inbox_home)[lisa] == "active"
    out = inbox_json(run, "--from", str(CORPUS / "postfix-mailbox-full.eml"))  # mail 4: the third in a row
    assert out[0]["action"] == "marked bounced: soft bounces on 3 mails in a row"
    assert statuses(inbox_home)[lisa] == "bounced"


def test_status_and_contacts_show_tell_what_came_back(inbox_home, run):
    conn = store.connect(inbox_home)
    conn.execute("INSERT INTO plans (campaign, options, transport, created_at) VALUES ('gr2026',"
                 " '{\"election_day\": \"2026-03-18\"}', 'outbox', 'x')")
    for mail in (1, 2, 3, 4):
        conn.execute("INSERT INTO schedule (campaign, mail, theme, due_at, state, approved_fingerprint)"
                     " VALUES ('gr2026', ?, 'thema', '2026-01-0' || ? || 'T09:00:00Z', 'done', 'x')", (mail, mail))
    conn.close()
    inbox_json(run, "--from", str(CORPUS))
    report = json.loads(run("status", "--json").output)
    came_back = {m["number"]: (m["bounced"], m["opted_out"]) for m in report["mails"]}
    # Bounced: Petra on mail 3 (by its Message-ID); Anouk and Tom on mail 4 (no Message-ID returned:
    # their latest send). Jan and Kees bounced on mail 2 but opted out: they count as opted out,
    # with Lisa (latest send) and Bas (abuse report about mail 4). The address never imported
    # answered no send of ours.
    assert came_back == {1: (0, 0), 2: (0, 0), 3: (1, 0), 4: (2, 4)}
    assert "bounced  opted out" in run("status").output
    shown = run("contacts", "show", "emma.bos@dorpsbelang.example.nl")
    assert "Came back by mail" in shown.output and "reply" in shown.output
    assert "Re: Wie helpt er als de schulden zich opstapelen?" in shown.output


def test_a_message_read_again_after_its_record_was_lost_changes_nothing(inbox_home, run):
    # A crash after a change was committed but before the message was recorded as handled.
    inbox_json(run, "--from", str(CORPUS / "exim-non-dsn.eml"))
    conn = store.connect(inbox_home)
    when = conn.execute("SELECT status_at, status_reason FROM contacts WHERE email LIKE 'petra%'").fetchone()
    conn.execute("DELETE FROM inbox_seen")
    conn.execute("DELETE FROM inbox_events")
    conn.close()
    out = inbox_json(run, "--from", str(CORPUS / "exim-non-dsn.eml"))
    assert out[0]["action"] == "none: already bounced"
    conn = store.connect(inbox_home)
    assert conn.execute("SELECT status_at, status_reason FROM contacts WHERE email LIKE 'petra%'").fetchone() == when
    from mailer.inbox import counts_per_mail

    assert counts_per_mail(conn, "gr2026") == {3: {"bounced": 1, "opted_out": 0}}
    conn.close()


def test_forget_deletes_what_the_inbox_stored(inbox_home, run):
    inbox_json(run, "--from", str(CORPUS))
    conn = store.connect(inbox_home)
    emma = conn.execute("SELECT id FROM contacts WHERE email LIKE 'emma%'").fetchone()[0]
    assert conn.execute("SELECT COUNT(*) FROM inbox_events WHERE contact_id = ?", (emma,)).fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM inbox_events WHERE hash IS NOT NULL").fetchone()[0] == 1
    conn.close()
    assert run("contacts", "forget", "emma.bos@dorpsbelang.example.nl", "--yes").exit_code == 0
    assert run("contacts", "forget", "nieuw.raadslid@burgerbelang.example.nl", "--yes",
               "--not-imported").exit_code == 0
    conn = store.connect(inbox_home)
    assert conn.execute("SELECT COUNT(*) FROM inbox_events WHERE contact_id = ?", (emma,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM inbox_events WHERE hash IS NOT NULL").fetchone()[0] == 0
    conn.close()
    raw = store.db_path(inbox_home).read_bytes()
    assert b"Re: Wie helpt er" not in raw  # the reply's subject is not left in free pages either


def test_a_broken_message_is_other_and_the_rest_is_applied(inbox_home, run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a-broken.eml").write_bytes(b"Content-Type: multipart/report; report-type=delivery-status; "
                                          b"boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n"
                                          b"Content-Transfer-Encoding: base64\r\n\r\n!!!\xff\xfe\r\n--x")
    shutil.copy(CORPUS / "exim-non-dsn.eml", folder / "b.eml")
    out = inbox_json(run, "--from", str(folder))
    assert [o["kind"] for o in out] == ["other", "bounce-hard"]
    assert statuses(inbox_home)["petra.smit@dorpsbelang.example.nl"] == "bounced"


@pytest.mark.parametrize("make, says", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "is no Maildir (no cur/ and new/ folders) and holds no .eml files"),
    (lambda p: ((p / "x.bin").write_bytes(b"\x00\x01binary"), p / "x.bin")[1], "is no mbox file"),
])
def test_a_mailbox_that_cannot_be_read_is_a_sentence_and_nothing_changes(inbox_home, run, tmp_path, make, says):
    result = run("inbox", "--from", str(make(tmp_path)))
    assert result.exit_code in (1, 2)
    assert says in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("url, says", [
    ("", "no mailbox to read: set CAMPAIGN_IMAP_URL"),
    ("pop3://u@host/INBOX", "got scheme 'pop3'"),
    ("imaps://u:secret@host/INBOX", "put it in CAMPAIGN_IMAP_PASSWORD"),
    ("imaps://host/INBOX", "names no user"),
])
def test_a_wrong_imap_url_is_a_sentence(inbox_home, run, monkeypatch, url, says):
    monkeypatch.setenv("CAMPAIGN_IMAP_URL", url)
    result = run("inbox")
    assert result.exit_code == 1
    assert says in result.output and "secret" not in result.output


def test_the_envelope_sender_is_the_bounce_address(inbox_home):
    from mailer.project import Project
    from mailer.settings import load_deployment_settings

    sender = load_deployment_settings(inbox_home).sender
    assert sender.envelope_sender == "bounces@zender.test-org.nl"
    from mailer.message import build_message
    from mailer.personalise import personalise
    from mailer.render import Renderer
    from mailer.contacts import Contact
    import datetime as dt

    project = Project.at(Path(__file__).resolve().parent.parent)
    campaign = project.load_campaign()
    rendered = Renderer(templates=project.templates, campaign=campaign,
                        deployment=load_deployment_settings(inbox_home)).render(campaign.mail(1))
    contact = Contact(email="jan.bakker@wijkpartij.example.nl", party="Wijkpartij", municipality="Zwolle", name="Jan")
    envelope = build_message(personalise(rendered, contact, settings=campaign.settings), sender=sender,
                             campaign=campaign.settings, now=dt.datetime(2026, 1, 6, tzinfo=dt.timezone.utc))
    assert envelope.sender == "bounces@zender.test-org.nl"
    assert b"From: Leger des Heils <campagne@zender.test-org.nl>" in envelope.data


def test_the_worker_sends_every_message_from_the_bounce_address_over_one_connection(home, tmp_path, monkeypatch):
    from .smtp_server import Recorder, Server
    from .test_deliver import MAIL1, prepare, run_worker

    class Envelopes(Recorder):
        async def handle_DATA(self, server, session, envelope):
            self.seen.append((id(session), envelope.mail_from))
            return await super().handle_DATA(server, session, envelope)

    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    with Server() as smtp:
        smtp.recorder.__class__ = Envelopes
        smtp.recorder.seen = []
        project = prepare(tmp_path, monkeypatch, [f"p{i}@example.nl" for i in range(4)], smtp_url=smtp.url)
        assert run_worker(project, MAIL1).sent == 4
        seen = list(smtp.recorder.seen)
    assert [sender for _, sender in seen] == ["bounces@zender.test-org.nl"] * 4
    # The next envelope, pipelined with a message's data, names the same sender: no reconnects.
    assert len({session for session, _ in seen}) == 1
