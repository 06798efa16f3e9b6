"""Delivery when things go wrong: imports during a send, a relay that refuses everyone, pause,
a server that dies, hangs or answers slowly, and answers that never come. Always against a
real SMTP server on 127.0.0.1 (tests/smtp_server.py) and a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading

import pytest

from mailer.contacts import import_contacts
from mailer.deliver import RepeatedRefusal, TransportUnavailable, Worker
from mailer.errors import SettingsError
from mailer.project import Project
from mailer.schedule import retry, set_paused, status
from mailer.service import fingerprints

from .conftest import ROOT
from .smtp_server import Server, SilentServer
from .test_deliver import MAIL1, MAIL2, contacts_csv, ledger, prepare, run_worker


def received(server: Server) -> list[str]:
    return [m["To"].addresses[0].addr_spec for m in server.recorder.messages]


def rows(project: Project) -> dict[str, tuple[str, int, str]]:
    """address -> (ledger state, attempts, contact status) for mail 1."""
    conn = project.connect()
    try:
        return {r["email"]: (r["state"], r["attempts"], r["status"]) for r in conn.execute(
            "SELECT c.email, c.status, l.state, l.attempts FROM ledger l JOIN contacts c ON c.id = l.contact_id"
            " WHERE l.mail = 1")}
    finally:
        conn.close()


class WorkerThread(threading.Thread):
    """A worker running in a thread of its own (SQLite connections belong to their thread),
    to be stopped from the test as SIGTERM would stop it."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make
        self.created = threading.Event()
        self.outcome: list[object] = []

    def run(self) -> None:
        self.worker = self.make()
        self.created.set()
        try:
            self.outcome.append(self.worker.run(once=True))
        except Exception as exc:  # reported by the test
            self.outcome.append(exc)

    def stop(self) -> None:
        self.created.wait(10)
        self.worker.stop.set()


def mail_status(project: Project, number: int, at: dt.datetime, url: str) -> dict:
    conn = project.connect()
    try:
        report = status(conn, "gr2026", now=at, fingerprints=fingerprints(project), transport=url)
    finally:
        conn.close()
    return next(m for m in report.as_dict()["mails"] if m["number"] == number)


# --- 1. nobody skipped ---------------------------------------------------------------------------

@pytest.mark.parametrize("connections", [1, 3])
def test_contacts_imported_while_a_mail_sends_get_it_before_it_is_done(configured_home, tmp_path, monkeypatch,
                                                                       connections):
    first = [f"first{i:02d}@example.nl" for i in range(30)]
    during = [f"during{i:02d}@example.nl" for i in range(10)]
    last = [f"last{i:02d}@example.nl" for i in range(5)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, first, smtp_url=smtp.url)
        imported: list[str] = []
        seen: list[str] = []

        def progress(mail: int, done: int, total: int) -> None:
            conn = project.connect()  # another connection, as `contacts import` in another terminal
            try:
                if done == 5 and not imported:
                    import_contacts(conn, contacts_csv(tmp_path, during, "during.csv"), default_basis="consent")
                    imported.append("during")
                elif done == len(first) + len(during) and imported == ["during"]:
                    # The last message of the list is answered: the rows have all been read.
                    import_contacts(conn, contacts_csv(tmp_path, last, "last.csv"), default_basis="consent")
                    imported.append("last")
                state = conn.execute("SELECT state FROM schedule WHERE mail = 1").fetchone()[0]
                seen.append(state)
            finally:
                conn.close()

        stats = Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000, connections=connections,
                       progress=progress).run(once=True)
        assert imported == ["during", "last"]
        assert sorted(received(smtp)) == sorted(first + during + last)  # each exactly once
        assert stats.sent == len(first) + len(during) + len(last)
        assert ledger(project) == {"sent": 45}
        assert "done" not in seen  # never done while someone active still waited
        conn = project.connect()
        assert conn.execute("SELECT state FROM schedule WHERE mail = 1").fetchone()[0] == "done"
        conn.close()


# --- 2. bounces and the circuit breaker ------------------------------------------------------------

