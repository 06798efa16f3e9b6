"""Delivery through a real SMTP server on 127.0.0.1: what it receives is read back."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer import store
from mailer.contacts import import_contacts, set_status
from mailer.deliver import Worker, WorkerLock
from mailer.errors import DeliveryError, StateError
from mailer.project import Project
from mailer.schedule import approve, cancel, retry, set_paused, status
from mailer.service import fingerprints, plan_campaign, schedule_campaign

from .conftest import ROOT, copy_project, for_election
from .smtp_server import Server, make_certificate

AMS = ZoneInfo("Europe/Amsterdam")
PLANNED_AT = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
ELECTION = dt.date(2027, 4, 14)
MAIL1 = dt.datetime(2027, 2, 3, 9, 30, tzinfo=AMS)  # mail 1 is due at 09:00 that day
MAIL2 = dt.datetime(2027, 2, 10, 9, 30, tzinfo=AMS)


def contacts_csv(folder: Path, addresses: list[str], name: str = "lijst.csv") -> Path:
    path = folder / name
    rows = "".join(f"{a},Persoon {i},Partij {i % 7},Gemeente {i % 11}\n" for i, a in enumerate(addresses))
    path.write_text("email,name,party,municipality\n" + rows, encoding="utf-8")
    return path


def prepare(tmp_path: Path, monkeypatch, addresses: list[str], *, smtp_url: str | None, root: Path = ROOT) -> Project:
    """The campaign (a copy of ``root``'s, for the election of ELECTION) scheduled for ``addresses``."""
    if smtp_url:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp_url)
    if root == ROOT:
        root = tmp_path / "project-2027"
        if not root.exists():
            copy_project(root)
    project = Project.at(for_election(root, ELECTION))
    conn = project.connect()
    import_contacts(conn, contacts_csv(tmp_path, addresses), default_basis="published-address")
    conn.close()
    report = plan_campaign(project, now=PLANNED_AT)
    assert schedule_campaign(project, report, now=PLANNED_AT)
    return project


def run_worker(project: Project, at: dt.datetime, **kwargs):
    return Worker(project, clock=lambda: at, rate_per_minute=1_000_000, **kwargs).run(once=True)


def ledger(project: Project) -> dict[str, int]:
    conn = project.connect()
    try:
        return {r[0]: r[1] for r in conn.execute("SELECT state, COUNT(*) FROM ledger GROUP BY state")}
    finally:
        conn.close()


@pytest.fixture(params=["pipelining", "one command at a time"])
def smtp(request):
    with Server(pipelining=request.param == "pipelining") as server:
        yield server


def test_sends_the_due_mail_once_to_each_active_contact(configured_home, tmp_path, monkeypatch, smtp):
    addresses = [f"p{i}@example.nl" for i in range(5)]
    project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
    conn = project.connect()
    set_status(conn, ["p3@example.nl"], status="unsubscribed")
    conn.close()
    assert run_worker(project, MAIL1 - dt.timedelta(hours=1)).sent == 0  # not due yet
    stats = run_worker(project, MAIL1)
    assert stats.sent == 4
    received = smtp.recorder.messages
    assert sorted(m["To"].addresses[0].addr_spec for m in received) == ["p0@example.nl", "p1@example.nl",
                                                                       "p2@example.nl", "p4@example.nl"]
    m = received[0]
    assert m["Subject"] == "Wonen Eerst: herstel begint met een thuis"
    assert m["From"].addresses[0].addr_spec == "campagne@zender.test-org.nl"
    assert m["Message-ID"].endswith("@zender.test-org.nl>")
    assert "Geachte Persoon" in m.get_body(("plain",)).get_content()
    assert run_worker(project, MAIL1 + dt.timedelta(minutes=5)).sent == 0  # nothing twice
    assert smtp.recorder.count() == 4
    conn = project.connect()
    report = status(conn, "gr2026", now=MAIL1, fingerprints=fingerprints(project), transport=smtp.url)
    conn.close()
    assert report.mails[0].state == "sent" and report.mails[0].counts["sent"] == 4
    assert report.mails[1].state == "scheduled"


