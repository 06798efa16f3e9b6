"""OAuth2 (SASL XOAUTH2) against real parts: an SMTP server on 127.0.0.1 that accepts XOAUTH2
only and checks each token over HTTPS with a local token service (tests/token_server.py), which
answers Microsoft's client-credentials grant with short-lived tokens."""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from mailer.deliver import Worker
from mailer.errors import DeliveryError, MailServerConfigError, SettingsError, TokenError
from mailer.oauth import CommandTokens, MicrosoftClientCredentials, token_provider
from mailer.transport import transport_config

from .smtp_server import Server, make_certificate
from .test_deliver import MAIL1, MAIL2, ledger, prepare, run_worker
from .token_server import CLIENT_SECRET, MAILBOX, TokenService

MAILBOX_Q = urllib.parse.quote(MAILBOX)


@pytest.fixture
def idp(tmp_path):
    folder = tmp_path / "idp"
    folder.mkdir()
    with TokenService(folder, lifetime=3600) as service:
        yield service


@pytest.fixture
def oauth_smtp(tmp_path, idp):
    """An SMTP server with STARTTLS that takes XOAUTH2 only, checking tokens with ``idp``."""
    folder = tmp_path / "smtp-cert"
    folder.mkdir()
    cert, key = make_certificate(folder)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with Server(tls_context=ctx, oauth=idp.check_over_https) as server:
        server.ca = str(cert)
        yield server


def smtp_env(server, idp, **extra: str) -> dict[str, str]:
    return {"CAMPAIGN_SMTP_URL": f"smtp://{MAILBOX_Q}@127.0.0.1:{server.port}?auth=xoauth2",
            "CAMPAIGN_SMTP_CA_FILE": server.ca, **idp.env(), **extra}


def token_command(tmp_path: Path, idp: TokenService, *, fixed: str = "") -> str:
    """A token helper as staff would have one: it asks the token service and prints the token."""
    script = tmp_path / "get-token.py"
    script.write_text(
        "import json, ssl, sys, urllib.parse, urllib.request\n"
        f"fixed = {fixed!r}\n"
        "if fixed:\n    print(fixed); sys.exit(0)\n"
        f"ctx = ssl.create_default_context(cafile={str(idp.cert)!r})\n"
        "data = urllib.parse.urlencode({'grant_type': 'client_credentials', 'client_id': sys.argv[1],"
        " 'client_secret': sys.argv[2], 'scope': 'https://outlook.office365.com/.default'}).encode()\n"
        f"url = {idp.authority!r} + '/contoso-test-tenant/oauth2/v2.0/token'\n"
        "print(json.loads(urllib.request.urlopen(url, data, context=ctx).read())['access_token'])\n",
        encoding="utf-8")
    from .token_server import CLIENT_ID

    return f"{sys.executable} {script} {CLIENT_ID} {CLIENT_SECRET}"


def test_the_worker_sends_with_the_microsoft_client_credentials_grant(configured_home, tmp_path, monkeypatch, idp,
                                                                      oauth_smtp):
    # As the README has staff do it: tenant and client id in settings.toml, the secret in the environment.
    settings = configured_home / "settings.toml"
    given = idp.env()
    settings.write_text(settings.read_text(encoding="utf-8") + f'\n[oauth]\ntenant = "{given["CAMPAIGN_OAUTH_TENANT"]}"\n'
                        f'client_id = "{given["CAMPAIGN_OAUTH_CLIENT_ID"]}"\nauthority = "{idp.authority}"\n',
                        encoding="utf-8")
    env = {"CAMPAIGN_SMTP_URL": f"smtp://{MAILBOX_Q}@127.0.0.1:{oauth_smtp.port}?auth=xoauth2",
           "CAMPAIGN_SMTP_CA_FILE": oauth_smtp.ca, "CAMPAIGN_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
           "CAMPAIGN_OAUTH_CA_FILE": given["CAMPAIGN_OAUTH_CA_FILE"]}
    project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=env["CAMPAIGN_SMTP_URL"])
    stats = run_worker(project, MAIL1, env=env)
    assert stats.sent == 2 and oauth_smtp.recorder.count() == 2
    assert oauth_smtp.recorder.logins == [MAILBOX]
    assert len(idp.issued) == 1  # one grant, kept in memory for the connection