def test_only_a_missing_mailbox_bounces_a_contact(configured_home, tmp_path, monkeypatch):
    answers = {
        "policy@example.nl": "550 5.7.1 <policy@example.nl>: Recipient address rejected: Access denied",
        "relay@example.nl": "554 5.7.1 Relay access denied",
        "full@example.nl": "552 5.2.2 Mailbox full",
        "other@example.nl": "550 5.1.0 Address rejected",
        "unavailable@example.nl": "550 Requested action not taken: mailbox unavailable",
        "gone@example.nl": "550 5.1.1 <gone@example.nl>: Recipient address rejected: User unknown",
        "nullmx@example.nl": "556 5.1.10 Recipient address has null MX",
        "plain@example.nl": "550 No such user here",
    }
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, [*answers, "ok@example.nl"], smtp_url=smtp.url)
        for address, answer in answers.items():
            smtp.recorder.script[address] = [answer]
        stats = run_worker(project, MAIL1)
        assert (stats.sent, stats.failed) == (1, len(answers))
    got = rows(project)
    bounced = sorted(a for a, (_, _, contact) in got.items() if contact == "bounced")
    assert bounced == ["gone@example.nl", "nullmx@example.nl", "plain@example.nl"]
    assert all(state == "failed" for a, (state, _, _) in got.items() if a != "ok@example.nl")