def test_outside_the_window_nothing_goes_out(configured_home, tmp_path, monkeypatch, smtp):
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=smtp.url)
    evening = dt.datetime(2027, 2, 3, 18, 0, tzinfo=AMS)
    assert run_worker(project, evening).sent == 0
    next_morning = dt.datetime(2027, 2, 4, 9, 1, tzinfo=AMS)  # Thursday: an allowed day
    assert run_worker(project, next_morning).sent == 1


def test_4xx_is_retried_with_back_off(configured_home, tmp_path, monkeypatch, smtp):
    # b's envelope is refused while it travels with a's data (with PIPELINING); c must still go.
    project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl", "c@example.nl"], smtp_url=smtp.url)
    smtp.recorder.script["b@example.nl"] = ["451 4.3.0 Try again later"]
    stats = run_worker(project, MAIL1)
    assert (stats.sent, stats.deferred) == (2, 1)
    assert run_worker(project, MAIL1 + dt.timedelta(seconds=30)).sent == 0  # back-off not over
    assert run_worker(project, MAIL1 + dt.timedelta(minutes=2)).sent == 1
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.recorder.messages) == [
        "a@example.nl", "b@example.nl", "c@example.nl"]
    assert ledger(project) == {"sent": 3}


def test_a_stop_leaves_the_envelope_sent_ahead_without_a_message(configured_home, tmp_path, monkeypatch):
    # With PIPELINING the next contact's MAIL/RCPT/DATA travel with the message before it. When
    # the run stops there, the server has accepted that recipient but must get no message: not
    # an empty one, and not the real one until it is claimed and sent.
    with Server() as smtp:
        addresses = ["a@example.nl", "b@example.nl", "c@example.nl"]
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        worker = Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000,
                        progress=lambda mail, done, total: worker.stop.set())
        stats = worker.run(once=True)
        assert stats.sent == 1
        assert smtp.recorder.rcpts == ["a@example.nl", "b@example.nl"]  # b's envelope went ahead
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and smtp.recorder.count() < 1:
            time.sleep(0.05)
        time.sleep(0.3)  # time for an (unwanted) second message to arrive
        assert [m["To"].addresses[0].addr_spec for m in smtp.recorder.messages] == ["a@example.nl"]
        assert ledger(project) == {"sent": 1, "pending": 2}
        assert run_worker(project, MAIL1).sent == 2
        assert sorted(m["To"].addresses[0].addr_spec for m in smtp.recorder.messages) == addresses
        assert all(m.get_body(("plain",)).get_content().strip() for m in smtp.recorder.messages)


def test_5xx_fails_and_user_unknown_bounces(configured_home, tmp_path, monkeypatch, smtp):
    project = prepare(tmp_path, monkeypatch, ["gone@example.nl", "policy@example.nl", "ok@example.nl"],
                      smtp_url=smtp.url)
    smtp.recorder.script["gone@example.nl"] = ["550 5.1.1 <gone@example.nl>: user unknown"]
    smtp.recorder.script["policy@example.nl"] = ["554 5.7.1 Rejected by policy"]
    stats = run_worker(project, MAIL1)
    assert (stats.sent, stats.failed) == (1, 2)
    conn = project.connect()
    rows = {r["email"]: (r["status"], r["state"], r["error"]) for r in conn.execute(
        "SELECT c.email, c.status, l.state, l.error FROM ledger l JOIN contacts c ON c.id = l.contact_id")}
    conn.close()
    assert rows["gone@example.nl"][:2] == ("bounced", "failed") and "user unknown" in rows["gone@example.nl"][2]
    assert rows["policy@example.nl"][:2] == ("active", "failed") and "554" in rows["policy@example.nl"][2]
    # The bounced address gets nothing more; the other failure does get mail 2.
    run_worker(project, MAIL2)
    assert [m["To"].addresses[0].addr_spec for m in smtp.recorder.messages].count("gone@example.nl") == 0


