"""XOAUTH2 for IMAP against a real Dovecot whose oauth2 passdb checks every token with the local
token service (tests/token_server.py): what ``campaign inbox`` logs in with."""

from __future__ import annotations

import imaplib
import ssl
import sys
import time

import pytest

from mailer.errors import MailServerConfigError
from mailer.oauth import CommandTokens, imap_authenticate, token_provider

from .conftest import require_tool
from .imap_server import Dovecot
from .test_inbox import inbox_home  # noqa: F401  (a fixture)
from .token_server import CLIENT_SECRET, MAILBOX, TokenService


@pytest.fixture
def idp(tmp_path):
    folder = tmp_path / "idp"
    folder.mkdir()
    with TokenService(folder) as service:
        yield service


@pytest.fixture
def dovecot(tmp_path, idp):
    require_tool("dovecot")
    with Dovecot(tmp_path, introspection_url=idp.introspection_url, ca_file=idp.cert) as server:
        yield server


def connect(server: Dovecot) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.port)
    imap.starttls(ssl.create_default_context(cafile=str(server.cert)))
    return imap


def test_imap_login_with_the_microsoft_app_registration_renews_an_expired_token(idp, dovecot):
    idp.lifetime = 2
    provider = token_provider(idp.env())
    imap = connect(dovecot)
    imap_authenticate(imap, MAILBOX, provider)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    time.sleep(2.5)  # the first token has expired at the token service
    assert not idp.introspect(idp.issued[0])["active"]
    imap = connect(dovecot)
    imap_authenticate(imap, MAILBOX, provider)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    assert len(idp.issued) == 2
    assert dovecot.log_text().count(f"Login: user=<{MAILBOX}>, method=XOAUTH2") == 2


def test_a_revoked_imap_token_is_a_clear_error_without_the_token(tmp_path, idp, dovecot):
    good = token_provider(idp.env()).token()
    idp.revoke_all()
    script = tmp_path / "print-token.py"
    script.write_text(f"print({good!r})\n", encoding="utf-8")
    imap = connect(dovecot)
    with pytest.raises(MailServerConfigError, match="IMAP.AccessAsApp") as caught:
        imap_authenticate(imap, MAILBOX, CommandTokens(f"{sys.executable} {script}"))
    imap.logout()
    assert good not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    assert "Login: user=" not in dovecot.log_text()


def test_campaign_inbox_logs_in_with_the_app_registration_and_never_shows_the_secret(inbox_home, run, idp, dovecot,
                                                                                    monkeypatch):
    for key, value in idp.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CAMPAIGN_IMAP_URL", f"imap://{MAILBOX.replace('@', '%40')}@127.0.0.1:{dovecot.port}/INBOX"
                                            "?auth=xoauth2")
    monkeypatch.delenv("CAMPAIGN_IMAP_PASSWORD", raising=False)
    monkeypatch.setenv("CAMPAIGN_IMAP_CA_FILE", str(dovecot.cert))
    result = run("inbox")
    assert result.exit_code == 0, result.output
    assert f"Login: user=<{MAILBOX}>, method=XOAUTH2" in dovecot.log_text()
    idp.revoke_all()
    idp.disabled = True  # the app's secret was withdrawn: no new token either
    refused = run("inbox")
    assert refused.exit_code == 1 and "invalid_client" in refused.output and "Traceback" not in refused.output
    for secret in [CLIENT_SECRET, *idp.issued]:
        assert secret not in result.output + refused.output


def test_the_imap_url_chooses_xoauth2():
    from mailer.inbox import imap_config

    assert imap_config({"CAMPAIGN_IMAP_URL": "imaps://a%40b.nl@outlook.office365.com/INBOX?auth=xoauth2"}).auth == "xoauth2"
    assert imap_config({"CAMPAIGN_IMAP_URL": "imaps://a%40b.nl;AUTH=XOAUTH2@outlook.office365.com/"}).auth == "xoauth2"
    config = imap_config({"CAMPAIGN_IMAP_URL": "imaps://a%40b.nl@outlook.office365.com/", "CAMPAIGN_IMAP_AUTH": "xoauth2"})
    assert config.auth == "xoauth2" and config.user == "a@b.nl"
    assert imap_config({"CAMPAIGN_IMAP_URL": "imaps://a@h/"}).auth == "password"