def test_a_relay_refusing_everyone_trips_the_breaker_and_nothing_is_lost(configured_home, tmp_path, monkeypatch):
    (configured_home / "settings.toml").write_text(
        (configured_home / "settings.toml").read_text(encoding="utf-8") + "\n[delivery]\nfailure_threshold = 6\n",
        encoding="utf-8")
    addresses = [f"r{i:02d}@example.nl" for i in range(30)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        smtp.recorder.refuse_all = "550 5.7.1 <{rcpt}>: Recipient address rejected: Access denied"
        with pytest.raises(RepeatedRefusal) as caught:
            run_worker(project, MAIL1)
        message = str(caught.value)
        assert "refused 6 messages in a row" in message and "550 5.7.1" in message
        assert "Access denied" in message and "campaign worker" in message and "failure_threshold" in message
        assert "r00@example.nl" not in message and "r***@example.nl" in message  # addresses masked
        got = rows(project)
        assert all(contact == "active" for _, _, contact in got.values())  # nobody bounced
        assert all(state == "pending" and attempts == 0 for state, attempts, _ in got.values())
        assert smtp.recorder.count() == 0
        # The relay is fixed: the worker simply goes on, and everyone gets the mail once.
        smtp.recorder.refuse_all = None
        assert run_worker(project, MAIL1).sent == 30
        assert sorted(received(smtp)) == addresses


def test_a_server_that_drops_every_message_trips_the_breaker(configured_home, tmp_path, monkeypatch):
    addresses = [f"u{i:02d}@example.nl" for i in range(12)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        for address in addresses:
            smtp.recorder.script[address] = ["drop-after-data"]
        with pytest.raises(RepeatedRefusal, match="lost after the message was handed over 3 times in a row"):
            run_worker(project, MAIL1, failure_threshold=3)
        assert ledger(project) == {"unknown": 3, "pending": 9}
        smtp.recorder.script.clear()
        run_worker(project, MAIL1 + dt.timedelta(minutes=1))
        got = received(smtp)
        assert set(got) == set(addresses) and len(got) == 15  # the three unknown ones arrived twice
        assert mail_status(project, 1, MAIL1, smtp.url)["resent"] == 3


def test_the_breaker_through_the_cli_exits_non_zero_with_a_sentence(configured_home, tmp_path, monkeypatch):
    addresses = [f"c{i:02d}@example.nl" for i in range(15)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        conn = project.connect()
        conn.execute("UPDATE schedule SET due_at = '2020-01-01T00:00:00Z', outside_window = 1 WHERE mail = 1")
        conn.close()
        smtp.recorder.refuse_all = "550 5.7.1 <{rcpt}>: Recipient address rejected: Access denied"
        env = {**os.environ, "CAMPAIGN_HOME": str(project.home), "CAMPAIGN_SMTP_URL": smtp.url}
        done = subprocess.run([sys.executable, "-c", "import cli; cli.cli()", "--project", str(project.root), "worker", "--once",
                               "--rate", "1000000"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Error: smtp://127.0.0.1" in done.stderr and "refused 10 messages in a row" in done.stderr  # default 10
    assert "Traceback" not in done.stderr
    assert ledger(project) == {"pending": 15}


def test_failure_threshold_setting_is_validated(configured_home):
    from mailer.settings import load_deployment_settings

    path = configured_home / "settings.toml"
    base = path.read_text(encoding="utf-8")
    assert load_deployment_settings(configured_home).failure_threshold == 10
    path.write_text(base + "\n[delivery]\nfailure_threshold = 0\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"settings.toml: delivery.failure_threshold: must be a whole number"):
        load_deployment_settings(configured_home)
    path.write_text(base + "\n[delivery]\nfailure_threshold = \"ten\"\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"delivery.failure_threshold: expected int"):
        load_deployment_settings(configured_home)


# --- 3. pause ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("connections", [1, 3])
def test_once_pause_returns_no_new_message_leaves(configured_home, tmp_path, monkeypatch, connections):
    addresses = [f"p{i:03d}@example.nl" for i in range(200)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        paused_at: list[int] = []

        def progress(mail: int, done: int, total: int) -> None:
            if done == 20 and not paused_at:
                conn = project.connect()  # `campaign pause` in another terminal
                set_paused(conn, "gr2026", True)
                conn.close()
                paused_at.append(done)

        stats = Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000, connections=connections,
                       progress=progress).run(once=True)
        # At most the messages already handed over on the other connections went after that.
        assert 20 <= stats.sent <= 20 + connections - 1
        assert smtp.recorder.count() == stats.sent
        assert ledger(project) == {"sent": stats.sent, "pending": 200 - stats.sent}
        conn = project.connect()
        set_paused(conn, "gr2026", False)
        conn.close()
        assert run_worker(project, MAIL1, connections=connections).sent == 200 - stats.sent
        assert sorted(received(smtp)) == addresses


# --- 4. a server that dies or hangs --------------------------------------------------------------------

@pytest.mark.parametrize("connections", [1, 3])
def test_a_server_dying_mid_run_stops_the_pass_and_uses_no_attempts(configured_home, tmp_path, monkeypatch,
                                                                      connections):
    addresses = [f"d{i:02d}@example.nl" for i in range(40)]
    smtp = Server()
    smtp.__enter__()
    try:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)

        def progress(mail: int, done: int, total: int) -> None:
            if done == 8 and smtp.controller.server is not None:
                smtp.controller.stop()  # the server goes away in the middle of the run

        with pytest.raises(TransportUnavailable, match="messages not yet sent wait in the queue"):
            Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000, connections=connections,
                   progress=progress).run(once=True)
        got = rows(project)
        states = [state for state, _, _ in got.values()]
        # The messages answered before it went are sent; at most the ones in flight are unknown;
        # every other row is pending and has not used an attempt.
        assert states.count("sent") >= 8 and states.count("unknown") <= connections
        assert states.count("sent") + states.count("unknown") + states.count("pending") == 40
        assert all(attempts == 0 for state, attempts, _ in got.values() if state == "pending")
        first_run = received(smtp)
        # The server comes back on the same address: the next run sends the rest.
        back = Server(port=smtp.port, recorder=smtp.recorder)
        with back:
            run_worker(project, MAIL1 + dt.timedelta(minutes=1), connections=connections)
        everyone = received(smtp)
        assert set(everyone) == set(addresses) and len(first_run) < len(everyone)
        assert len(everyone) - len(set(everyone)) <= connections
        assert ledger(project) == {"sent": 40}
    finally:
        smtp.recorder.release.set()


def test_a_server_that_never_greets_does_not_hold_a_stop(configured_home, tmp_path, monkeypatch):
    with SilentServer() as silent:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=silent.url)
        thread = WorkerThread(lambda: Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000))
        thread.start()
        assert silent.accepted.wait(10), f"the worker never connected: {thread.outcome}"
        thread.stop()  # what SIGTERM does
        # smtplib would wait 30 s for the greeting; a stop is heard within a slice of that.
        thread.join(10)
        assert not thread.is_alive(), "the stop was not heard while the server stayed silent"
    assert thread.outcome and not isinstance(thread.outcome[0], Exception), thread.outcome
    assert rows(project) == {"a@example.nl": ("pending", 0, "active"), "b@example.nl": ("pending", 0, "active")}


# --- 5. a slow answer to the final dot -----------------------------------------------------------------

def test_an_answer_slower_than_the_command_timeout_is_waited_for(configured_home):
    from mailer.message import Envelope
    from mailer.transport import SmtpTransport, TransportConfig

    with Server() as smtp:
        smtp.recorder.script["slow@example.nl"] = ["delay-dot:2.5"]
        config = TransportConfig(kind="smtp", host="127.0.0.1", port=smtp.port)
        transport = SmtpTransport(config, env={}, timeout=1)  # commands: 1 s; the final dot: 10 minutes
        data = b"From: a@zender.test-org.nl\r\nTo: slow@example.nl\r\nSubject: x\r\nMessage-ID: <x@y>\r\n\r\nHoi\r\n"
        envelope = Envelope(sender="a@zender.test-org.nl", recipient="slow@example.nl", message_id="<x@y>", data=data)
        try:
            answer = transport.send(envelope)
        finally:
            transport.close()
        assert "250" in answer
        assert smtp.recorder.count() == 1


def test_a_worker_waits_for_a_slow_answer_and_records_it_sent(configured_home, tmp_path, monkeypatch):
    from mailer.transport import SmtpTransport

    # Connecting and commands time out after 1 s here; the answer to the final dot takes 2.5 s.
    monkeypatch.setitem(SmtpTransport.__init__.__kwdefaults__, "timeout", 1)
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "slow@example.nl", "c@example.nl"], smtp_url=smtp.url)
        smtp.recorder.script["slow@example.nl"] = ["delay-dot:2.5"]
        stats = run_worker(project, MAIL1)
        assert (stats.sent, stats.unknown) == (3, 0)
        assert ledger(project) == {"sent": 3}
        assert sorted(received(smtp)) == ["a@example.nl", "c@example.nl", "slow@example.nl"]


def test_a_stop_is_heard_while_the_server_takes_its_time(configured_home, tmp_path, monkeypatch):
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["slow@example.nl", "b@example.nl"], smtp_url=smtp.url)
        smtp.recorder.script["slow@example.nl"] = ["delay-dot:60"]
        thread = WorkerThread(lambda: Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000, stop_grace=0.5))
        thread.start()
        assert smtp.recorder.data_started.wait(10)
        thread.stop()  # SIGTERM while the server has not answered the final dot yet
        thread.join(15)
        assert not thread.is_alive(), "the worker kept waiting for the answer after it was told to stop"
        assert thread.outcome and not isinstance(thread.outcome[0], Exception), thread.outcome
        # It did not wait for the answer, so it cannot know: unknown, not sent and not lost.
        assert rows(project)["slow@example.nl"][0] == "unknown"
        assert rows(project)["b@example.nl"][0] == "pending"
        smtp.recorder.release.set()  # the server answers (and takes the message) after all
        stats = run_worker(project, MAIL1 + dt.timedelta(minutes=1))
        assert stats.sent == 2 and stats.resent_unknown == 1
        assert sorted(received(smtp)) == ["b@example.nl", "slow@example.nl", "slow@example.nl"]
        assert mail_status(project, 1, MAIL1, smtp.url)["resent"] == 1  # the possible duplicate is counted