def test_a_worker_that_runs_longer_than_a_token_lives_renews_it(configured_home, tmp_path, monkeypatch, idp,
                                                                oauth_smtp):
    idp.lifetime = 2  # seconds: the worker's second mail comes after the first token expired
    env = smtp_env(oauth_smtp, idp)
    project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=env["CAMPAIGN_SMTP_URL"])
    moment = [MAIL1]
    made = threading.Event()
    workers: list[Worker] = []

    def work() -> None:
        # SQLite connections belong to the thread that made them: the worker is made in its own.
        workers.append(Worker(project, clock=lambda: moment[0], rate_per_minute=1_000_000, env=env))
        made.set()
        workers[0].run(once=False)

    thread = threading.Thread(target=work)
    thread.start()
    made.wait(30)
    worker = workers[0]
    try:
        for _ in range(400):
            if oauth_smtp.recorder.count() == 2:
                break
            time.sleep(0.05)
        assert oauth_smtp.recorder.count() == 2
        first = idp.issued[-1]
        time.sleep(2.5)  # the first token is now expired at the token service
        assert not idp.introspect(first)["active"]
        moment[0] = MAIL2  # a week later: mail 2 is due, on a new connection
        worker.wake.set()
        for _ in range(400):
            if oauth_smtp.recorder.count() == 4:
                break
            time.sleep(0.05)
    finally:
        worker.stop.set()
        worker.wake.set()
        thread.join(30)
    assert oauth_smtp.recorder.count() == 4
    assert len(idp.issued) == 2 and oauth_smtp.recorder.refused == 0
    assert oauth_smtp.recorder.logins == [MAILBOX, MAILBOX]


def test_the_cache_renews_a_token_before_it_expires(idp):
    now = [1000.0]
    idp.lifetime = 3600
    provider = MicrosoftClientCredentials(tenant="contoso-test-tenant", client_id=idp.env()["CAMPAIGN_OAUTH_CLIENT_ID"],
                                          secret=CLIENT_SECRET, authority=idp.authority, ca_file=str(idp.cert),
                                          clock=lambda: now[0])
    first = provider.token()
    now[0] += 3000  # 10 minutes of life left: kept
    assert provider.token() == first and len(idp.issued) == 1
    now[0] += 400  # under 5 minutes left: renewed before it ends
    assert provider.token() != first
    assert len(idp.issued) == 2


def test_a_token_command_supplies_the_token(configured_home, tmp_path, monkeypatch, idp, oauth_smtp):
    env = {"CAMPAIGN_SMTP_URL": f"smtp://{MAILBOX_Q}@127.0.0.1:{oauth_smtp.port}?auth=xoauth2",
           "CAMPAIGN_SMTP_CA_FILE": oauth_smtp.ca, "CAMPAIGN_OAUTH_TOKEN_COMMAND": token_command(tmp_path, idp)}
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=env["CAMPAIGN_SMTP_URL"])
    assert run_worker(project, MAIL1, env=env).sent == 1
    assert oauth_smtp.recorder.logins == [MAILBOX]


def test_a_revoked_token_stops_the_worker_with_a_clear_error_and_bounces_nobody(configured_home, tmp_path, monkeypatch,
                                                                                 idp, oauth_smtp):
    helper = token_command(tmp_path, idp)
    env = {"CAMPAIGN_SMTP_URL": f"smtp://{MAILBOX_Q}@127.0.0.1:{oauth_smtp.port}?auth=xoauth2",
           "CAMPAIGN_SMTP_CA_FILE": oauth_smtp.ca, "CAMPAIGN_OAUTH_TOKEN_COMMAND": helper}
    project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=env["CAMPAIGN_SMTP_URL"])
    # The helper hands out a token that was revoked (the app's consent was withdrawn).
    revoked = CommandTokens(helper).token()
    idp.revoke_all()
    env["CAMPAIGN_OAUTH_TOKEN_COMMAND"] = token_command(tmp_path / "..", idp, fixed=revoked)
    with pytest.raises(MailServerConfigError) as caught:
        run_worker(project, MAIL1, env=env)
    message = str(caught.value)
    assert "OAuth2 login refused (535 5.7.3" in message and "SMTP.SendAsApp" in message
    assert "nobody was marked bounced" in message
    assert revoked not in message and CLIENT_SECRET not in message
    assert oauth_smtp.recorder.refused == 2  # asked the helper again once before giving up
    assert oauth_smtp.recorder.count() == 0
    assert ledger(project) == {"pending": 2}


