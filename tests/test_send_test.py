"""send-test: a test mail reaches staff only, names no contact, and says where it went."""

from __future__ import annotations

import email
import email.policy
import re
import ssl
import urllib.parse
from pathlib import Path

import pytest

from mailer import store
from mailer.contacts import import_contacts, suppression_hash
from mailer.project import Project

from .conftest import CONFIGURED_SETTINGS, ROOT
from .smtp_server import Server, make_certificate

CONTACT = "piet.geheim@victim.nl"
STAFF = "staf@zender.test-org.nl"


def import_list(tmp_path: Path, addresses: list[str]) -> None:
    path = tmp_path / "lijst.csv"
    rows = "".join(f"{a},Persoon {i},Partij {i},Gemeente {i}\n" for i, a in enumerate(addresses))
    path.write_text("email,name,party,municipality\n" + rows, encoding="utf-8")
    conn = Project.at(ROOT).connect()
    try:
        import_contacts(conn, path, default_basis="published-address")
    finally:
        conn.close()


def outbox_messages(home: Path) -> list[email.message.EmailMessage]:
    folder = home / "outbox" / "test"
    files = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]


def forms_of(address: str) -> list[str]:
    """Every way the address could stand in a message: as is, URL-encoded, any case."""
    return [address.lower(), urllib.parse.quote(address, safe="").lower(), urllib.parse.quote(address, safe="@").lower()]


@pytest.mark.parametrize("optout_url", ["", "https://zender.test-org.nl/afmelden"])
def test_a_test_mails_opt_out_names_the_test_recipient_never_the_contact(configured_home, tmp_path, run, optout_url):
    (configured_home / "settings.toml").write_text(
        CONFIGURED_SETTINGS.replace('optout_url = ""', f'optout_url = "{optout_url}"'), encoding="utf-8")
    import_list(tmp_path, [CONTACT])
    result = run("send-test", "--to", STAFF, "--mail", "2", "--contact", CONTACT)
    assert result.exit_code == 0, result.output
    [msg] = outbox_messages(configured_home)
    assert "Geachte Persoon 0," in msg.get_body(("plain",)).get_content()  # still personalised as the contact
    header = str(msg["List-Unsubscribe"])
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for where, content in (("List-Unsubscribe", header), ("text part", text), ("HTML part", html),
                           ("whole message", msg.as_string())):
        for form in forms_of(CONTACT):
            assert form not in content.lower(), f"{where} names the contact ({form})"
    # The opt-outs name the test recipient instead.
    mailto = re.search(r"<mailto:([^>]+)>", header).group(1)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(mailto).query)["body"] == [STAFF]
    footer_link = re.search(r'href="(mailto:[^"]+)"[^>]*>Meld u af', html).group(1)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(footer_link.replace("&amp;", "&")).query)["body"] == [STAFF]
    assert f"body={STAFF}" in text
    if optout_url:
        https = re.search(r"<(https://[^>]+)>", header).group(1)
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(https).query)["email"] == [STAFF]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_each_test_recipient_gets_a_message_of_their_own(configured_home, tmp_path, run):
    result = run("send-test", "--to", STAFF, "--to", "collega@zender.test-org.nl", "--mail", "1")
    assert result.exit_code == 0, result.output
    got = sorted(m["To"].addresses[0].addr_spec for m in outbox_messages(configured_home))
    assert got == ["collega@zender.test-org.nl", STAFF]
    assert "Wrote 2 test mails to the outbox" in result.output


@pytest.mark.parametrize("contact, typed", [
    ("piet@victim.nl", "piet+test@victim.nl"),
    ("piet@victim.nl", "PIET+Test@Victim.NL"),
    ("piet+nieuws@victim.nl", "piet@victim.nl"),
    ("piet+nieuws@victim.nl", "piet+anders@victim.nl"),
    ("j.de.vries@gmail.com", "jdevries@gmail.com"),
    ("j.de.vries@gmail.com", "J.DeVries+test@googlemail.com"),
    ("jdevries@googlemail.com", "j.devries@gmail.com"),
])
def test_refuses_an_address_that_reaches_a_contacts_mailbox(configured_home, tmp_path, run, contact, typed):
    import_list(tmp_path, [contact, "iemand@elders.nl"])
    result = run("send-test", "--to", STAFF, "--to", typed, "--mail", "1")
    assert result.exit_code == 1
    assert "test mails never go to contacts" in result.output
    assert "send test mails to your own address" in result.output
    assert typed not in result.output and contact not in result.output  # masked
    assert outbox_messages(configured_home) == []  # nothing half-done: not even the first recipient's