# --- 6. unknown outcomes and what status counts ----------------------------------------------------------

def test_unknown_outcomes_go_again_on_the_next_pass_and_are_counted(configured_home, tmp_path, monkeypatch):
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl", "c@example.nl"], smtp_url=smtp.url)
        smtp.recorder.script["b@example.nl"] = ["drop-after-data"]
        stats = run_worker(project, MAIL1)
        assert (stats.sent, stats.unknown) == (2, 1)
        before = mail_status(project, 1, MAIL1, smtp.url)
        assert before["state"] != "sent"  # not done while b may still go
        assert before["unknown"] == 1
        # No `retry` needed: the next pass that reaches the server sends it again.
        stats = run_worker(project, MAIL1 + dt.timedelta(minutes=1))
        assert (stats.sent, stats.resent_unknown) == (1, 1)
        after = mail_status(project, 1, MAIL1, smtp.url)
        assert after["state"] == "sent" and after["sent"] == 3 and after["resent"] == 1
        ids = [m["Message-ID"] for m in smtp.recorder.messages if m["To"].addresses[0].addr_spec == "b@example.nl"]
        assert len(ids) == 2 and ids[0] == ids[1]


def test_retry_of_an_unknown_outcome_counts_as_resent(configured_home, tmp_path, monkeypatch):
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=smtp.url)
        smtp.recorder.script["b@example.nl"] = ["drop-after-data"]
        smtp.recorder.script["a@example.nl"] = ["554 5.7.1 Rejected by policy"]
        run_worker(project, MAIL1)
        conn = project.connect()
        assert retry(conn, "gr2026", mail=1, now=MAIL1) == 2
        conn.close()
        run_worker(project, MAIL1 + dt.timedelta(minutes=1))
        counts = mail_status(project, 1, MAIL1, smtp.url)
        # b's first copy may have arrived: a resend; a's was refused: a retry, not a resend.
        assert counts["sent"] == 2 and counts["resent"] == 1