def test_a_withdrawn_app_secret_gives_the_token_services_reason_and_never_the_secret(configured_home, tmp_path,
                                                                                  monkeypatch, idp, oauth_smtp):
    env = smtp_env(oauth_smtp, idp)
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=env["CAMPAIGN_SMTP_URL"])
    idp.disabled = True
    with pytest.raises(TokenError) as caught:
        run_worker(project, MAIL1, env=env)
    message = str(caught.value)
    assert "invalid_client" in message and "AADSTS7000215" in message and "CAMPAIGN_OAUTH_CLIENT_SECRET" in message
    assert CLIENT_SECRET not in message and CLIENT_SECRET not in repr(caught.value.__cause__)
    assert ledger(project) == {"pending": 1}


@pytest.mark.parametrize("answer, says", [
    ("550 5.7.30 Basic authentication is not supported for Client Submission", "no longer accepts a password login"),
    ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
     "SMTP AUTH is switched off"),
])
def test_exchange_refusing_password_logins_is_a_configuration_error(configured_home, tmp_path, monkeypatch, answer,
                                                                     says):
    cert, key = make_certificate(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with Server(tls_context=ctx, auth_refusal=answer) as server:
        url = f"smtp://{MAILBOX_Q}@127.0.0.1:{server.port}"
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=url)
        env = {"CAMPAIGN_SMTP_URL": url, "CAMPAIGN_SMTP_PASSWORD": "pw-Never-Shown", "CAMPAIGN_SMTP_CA_FILE": str(cert)}
        with pytest.raises(MailServerConfigError, match=says) as caught:
            run_worker(project, MAIL1, env=env)
    assert "pw-Never-Shown" not in str(caught.value)
    assert ledger(project) == {"pending": 2}


@pytest.mark.parametrize("answer, says", [
    ("530 5.7.57 Client not authenticated to send mail", "login refused"),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender", "SendAs"),
])
def test_a_submission_refused_for_the_account_stops_before_the_breaker_counts(configured_home, tmp_path, monkeypatch,
                                                                              answer, says):
    with Server() as server:
        server.recorder.refuse_all = answer
        project = prepare(tmp_path, monkeypatch, [f"p{i}@example.nl" for i in range(5)], smtp_url=server.url)
        with pytest.raises(MailServerConfigError, match=f"{says}.*nobody was marked bounced"):
            run_worker(project, MAIL1, env={"CAMPAIGN_SMTP_URL": server.url}, failure_threshold=3)
    assert ledger(project) == {"pending": 5}
    conn = project.connect()
    try:
        assert conn.execute("SELECT SUM(attempts) FROM ledger").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM contacts WHERE status != 'active'").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_throttling_answer_slows_the_worker_down_without_using_an_attempt(configured_home, tmp_path, monkeypatch):
    with Server() as server:
        server.recorder.script["b@example.nl"].append("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl", "c@example.nl"], smtp_url=server.url)
        pauses: list[float] = []

        def sleep(seconds: float) -> bool:
            pauses.append(seconds)
            return False

        stats = run_worker(project, MAIL1, env={"CAMPAIGN_SMTP_URL": server.url}, sleep=sleep)
        assert stats.throttled == 1 and stats.sent == 2 and stats.deferred == 0 and stats.failed == 0
        assert any(p >= 55 for p in pauses)  # it paused before the next message
        conn = project.connect()
        try:
            row = conn.execute("SELECT l.state, l.attempts FROM ledger l JOIN contacts c ON c.id = l.contact_id"
                               " WHERE c.email = 'b@example.nl'").fetchone()
            assert tuple(row) == ("pending", 0)
        finally:
            conn.close()
        assert run_worker(project, MAIL1 + dt.timedelta(minutes=5), env={"CAMPAIGN_SMTP_URL": server.url}).sent == 1
        assert server.recorder.count() == 3