def test_connection_lost_after_data_is_unknown_and_retry_resends(configured_home, tmp_path, monkeypatch, smtp):
    project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl", "c@example.nl"], smtp_url=smtp.url)
    smtp.recorder.script["b@example.nl"] = ["drop-after-data"]
    stats = run_worker(project, MAIL1)
    assert (stats.sent, stats.unknown) == (2, 1)
    assert smtp.recorder.count() == 3  # b's message did arrive; the answer did not
    assert ledger(project) == {"sent": 2, "unknown": 1}
    conn = project.connect()
    assert retry(conn, "gr2026", mail=1, now=MAIL1) == 1
    conn.close()
    assert run_worker(project, MAIL1 + dt.timedelta(minutes=1)).sent == 1
    ids = [m["Message-ID"] for m in smtp.recorder.messages if m["To"].addresses[0].addr_spec == "b@example.nl"]
    assert len(ids) == 2 and ids[0] == ids[1]  # the resend is recognisable as the same message


def test_starttls_with_auth_and_a_verified_certificate(configured_home, tmp_path, monkeypatch):
    import ssl

    cert, key = make_certificate(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with Server(tls_context=ctx, users={"campagne": "s3cret"}) as server:
        url = f"smtp://campagne@127.0.0.1:{server.port}"
        project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=url)
        env = {"CAMPAIGN_SMTP_URL": url, "CAMPAIGN_SMTP_PASSWORD": "s3cret", "CAMPAIGN_SMTP_CA_FILE": str(cert)}
        with pytest.raises(DeliveryError, match="TLS failed"):
            run_worker(project, MAIL1, env={**env, "CAMPAIGN_SMTP_CA_FILE": ""})
        with pytest.raises(DeliveryError, match="login refused"):
            run_worker(project, MAIL1, env={**env, "CAMPAIGN_SMTP_PASSWORD": "wrong"})
        assert server.recorder.count() == 0
        assert ledger(project) == {"pending": 1}  # nothing was claimed before the transport worked
        assert run_worker(project, MAIL1, env=env).sent == 1
        assert server.recorder.count() == 1


def test_a_worker_with_another_transport_refuses(configured_home, tmp_path, monkeypatch, smtp):
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=smtp.url)
    with pytest.raises(DeliveryError, match="stored for smtp://127.0.0.1"):
        run_worker(project, MAIL1, env={})  # e.g. cron without CAMPAIGN_SMTP_URL: would fall back to the outbox
    assert not (project.outbox).exists()


def test_smtp_is_refused_while_the_sender_is_not_configured(home, tmp_path, monkeypatch, smtp):
    from mailer.errors import SenderNotConfigured

    monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
    project = Project.at(for_election(copy_project(tmp_path / "project"), ELECTION))
    report = plan_campaign(project, now=PLANNED_AT)
    with pytest.raises(SenderNotConfigured, match="sender is not configured"):
        schedule_campaign(project, report, now=PLANNED_AT)


def test_pause_cancel_and_held_mails(configured_home, tmp_path, monkeypatch, smtp, project_copy):
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=smtp.url, root=project_copy)
    conn = project.connect()
    set_paused(conn, "gr2026", True)
    conn.close()
    assert run_worker(project, MAIL1).sent == 0
    conn = project.connect()
    set_paused(conn, "gr2026", False)
    cancel(conn, "gr2026", mail=1, now=MAIL1)
    conn.close()
    assert run_worker(project, MAIL1).sent == 0
    # Mail 2 is edited after scheduling: held until approved.
    path = project_copy / "campaigns/gr2026/mails/02-verantwoord-zorgbeleid.md"
    path.write_text(path.read_text(encoding="utf-8").replace("vierkantsfinanciering", "vierkantsfinanciering (VF)"),
                    encoding="utf-8")
    stats = run_worker(project, MAIL2)
    assert stats.sent == 0 and stats.held == [2]
    conn = project.connect()
    report = status(conn, "gr2026", now=MAIL2, fingerprints=fingerprints(project), transport=smtp.url)
    assert report.mails[0].state == "cancelled"
    assert report.mails[1].state == "held: changed since approval"
    assert approve(conn, "gr2026", fingerprints(project), mails=[2]) == [2]
    conn.close()
    assert run_worker(project, MAIL2).sent == 1
    assert "vierkantsfinanciering (VF)" in " ".join(smtp.recorder.messages[0].get_body(("plain",)).get_content().split())