def test_status_counts_contacts_left_out_because_they_bounced_or_opted_out(configured_home, tmp_path, monkeypatch):
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["gone@example.nl", "ok@example.nl", "ok2@example.nl"],
                          smtp_url=smtp.url)
        smtp.recorder.script["gone@example.nl"] = ["550 5.1.1 <gone@example.nl>: User unknown"]
        run_worker(project, MAIL1)
        from mailer.contacts import set_status

        conn = project.connect()
        set_status(conn, ["ok2@example.nl"], status="unsubscribed")
        conn.close()
        run_worker(project, MAIL2)
        mail2 = mail_status(project, 2, MAIL2, smtp.url)
        assert mail2["sent"] == 1
        # Neither has a row for mail 2; both are counted as not mailed because of their status.
        assert mail2["excluded"] == 2
        assert mail_status(project, 1, MAIL1, smtp.url)["excluded"] == 0
        assert json.dumps(mail2)  # still plain JSON


# --- 7. a kill between the server's 250 and the ledger's commit -------------------------------------------

def left_sending(project: Project, emails: list[str]) -> dict[str, tuple[int, str]]:
    """What a kill leaves: mail 1 sending, the rows of ``emails`` in 'sending' (claimed once),
    the others pending. Returns address -> (ledger id, Message-ID) for every contact."""
    conn = project.connect()
    try:
        conn.execute("INSERT OR IGNORE INTO ledger (campaign, mail, contact_id, message_id, updated_at)"
                     " SELECT 'gr2026', 1, id, 'mid-' || email, '2027-02-03T08:00:00Z' FROM contacts")
        conn.executemany("UPDATE ledger SET state = 'sending', attempts = 1 WHERE contact_id ="
                         " (SELECT id FROM contacts WHERE email = ?)", [(e,) for e in emails])
        conn.execute("UPDATE schedule SET state = 'sending' WHERE mail = 1")
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT c.email, l.id, l.message_id FROM ledger l JOIN contacts c ON c.id = l.contact_id")}
    finally:
        conn.close()

def test_a_journalled_acceptance_is_recorded_not_sent_again(configured_home, tmp_path, monkeypatch):
    # What a kill leaves: rows in 'sending'. The server had answered 250 to a's message and the
    # worker had journalled that; b's answer had not come. The next start records a as sent
    # and sends only b again; a journal line naming another Message-ID changes nothing.
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl", "c@example.nl"], smtp_url=smtp.url)
        ids = left_sending(project, ["a@example.nl", "b@example.nl"])
        journal = project.home / "worker.journal"
        journal.write_text(f"{ids['a@example.nl'][0]} {ids['a@example.nl'][1]}\n"
                           f"{ids['b@example.nl'][0]} <another@message.id>\n", encoding="ascii")
        stats = run_worker(project, MAIL1)
        assert sorted(received(smtp)) == ["b@example.nl", "c@example.nl"]  # a's message is not sent twice
        assert stats.resent == 1  # b: its first copy may have arrived
        assert ledger(project) == {"sent": 3}
        from mailer.deliver import JOURNAL_HEADER

        assert journal.read_text(encoding="ascii") == JOURNAL_HEADER  # folded in, and emptied when recorded
        assert oct(journal.stat().st_mode & 0o777) == "0o600"