def test_plus_and_dots_are_not_refused_where_they_reach_another_mailbox(configured_home, tmp_path, run):
    import_list(tmp_path, ["piet@victim.nl", "j.de.vries@victim.nl"])
    # Outside Gmail a dot matters; a longer local part is another person.
    result = run("send-test", "--to", "jdevries@victim.nl", "--to", "pietje+x@victim.nl", "--mail", "1")
    assert result.exit_code == 0, result.output
    assert len(outbox_messages(configured_home)) == 2


def test_refuses_an_erased_address_in_any_case_and_with_a_tag(configured_home, tmp_path, run):
    import_list(tmp_path, [CONTACT])
    forgotten = run("contacts", "forget", CONTACT, "--yes")
    assert forgotten.exit_code == 0, forgotten.output
    for typed in ("PIET.GEHEIM@victim.nl", "piet.geheim+test@VICTIM.nl"):
        result = run("send-test", "--to", typed, "--mail", "1")
        assert result.exit_code == 1, result.output
        assert "is on the suppression list" in result.output
        assert "send test mails to your own address" in result.output
    assert outbox_messages(configured_home) == []


def test_refuses_any_suppressed_address_whatever_the_reason(configured_home, run):
    conn = Project.at(ROOT).connect()
    try:
        # An opt-out of someone who was never a contact (another part of the code base writes these).
        with store.transaction(conn):
            conn.execute("INSERT INTO suppressions (hash, reason, created_at) VALUES (?, 'opted out', ?)",
                         (suppression_hash(conn, "nooit@elders.nl"), store.iso(store.now_utc())))
    finally:
        conn.close()
    result = run("send-test", "--to", "Nooit+x@Elders.nl", "--mail", "1")
    assert result.exit_code == 1 and "is on the suppression list" in result.output
    assert outbox_messages(configured_home) == []


def test_the_settings_test_recipients_are_checked_too(configured_home, tmp_path, run):
    import_list(tmp_path, ["staf@zender.test-org.nl"])
    result = run("send-test", "--mail", "1")
    assert result.exit_code == 1
    assert "test.recipients in settings.toml s***@zender.test-org.nl reaches the mailbox" in result.output


def test_an_invalid_recipient_is_a_clear_error(configured_home, run):
    result = run("send-test", "--to", "geen-adres", "--mail", "1")
    assert result.exit_code == 1
    assert result.output.startswith("Error: --to: 'geen-adres' is not a usable address")


def test_without_smtp_it_says_the_mail_stayed_on_this_machine(configured_home, run):
    result = run("send-test", "--to", STAFF, "--mail", "4")
    assert result.exit_code == 0, result.output
    [path] = (configured_home / "outbox" / "test").glob("*.eml")
    assert f"Mail 4 to {STAFF}: written to {path}" in result.output
    assert (f"Wrote 1 test mail to the outbox ({configured_home / 'outbox' / 'test'}); nothing left this machine. "
            "Set CAMPAIGN_SMTP_URL to send it for real.") in result.output
    assert "sent" not in result.output.replace("Set CAMPAIGN_SMTP_URL to send", "")


def test_with_smtp_it_names_the_server_that_accepted_it_and_no_password(configured_home, run, monkeypatch, tmp_path):
    cert, key = make_certificate(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with Server(tls_context=ctx, users={"staf": "geheim-wachtwoord"}) as smtp:
        url = f"smtp://staf@127.0.0.1:{smtp.port}"
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", url)
        monkeypatch.setenv("CAMPAIGN_SMTP_PASSWORD", "geheim-wachtwoord")
        monkeypatch.setenv("CAMPAIGN_SMTP_CA_FILE", str(cert))
        result = run("send-test", "--to", STAFF, "--mail", "1")
        assert result.exit_code == 0, result.output
        assert smtp.recorder.count() == 1
    assert f"Mail 1 to {STAFF}: accepted by {url} (250 Message accepted)" in result.output
    assert f"The mail server {url} accepted 1 test mail; none counts as a delivery." in result.output
    assert "geheim-wachtwoord" not in result.output
    assert not (configured_home / "outbox" / "test").exists()