def test_contacts_imported_later_get_the_remaining_mails(configured_home, tmp_path, monkeypatch, smtp):
    project = prepare(tmp_path, monkeypatch, ["early@example.nl"], smtp_url=smtp.url)
    run_worker(project, MAIL1)
    conn = project.connect()
    import_contacts(conn, contacts_csv(tmp_path, ["early@example.nl", "late@example.nl"], "more.csv"),
                    default_basis="consent")
    conn.close()
    run_worker(project, MAIL2)
    got = [(m["To"].addresses[0].addr_spec, m["Subject"]) for m in smtp.recorder.messages]
    assert [s for a, s in got if a == "late@example.nl"] == ["Verantwoord zorgbeleid voor de meest kwetsbaren"]
    assert len([s for a, s in got if a == "early@example.nl"]) == 2


def test_only_one_worker_at_a_time(configured_home, tmp_path, monkeypatch, smtp):
    project = prepare(tmp_path, monkeypatch, ["a@example.nl"], smtp_url=smtp.url)
    with WorkerLock(project.home):
        with pytest.raises(StateError, match="already running"):
            run_worker(project, MAIL1)
    assert smtp.recorder.count() == 0


def test_send_test_marks_personalises_and_records_nothing(configured_home, tmp_path, monkeypatch, smtp, run):
    project = prepare(tmp_path, monkeypatch, ["kandidaat@example.nl"], smtp_url=smtp.url)
    result = run("send-test", "--to", "staf@zender.test-org.nl", "--mail", "3", "--contact", "zoe.vandenberg@example.org")
    assert result.exit_code == 0, result.output
    assert "Mail 3 to staf@zender.test-org.nl" in result.output
    [msg] = smtp.recorder.messages
    assert msg["Subject"] == "[TEST] Investeer in een sociale basis voor iedereen"
    assert msg["To"].addresses[0].addr_spec == "staf@zender.test-org.nl"
    assert "Geachte Zoë van den Berg," in msg.get_body(("plain",)).get_content()
    refused = run("send-test", "--to", "KANDIDAAT@example.nl")
    assert refused.exit_code == 1 and "reaches the mailbox of an imported contact" in refused.output
    default = run("send-test", "--mail", "1")
    assert default.exit_code == 0 and "staf@zender.test-org.nl" in default.output  # the settings' test recipients
    assert ledger(project) == {}
    assert smtp.recorder.count() == 2


@pytest.mark.slow
@pytest.mark.parametrize("connections", [1, 3])
def test_sigkill_mid_send_skips_nobody_and_duplicates_at_most_one_per_connection(
        configured_home, tmp_path, monkeypatch, connections):
    with Server() as smtp:
        sigkill_run(tmp_path, monkeypatch, smtp, connections)


def sigkill_run(tmp_path, monkeypatch, smtp, connections: int) -> None:
    n = 2000
    addresses = [f"k{i:05d}@example.nl" for i in range(n)]
    project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
    conn = project.connect()
    conn.execute("UPDATE schedule SET due_at = ?, outside_window = 1 WHERE mail = 1",
                 (store.iso(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)),))
    conn.close()
    env = {**os.environ, "CAMPAIGN_HOME": str(project.home), "CAMPAIGN_SMTP_URL": smtp.url}
    cmd = [sys.executable, "-c", "import cli; cli.cli()", "--project", str(project.root), "worker", "--once", "--rate", "1000000",
           "--connections", str(connections)]
    first = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while smtp.recorder.count() < n // 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    assert first.poll() is None, "the worker finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = smtp.recorder.count()
    assert 0 < killed_at < n
    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    received = [m["To"].addresses[0].addr_spec for m in smtp.recorder.messages]
    assert set(received) == set(addresses)  # nobody skipped
    duplicates = len(received) - len(set(received))
    assert duplicates <= connections  # at most the message in flight on each connection
    state = ledger(project)
    assert state == {"sent": n}
    conn = project.connect()
    resent = conn.execute("SELECT SUM(resent) FROM ledger").fetchone()[0]
    conn.close()
    assert duplicates <= resent <= connections  # the rows in flight are counted as resent
    report = json.loads(subprocess.run(cmd[:3] + ["--project", str(project.root), "status", "--json"], env=env,
                                       capture_output=True, text=True).stdout)
    assert report["mails"][0]["sent"] == n