def _dot_intervals(monkeypatch, delay: float) -> list[tuple[float, float]]:
    """Record, for every message, when the server had its final dot and when it answered, with
    every answer taking ``delay`` seconds."""
    import asyncio
    import time as clock

    from .smtp_server import Recorder

    intervals: list[tuple[float, float]] = []
    original = Recorder.handle_DATA

    async def timed(self, server, session, envelope):
        began = clock.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, clock.sleep, delay)
        answer = await original(self, server, session, envelope)
        intervals.append((began, clock.monotonic()))
        return answer

    monkeypatch.setattr(Recorder, "handle_DATA", timed)
    return intervals


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    ordered = sorted(intervals)
    return sum(1 for (_, end), (start, _) in zip(ordered, ordered[1:]) if start < end)


def test_with_a_prompt_server_a_kill_finds_at_most_one_message_unanswered(configured_home, tmp_path, monkeypatch):
    # Until a message's answer is journalled, a kill makes the next start send it again. With
    # three connections and a server that answers within DOT_WAIT, each final dot waits for the
    # answers to the dots before it: the server never holds two unanswered dots at once.
    import mailer.deliver as deliver

    monkeypatch.setattr(deliver, "DOT_WAIT", 2.0)  # the server's answers below take 0.05 s
    intervals = _dot_intervals(monkeypatch, 0.05)
    addresses = [f"p{i:02d}@example.nl" for i in range(12)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        stats = run_worker(project, MAIL1, connections=3)
        assert stats.sent == 12 and sorted(received(smtp)) == addresses
    assert len(intervals) == 12
    assert _overlaps(intervals) == 0


def test_a_slow_server_still_gets_one_message_per_connection_at_once(configured_home, tmp_path, monkeypatch):
    # A server slower than DOT_WAIT (a content scan): waiting for each answer would make
    # connections useless, so the dots go in parallel after DOT_WAIT, one per connection.
    import mailer.deliver as deliver

    monkeypatch.setattr(deliver, "DOT_WAIT", 0.01)
    intervals = _dot_intervals(monkeypatch, 0.3)
    addresses = [f"s{i:02d}@example.nl" for i in range(9)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        stats = run_worker(project, MAIL1, connections=3)
        assert stats.sent == 9 and sorted(received(smtp)) == addresses
    assert _overlaps(intervals) >= 4


def test_a_row_never_handed_over_is_not_counted_as_resent(configured_home, tmp_path, monkeypatch):
    # What a kill leaves: a and b in 'sending'. The journal says b's final dot was written (the
    # server may hold b's message) and says nothing of a: a's data had gone without its dot, so
    # the server holds no message for a. The next start sends both; only b is a possible
    # duplicate, and a keeps the attempt it never used.
    from mailer.deliver import JOURNAL_HEADER

    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=smtp.url)
        ids = left_sending(project, ["a@example.nl", "b@example.nl"])
        journal = project.home / "worker.journal"
        journal.write_text(f"{JOURNAL_HEADER}handed {ids['b@example.nl'][0]}\n", encoding="ascii")
        stats = run_worker(project, MAIL1)
        assert sorted(received(smtp)) == ["a@example.nl", "b@example.nl"]
        assert stats.resent == 1
        assert rows(project) == {"a@example.nl": ("sent", 1, "active"), "b@example.nl": ("sent", 2, "active")}
        assert mail_status(project, 1, MAIL1, smtp.url)["resent"] == 1
        assert journal.read_text(encoding="ascii") == JOURNAL_HEADER  # emptied once recorded


def test_a_journal_from_an_older_worker_counts_every_row_left_as_resent(configured_home, tmp_path, monkeypatch):
    # Without the header the journal cannot say what was handed over: count every row as resent.
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=smtp.url)
        left_sending(project, ["a@example.nl", "b@example.nl"])
        (project.home / "worker.journal").write_text("", encoding="ascii")
        stats = run_worker(project, MAIL1)
        assert sorted(received(smtp)) == ["a@example.nl", "b@example.nl"]
        assert stats.resent == 2


