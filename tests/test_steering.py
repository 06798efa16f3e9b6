"""Steering does what it says, when it says it: pause/resume/cancel, the stored transport, the
worker shown in status, and what a new schedule after a cancel does with mails already sent.

Through the CLI with real SQLite files, a real SMTP server and real second processes.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailer.deliver import Worker, check_transport
from mailer.errors import DeliveryError
from mailer.project import Project
from mailer.schedule import worker_seen
from mailer.transport import transport_config

from .conftest import ELECTION_AHEAD, ROOT
from .smtp_server import Server

ELECTION = ELECTION_AHEAD
CLI = [sys.executable, "-c", "import cli; cli.cli()", "--project"]


@pytest.fixture
def run(run, project_ahead: Path):
    """``campaign`` against a copy of the project whose election is ahead (the bundled one is past)."""
    def invoke(*args: str, root: Path = project_ahead, input: str | None = None):
        return run(*args, root=root, input=input)

    return invoke


def rows(home: Path, query: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(home / "campaign.sqlite3")
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def scheduled(run) -> None:
    assert run("contacts", "import", str(ROOT / "contacts/example.csv")).exit_code == 0
    result = run("schedule", "--yes")
    assert result.exit_code == 0, result.output


def send_mail_1_now(run) -> None:
    """Move mail 1 to now and let one worker pass send it to the five example contacts."""
    assert run("reschedule", "--mail", "1", "--at", "now").exit_code == 0
    result = run("worker", "--once")
    assert result.exit_code == 0, result.output
    # Through a mail server it is sent; through the outbox only written (it reaches no one).
    assert "Sent 5," in result.output or "Wrote 5 message(s) to the outbox" in result.output


# A real second process that holds the worker lock the way a worker does, until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from mailer.deliver import WorkerLock
with WorkerLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def lock_holder(home: Path) -> Iterator[int]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


# --- pause and resume after cancel ----------------------------------------------------------------

def test_resume_and_pause_of_a_cancelled_campaign_are_refused(run, home: Path):
    scheduled(run)
    assert run("cancel").exit_code == 0
    resumed = run("resume")
    assert resumed.exit_code == 1
    assert "Resumed" not in resumed.output
    assert "Error: campaign gr2026 is cancelled, so there is nothing to resume" in resumed.output
    assert "schedule it again with `campaign schedule`" in resumed.output
    paused = run("pause")
    assert paused.exit_code == 1
    assert "Paused" not in paused.output
    assert "Error: campaign gr2026 is cancelled, so there is nothing to pause" in paused.output
    assert "schedule it again with `campaign schedule`" in paused.output
    assert rows(home, "SELECT paused, cancelled FROM plans") == [(0, 1)]
    status = run("status")
    assert "(cancelled)" in status.output and "(paused)" not in status.output


def test_a_campaign_paused_then_cancelled_shows_as_cancelled(run):
    scheduled(run)
    assert run("pause").exit_code == 0
    assert run("cancel").exit_code == 0
    status = run("status")
    assert "Campaign gr2026 (cancelled);" in status.output


# --- where mail goes, and switching it ------------------------------------------------------------

def read_until(fd: int, marker: bytes | None, *, limit: float = 60.0) -> bytes:
    """What a terminal shows until ``marker`` appears (or, with None, until the program ends)."""
    seen = b""
    deadline = time.monotonic() + limit  # a safety net against a hung child, not an assertion
    while time.monotonic() < deadline and (marker is None or marker not in seen):
        if not select.select([fd], [], [], 1.0)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_schedule_says_where_mail_goes_before_the_staff_member_confirms(home: Path, project_ahead: Path):
    import pty

    env = {**os.environ, "CAMPAIGN_HOME": str(home)}
    env.pop("CAMPAIGN_SMTP_URL", None)
    master, slave = pty.openpty()
    child = subprocess.Popen(CLI + [str(project_ahead), "schedule"], cwd=ROOT, env=env,
                             stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        before = read_until(master, b"Store this plan?").decode()
        assert "Store this plan?" in before
        os.write(master, b"n\n")
        read_until(master, None)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
    asked = before[:before.index("Store this plan?")]
    assert "Mail goes to the outbox" in asked and "nothing leaves this machine" in asked
    assert child.returncode == 1  # declined: nothing stored
    assert not (home / "campaign.sqlite3").exists() or rows(home, "SELECT COUNT(*) FROM plans") == [(0,)]


def test_schedule_names_the_transport_it_stored(run, configured_home: Path, monkeypatch):
    assert run("contacts", "import", str(ROOT / "contacts/example.csv")).exit_code == 0
    result = run("schedule", "--yes")
    assert result.exit_code == 0, result.output
    assert "Mail goes to the outbox" in result.output
    assert "Stored. The worker writes each mail to the outbox" in result.output
    assert result.output.count("nothing leaves this machine") == 2  # before storing, and after
    assert run("cancel").exit_code == 0
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        again = run("schedule", "--yes")
    assert again.exit_code == 0, again.output
    assert f"Mail goes out through {smtp.url}" in again.output
    assert f"Stored. The worker sends each mail through {smtp.url}" in again.output
    assert "nothing leaves this machine" not in again.output


def test_switch_transport_without_a_schedule_is_refused_and_creates_nothing(run, home: Path):
    result = run("schedule", "--switch-transport", "--yes")
    assert result.exit_code == 1
    assert "Error: campaign gr2026 is not scheduled, so it has no transport to switch" in result.output
    assert not (home / "campaign.sqlite3").exists()


def test_schedule_again_with_smtp_points_to_the_switch_instead_of_a_dead_end(run, configured_home: Path,
                                                                              monkeypatch):
    scheduled(run)  # without CAMPAIGN_SMTP_URL: the outbox
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        again = run("schedule", "--yes")
    assert again.exit_code == 1
    assert "the plan is stored for the outbox" in again.output
    assert smtp.url in again.output
    assert "campaign schedule --switch-transport" in again.output
    assert rows(configured_home, "SELECT transport FROM plans") == [("outbox",)]


def test_switch_transport_keeps_the_reschedules_and_is_refused_once_mail_went_out(run, configured_home: Path,
                                                                                 monkeypatch):
    home = configured_home
    scheduled(run)  # the outbox
    when = (dt.date.fromisoformat(ELECTION) - dt.timedelta(days=30)).isoformat() + "T21:30"
    assert run("reschedule", "--mail", "4", "--at", when).exit_code == 0
    before = rows(home, "SELECT mail, due_at, state, outside_window FROM schedule ORDER BY mail")
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        refused = run("worker", "--once")
        assert refused.exit_code == 1
        assert "campaign schedule --switch-transport" in refused.output
        needs_yes = run("schedule", "--switch-transport")
        assert needs_yes.exit_code == 2 and "--yes" in needs_yes.output
        mixed = run("schedule", "--switch-transport", "--start", "2027-01-06", "--yes")
        assert mixed.exit_code == 2 and "--switch-transport" in mixed.output
        switched = run("schedule", "--switch-transport", "--yes")
        assert switched.exit_code == 0, switched.output
        assert f"from the outbox to {smtp.url}" in switched.output
        assert rows(home, "SELECT transport FROM plans") == [(smtp.url,)]
        assert rows(home, "SELECT mail, due_at, state, outside_window FROM schedule ORDER BY mail") == before
        same = run("schedule", "--switch-transport", "--yes")
        assert same.exit_code == 0 and "already stored for" in same.output
        send_mail_1_now(run)
        assert smtp.recorder.count() == 5
    monkeypatch.delenv("CAMPAIGN_SMTP_URL")
    back = run("schedule", "--switch-transport", "--yes")
    assert back.exit_code == 1
    assert f"5 message(s) of this campaign went out through {smtp.url} already" in back.output
    assert "campaign cancel" in back.output
    assert rows(home, "SELECT transport FROM plans") == [(smtp.url,)]


def test_the_worker_refusal_names_both_transports_and_the_way_out(configured_home: Path, project_ahead: Path):
    project = Project.at(project_ahead)
    smtp = transport_config({"CAMPAIGN_SMTP_URL": "smtp://campagne@mail.example.nl:587"})
    outbox = transport_config({})
    with pytest.raises(DeliveryError) as stored_outbox:
        check_transport(project, smtp, stored="outbox")
    message = str(stored_outbox.value)
    assert "stored for the outbox" in message and "smtp://campagne@mail.example.nl:587" in message
    assert "campaign schedule --switch-transport" in message
    assert "as when you scheduled" not in message
    with pytest.raises(DeliveryError) as stored_smtp:
        check_transport(project, outbox, stored="smtp://campagne@mail.example.nl:587")
    message = str(stored_smtp.value)
    assert "CAMPAIGN_SMTP_URL=smtp://campagne@mail.example.nl:587" in message
    assert "outbox" in message and "campaign schedule --switch-transport" in message


# --- the worker in status ---------------------------------------------------------------------------

def test_status_shows_a_worker_exactly_while_a_process_holds_the_lock(run, home: Path):
    scheduled(run)
    with lock_holder(home) as pid:
        report = json.loads(run("status", "--json").output)
        assert report["worker"]["running"] is True and report["worker"]["pid"] == pid
        assert f"Worker: running (pid {pid}" in run("status").output
    report = json.loads(run("status", "--json").output)
    assert report["worker"]["running"] is False
    assert "Worker: running" not in run("status").output


def test_a_refused_second_worker_never_says_it_started(run, home: Path):
    scheduled(run)
    with lock_holder(home) as pid:
        second = run("worker")
        assert second.exit_code == 1
        assert f"a worker is already running (pid {pid})" in second.output
        assert "Worker started" not in second.output
        assert json.loads(run("status", "--json").output)["worker"]["pid"] == pid


def test_a_worker_refused_at_start_does_not_show_as_running(run, configured_home: Path, monkeypatch):
    scheduled(run)  # the outbox
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        once = run("worker", "--once")
        assert once.exit_code == 1
        report = json.loads(run("status", "--json").output)
        assert report["worker"]["running"] is False
        assert "Worker: running" not in run("status").output
        refused = run("worker")
        assert refused.exit_code == 1
        assert "Worker started" not in refused.output
        assert json.loads(run("status", "--json").output)["worker"]["running"] is False
    assert smtp.recorder.count() == 0


def test_the_started_signal_comes_once_the_lock_is_held(run, home: Path, project_ahead: Path):
    scheduled(run)
    project = Project.at(project_ahead)
    seen = []

    def started() -> None:
        conn = project.connect()
        try:
            seen.append(worker_seen(conn, now=dt.datetime.now(dt.timezone.utc)))
        finally:
            conn.close()

    Worker(project, clock=lambda: dt.datetime.now(dt.timezone.utc)).run(once=True, started=started)
    assert len(seen) == 1
    pid, _beat, running = seen[0]
    assert running and pid == os.getpid()


# --- a new schedule after a cancel --------------------------------------------------------------------

def test_a_new_schedule_after_cancel_keeps_sent_mails_sent_and_simulate_skips_them(run, configured_home: Path,
                                                                                     monkeypatch):
    # Sent through a mail server: what only went to the outbox reached no one (see test_review_fixes_data).
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        _keeps_sent_mails_sent(run, configured_home)


def _keeps_sent_mails_sent(run, home: Path) -> None:
    scheduled(run)
    send_mail_1_now(run)
    assert run("cancel").exit_code == 0
    again = run("schedule", "--yes")
    assert again.exit_code == 0, again.output
    assert "Mail 1 was sent completely before; it stays sent and is not sent again." in again.output
    report = json.loads(run("status", "--json").output)
    first = report["mails"][0]
    assert (first["state"], first["sent"]) == ("sent", 5)
    assert [m["state"] for m in report["mails"][1:]] == ["scheduled"] * 8
    assert rows(home, "SELECT state FROM schedule WHERE mail = 1") == [("done",)]
    assert "Sent 0," in run("worker", "--once").output  # nothing is due: mail 1 is not sent twice

    result = run("simulate")
    assert result.exit_code == 0, result.output
    assert "Simulated 40 messages for 5 contact(s)" in result.output
    assert "Skipped 5 message(s) that the ledger records as sent through a mail server already." in result.output
    with (home / "simulation" / "gr2026" / "timeline.csv").open(encoding="utf-8") as fh:
        timeline = list(csv.DictReader(fh))
    assert len(timeline) == 40 and {int(r["mail"]) for r in timeline} == set(range(2, 10))


def test_simulate_skips_pairs_already_sent_for_this_campaign(run, configured_home: Path, monkeypatch):
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        scheduled(run)
        send_mail_1_now(run)
    result = run("simulate")
    assert result.exit_code == 0, result.output
    assert "Simulated 40 messages" in result.output
    assert "Skipped 5 message(s)" in result.output