def test_running_worker_is_woken_by_reschedule_and_stops_on_sigterm(configured_home, tmp_path, monkeypatch):
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, [f"w{i}@example.nl" for i in range(20)], smtp_url=smtp.url)
        env = {**os.environ, "CAMPAIGN_HOME": str(project.home), "CAMPAIGN_SMTP_URL": smtp.url}
        base = [sys.executable, "-c", "import cli; cli.cli()", "--project", str(project.root)]
        worker = subprocess.Popen(base + ["worker", "--rate", "600"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                report = json.loads(subprocess.run(base + ["status", "--json"], env=env, cwd=ROOT,
                                                   capture_output=True, text=True).stdout)
                if report["worker"]["running"]:
                    break
                time.sleep(0.2)
            assert report["worker"]["running"], "the worker did not start"
            assert smtp.recorder.count() == 0  # nothing is due yet
            moved = subprocess.run(base + ["reschedule", "--mail", "1", "--at", "now"], env=env, cwd=ROOT,
                                   capture_output=True, text=True)
            assert moved.returncode == 0, moved.stderr
            assert "The running worker was told." in moved.stderr
            started = time.monotonic()
            while smtp.recorder.count() < 3 and time.monotonic() - started < 10:
                time.sleep(0.05)
            assert smtp.recorder.count() >= 3, "the worker did not wake up for the rescheduled mail"
            # 600/min: the 20 messages take about two seconds; stop it in the middle.
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=15)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, err
        assert "Sent " in out
        received = smtp.recorder.count()
        state = ledger(project)
        assert "sending" not in state  # the message in hand was finished and recorded
        assert state.get("sent", 0) == received
        assert 3 <= received < 20 or state == {"sent": 20}


def test_rate_limit_spaces_the_messages(configured_home, tmp_path, monkeypatch):
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["r1@example.nl", "r2@example.nl", "r3@example.nl"], smtp_url=smtp.url)
        waits: list[float] = []

        def sleep(seconds: float) -> bool:
            waits.append(seconds)
            time.sleep(seconds)
            return False

        stats = Worker(project, clock=lambda: MAIL1, rate_per_minute=120, sleep=sleep).run(once=True)
    assert stats.sent == 3
    assert len(waits) == 2 and all(0.3 < w <= 0.5 for w in waits)  # 120/min: one message every 0.5 s


def test_login_without_tls_only_on_loopback(monkeypatch):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from mailer.transport import SmtpTransport, TransportConfig

    from .smtp_server import Recorder, free_port

    port = free_port()
    # A server without TLS that still offers AUTH (aiosmtpd refuses that unless told).
    plain = Controller(Recorder(), hostname="127.0.0.1", port=port, auth_require_tls=False,
                       authenticator=lambda *args: AuthResult(success=True, handled=False))
    plain.start()
    try:
        env = {"CAMPAIGN_SMTP_PASSWORD": "s3cret"}
        config = TransportConfig(kind="smtp", host="127.0.0.1", port=port, username="campagne")
        assert config.loopback
        loopback = SmtpTransport(config, env=env)
        loopback.open()  # on loopback the password may go without TLS
        loopback.close()
        monkeypatch.setattr(TransportConfig, "loopback", property(lambda self: False))
        with pytest.raises(DeliveryError, match="offers no TLS; refusing to send the password unencrypted"):
            SmtpTransport(config, env=env).open()
    finally:
        plain.stop()


@pytest.mark.parametrize("connections", [2, 3])
@pytest.mark.parametrize("rate", [1_000_000, 600])  # 600/min: connections wait their turn
def test_several_connections_send_everyone_in_one_run(configured_home, tmp_path, monkeypatch, connections, rate):
    # Each connection reserves the contact it sends next; when the list runs out, the ones
    # still reserved by busy connections must go out in the same run, not in the next.
    with Server() as smtp:
        addresses = [f"c{i}@example.nl" for i in range(7)]
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        stats = Worker(project, clock=lambda: MAIL1, rate_per_minute=rate, connections=connections).run(once=True)
        assert stats.sent == 7
        assert ledger(project) == {"sent": 7}
        assert sorted(m["To"].addresses[0].addr_spec for m in smtp.recorder.messages) == sorted(addresses)
