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