def test_the_daily_cap_spreads_a_mail_over_days_in_the_worker(configured_home, tmp_path, monkeypatch):
    settings = configured_home / "settings.toml"
    settings.write_text(settings.read_text(encoding="utf-8") + "\n[delivery]\nmax_per_day = 3\n", encoding="utf-8")
    with Server() as server:
        env = {"CAMPAIGN_SMTP_URL": server.url}
        project = prepare(tmp_path, monkeypatch, [f"p{i}@example.nl" for i in range(5)], smtp_url=server.url)
        first = run_worker(project, MAIL1, env=env)
        assert first.sent == 3 and server.recorder.count() == 3
        assert first.capped_until == MAIL1.astimezone(dt.timezone.utc) + dt.timedelta(hours=24)
        assert run_worker(project, MAIL1 + dt.timedelta(hours=5), env=env).sent == 0  # same day: still capped
        assert ledger(project) == {"sent": 3, "pending": 2}
        assert run_worker(project, MAIL1 + dt.timedelta(hours=24), env=env).sent == 2
        assert server.recorder.count() == 5


def test_starttls_is_required_for_a_server_that_is_not_on_this_machine(configured_home, tmp_path, monkeypatch):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            address = probe.getsockname()[0]
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    with Server(host=address) as server:  # no STARTTLS offered (or a man in the middle removed it)
        project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=server.url)
        with pytest.raises(DeliveryError, match="does not offer STARTTLS.*smtps://") as caught:
            run_worker(project, MAIL1, env={"CAMPAIGN_SMTP_URL": server.url})
        assert "plain text" in str(caught.value)
        assert server.recorder.count() == 0
    assert ledger(project) == {"pending": 1}


def test_xoauth2_needs_a_token_source_and_a_mailbox(monkeypatch):
    with pytest.raises(DeliveryError, match="name it in the URL"):
        transport_config({"CAMPAIGN_SMTP_URL": "smtp://smtp.office365.com:587?auth=xoauth2"})
    with pytest.raises(DeliveryError, match="unknown option 'foo'"):
        transport_config({"CAMPAIGN_SMTP_URL": "smtp://a@smtp.office365.com:587?foo=1"})
    config = transport_config({"CAMPAIGN_SMTP_URL": "smtp://a%40b.nl@smtp.office365.com:587", "CAMPAIGN_SMTP_AUTH": "XOAUTH2"})
    assert config.auth == "xoauth2" and config.label == "smtp://a%40b.nl@smtp.office365.com:587"
    with pytest.raises(SettingsError, match="CAMPAIGN_OAUTH_TOKEN_COMMAND"):
        token_provider({})
    with pytest.raises(SettingsError, match="CAMPAIGN_OAUTH_CLIENT_SECRET"):
        token_provider({"CAMPAIGN_OAUTH_TENANT": "t", "CAMPAIGN_OAUTH_CLIENT_ID": "c"})


def test_a_failing_token_command_says_so_without_its_output(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('secret-on-stderr', file=sys.stderr)\nsys.exit(3)\n", encoding="utf-8")
    with pytest.raises(TokenError, match="exit status 3") as caught:
        CommandTokens(f"{sys.executable} {script}").token()
    assert "secret-on-stderr" not in str(caught.value)
    with pytest.raises(TokenError, match="was not found"):
        CommandTokens("/nonexistent/helper").token()


def test_tokens_and_secrets_never_reach_output_logs_or_status(configured_home, tmp_path, monkeypatch, idp, oauth_smtp,
                                                              caplog, run):
    caplog.set_level(logging.DEBUG)
    env = smtp_env(oauth_smtp, idp)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=env["CAMPAIGN_SMTP_URL"])
    root = project.root
    assert run_worker(project, MAIL1, env=env).sent == 1
    sent = run("send-test", "--to", "staf@zender.test-org.nl", "--mail", "1", root=root)
    assert sent.exit_code == 0, sent.output
    assert "accepted 1 test mail" in sent.output
    shown = run("status", "--json", root=root).output + run("status", root=root).output
    idp.disabled = True
    idp.revoke_all()
    refused = run("send-test", "--to", "staf@zender.test-org.nl", "--mail", "1", root=root)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "invalid_client" in refused.output
    everything = sent.output + shown + refused.output + caplog.text
    assert idp.issued
    for secret in [CLIENT_SECRET, *idp.issued]:
        assert secret not in everything
    json.loads(run("status", "--json", root=root).output)