def test_nothing_is_handed_over_once_the_breaker_trips_with_several_connections(configured_home, tmp_path,
                                                                                    monkeypatch):
    # The answer that trips the breaker may be read between other steps of the worker's work
    # (here: while it waits to write the second connection's final dot): from then on nothing
    # more is handed over, and a message whose data went without its dot waits, attempt intact.
    import mailer.deliver as deliver

    monkeypatch.setattr(deliver, "DOT_WAIT", 1.0)  # the first answer surely comes within it
    addresses = [f"v{i:02d}@example.nl" for i in range(10)]
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, addresses, smtp_url=smtp.url)
        for address in addresses:
            smtp.recorder.script[address] = ["drop-after-data"]
        with pytest.raises(RepeatedRefusal):
            run_worker(project, MAIL1, failure_threshold=1, connections=2)
        assert ledger(project) == {"unknown": 1, "pending": 9}
        assert smtp.recorder.count() == 1
        conn = project.connect()
        assert conn.execute("SELECT COUNT(*) FROM ledger WHERE state = 'pending' AND attempts > 0").fetchone()[0] == 0
        conn.close()


def test_a_failed_recovery_keeps_the_journal_for_the_next_start(configured_home, tmp_path, monkeypatch):
    # The journal is emptied only once recovery is committed: a kill or a failed write in
    # between must not make the next start forget that b's message may have arrived.
    import contextlib
    import sqlite3

    import mailer.deliver as deliver
    from mailer.deliver import JOURNAL_HEADER

    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl"], smtp_url=smtp.url)
        b = left_sending(project, ["a@example.nl", "b@example.nl"])["b@example.nl"][0]
        journal = project.home / "worker.journal"
        journal.write_text(f"{JOURNAL_HEADER}handed {b}\n", encoding="ascii")

        real = deliver.store.transaction

        @contextlib.contextmanager
        def locked(conn):
            import inspect

            if any(frame.function == "recover" for frame in inspect.stack()):
                raise sqlite3.OperationalError("database is locked")
            with real(conn):
                yield

        with monkeypatch.context() as patch:
            patch.setattr(deliver.store, "transaction", locked)
            with pytest.raises(sqlite3.OperationalError):
                run_worker(project, MAIL1)
        assert journal.read_text(encoding="ascii") == f"{JOURNAL_HEADER}handed {b}\n"
        stats = run_worker(project, MAIL1)
        assert stats.resent == 1 and sorted(received(smtp)) == ["a@example.nl", "b@example.nl"]


def test_an_error_mid_pass_keeps_the_handed_lines_of_rows_left_sending(configured_home, tmp_path, monkeypatch):
    # The server takes b's message and drops the connection; recording that outcome fails (a
    # full disk). The row stays 'sending', and the journal must still say it was handed over,
    # so that the next start counts its resend as a possible duplicate.
    import sqlite3

    from mailer.deliver import Worker

    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["b@example.nl"], smtp_url=smtp.url)
        smtp.recorder.script["b@example.nl"] = ["drop-after-data"]
        original = Worker._finish

        def failing(self, ledger_id, state, now, **kwargs):
            if state == "unknown":
                raise sqlite3.OperationalError("disk I/O error")
            return original(self, ledger_id, state, now, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(Worker, "_finish", failing)
            with pytest.raises(sqlite3.OperationalError):
                run_worker(project, MAIL1)
        assert ledger(project).get("sending") == 1
        stats = run_worker(project, MAIL1)
        assert received(smtp) == ["b@example.nl", "b@example.nl"]
        assert stats.resent == 1  # the duplicate is counted


def test_status_says_what_becomes_of_the_messages_in_flight_when_a_worker_stopped(configured_home, tmp_path,
                                                                                   monkeypatch):
    # After a kill, rows left in 'sending' fit no column of the table (sent + pending fell two
    # short of the contacts): status says where they are and what the next worker does.
    with Server() as smtp:
        project = prepare(tmp_path, monkeypatch, ["a@example.nl", "b@example.nl", "c@example.nl"], smtp_url=smtp.url)
        left_sending(project, ["a@example.nl", "b@example.nl"])
        conn = project.connect()
        report = status(conn, "gr2026", now=MAIL1, fingerprints=fingerprints(project), transport=smtp.url)
        conn.close()
        warnings = report.as_dict()["warnings"]
        assert any(w.startswith("2 messages of mail 1 were in flight when the worker stopped") for w in warnings)
        run_worker(project, MAIL1)
        conn = project.connect()
        report = status(conn, "gr2026", now=MAIL1, fingerprints=fingerprints(project), transport=smtp.url)
        conn.close()
        assert not any("in flight" in w for w in report.as_dict()["warnings"])
