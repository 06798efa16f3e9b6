"""Fixes after the attacker's review (issues 11 and 12): erasure, privacy, opt-outs, nobody mailed
against their wish, every message telling the truth.

Through the CLI and the engine, with real SQLite files, real files and a real SMTP server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from .conftest import ROOT
from .smtp_server import Server


def rows(home: Path, query: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(home / "campaign.sqlite3")
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


@pytest.fixture
def ahead(run, project_ahead: Path):
    """``campaign`` against a copy of the project whose election is ahead."""
    def invoke(*args: str, input: str | None = None):
        return run(*args, root=project_ahead, input=input)

    return invoke


def contact_list(folder: Path, *addresses: str, name: str = "list.csv") -> Path:
    path = folder / name
    path.write_text("email;party;municipality\n" + "".join(f"{a};Partij;Teststad\n" for a in addresses),
                    encoding="utf-8")
    return path


# --- 1. simulate --out never deletes what it did not write ------------------------------------------

def test_simulate_refuses_a_folder_with_a_stray_timeline_and_deletes_nothing(run, home: Path, tmp_path: Path):
    folder = tmp_path / "D"
    (folder / "sub").mkdir(parents=True)
    (folder / "timeline.csv").write_text("x\n")
    (folder / "precious.docx").write_text("p\n")
    (folder / "sub" / "thesis.txt").write_text("t\n")
    result = run("simulate", "--out", str(folder))
    assert result.exit_code == 1
    assert "choose a new or empty folder" in result.output
    assert "Traceback" not in result.output
    assert (folder / "precious.docx").read_text() == "p\n"
    assert (folder / "sub" / "thesis.txt").read_text() == "t\n"
    assert (folder / "timeline.csv").read_text() == "x\n"


def test_simulate_again_removes_only_what_the_simulation_wrote(run, home: Path, tmp_path: Path):
    ours = tmp_path / "sim"
    assert run("simulate", "--out", str(ours)).exit_code == 0
    mail_folder = next(p for p in ours.iterdir() if p.is_dir())
    (ours / "notes.txt").write_text("mine\n")  # a person put a file beside the simulation
    (mail_folder / "remark.txt").write_text("also mine\n")
    again = run("simulate", "--out", str(ours))
    assert again.exit_code == 0, again.output
    assert (ours / "notes.txt").read_text() == "mine\n"
    assert (mail_folder / "remark.txt").read_text() == "also mine\n"
    assert (ours / "timeline.csv").is_file()
    assert len(list(mail_folder.glob("*.eml"))) == 5


def test_simulate_refuses_an_out_that_is_a_symlink_and_says_so(run, home: Path, tmp_path: Path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("k\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    result = run("simulate", "--out", str(link))
    assert result.exit_code == 1
    assert "is a symbolic link" in result.output
    assert "no timeline.csv" not in result.output
    assert (target / "keep.txt").read_text() == "k\n"
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


# --- 4. retry, approve and reschedule of a cancelled campaign or mail -------------------------------

def schedule_example(ahead) -> None:
    assert ahead("contacts", "import", str(ROOT / "contacts/example.csv")).exit_code == 0
    result = ahead("schedule", "--yes")
    assert result.exit_code == 0, result.output


def fail_mail_1_for(home: Path, address: str) -> None:
    """Mail 1 sending, with the row of ``address`` failed (as a 5xx leaves it)."""
    conn = sqlite3.connect(home / "campaign.sqlite3")
    with conn:
        conn.execute("UPDATE schedule SET state = 'sending' WHERE mail = 1")
        (cid,) = conn.execute("SELECT id FROM contacts WHERE email_key = ?", (address,)).fetchone()
        conn.execute("INSERT INTO ledger (campaign, mail, contact_id, state, message_id, updated_at)"
                     " VALUES ('gr2026', 1, ?, 'failed', '<x@y>', '2026-01-01T00:00:00Z')", (cid,))
    conn.close()


def test_retry_of_a_cancelled_campaign_is_refused_and_queues_nothing(ahead, home: Path):
    schedule_example(ahead)
    address = rows(home, "SELECT email_key FROM contacts ORDER BY id LIMIT 1")[0][0]
    fail_mail_1_for(home, address)
    assert ahead("cancel").exit_code == 0
    result = ahead("retry", "--mail", "1")
    assert result.exit_code == 1
    assert "queued again" not in result.output
    assert "Error: campaign gr2026 is cancelled, so nothing of it is sent any more and there is nothing to retry" \
        in result.output
    assert "campaign schedule" in result.output
    assert rows(home, "SELECT state FROM ledger") == [("failed",)]
    status = json.loads(ahead("status", "--json").output)
    assert status["mails"][0]["state"] == "cancelled"
    assert not any("overdue" in w for w in status["warnings"])


def test_retry_of_a_cancelled_mail_is_refused(ahead, home: Path):
    schedule_example(ahead)
    address = rows(home, "SELECT email_key FROM contacts ORDER BY id LIMIT 1")[0][0]
    fail_mail_1_for(home, address)
    assert ahead("cancel", "--mail", "1").exit_code == 0
    result = ahead("retry", "--mail", "1")
    assert result.exit_code == 1
    assert "Error: mail 1 of campaign gr2026 is cancelled" in result.output
    assert rows(home, "SELECT state FROM ledger") == [("failed",)]
    assert rows(home, "SELECT state FROM schedule WHERE mail = 1") == [("cancelled",)]


def test_reschedule_of_a_cancelled_mail_is_refused_and_does_not_bring_it_back(ahead, home: Path):
    schedule_example(ahead)
    assert ahead("cancel", "--mail", "2").exit_code == 0
    result = ahead("reschedule", "--mail", "2", "--at", "now")
    assert result.exit_code == 1
    assert "Error: mail 2 of campaign gr2026 is cancelled" in result.output and "nothing to move" in result.output
    assert rows(home, "SELECT state FROM schedule WHERE mail = 2") == [("cancelled",)]
    assert ahead("cancel").exit_code == 0
    whole = ahead("reschedule", "--mail", "3", "--at", "now")
    assert whole.exit_code == 1 and "campaign gr2026 is cancelled" in whole.output


def test_approve_of_a_cancelled_campaign_or_mail_is_refused(ahead, home: Path):
    schedule_example(ahead)
    conn = sqlite3.connect(home / "campaign.sqlite3")
    with conn:
        conn.execute("UPDATE schedule SET approved_fingerprint = 'old'")
    conn.close()
    assert ahead("cancel", "--mail", "2").exit_code == 0
    named = ahead("approve", "--mail", "2")
    assert named.exit_code == 1 and "Error: mail 2 of campaign gr2026 is cancelled" in named.output
    every = ahead("approve")
    assert every.exit_code == 0, every.output
    assert rows(home, "SELECT mail FROM schedule WHERE approved_fingerprint = 'old'") == [(2,)]
    assert ahead("cancel").exit_code == 0
    refused = ahead("approve")
    assert refused.exit_code == 1 and "campaign gr2026 is cancelled" in refused.output


# --- 5. plan --ics: no symlink followed, owner-only, DTSTAMP the moment it is made ------------------

def test_plan_ics_does_not_follow_a_symlink(ahead, home: Path, tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    link = tmp_path / "link.ics"
    link.symlink_to(victim)
    result = ahead("plan", "--ics", str(link))
    assert result.exit_code == 1
    assert "is a symbolic link" in result.output
    assert victim.read_text() == "do not touch\n"
    assert link.is_symlink()


def test_plan_ics_is_owner_only_and_stamped_when_made(ahead, home: Path, tmp_path: Path):
    import datetime as dt

    path = tmp_path / "plan.ics"
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    result = ahead("plan", "--ics", str(path))
    after = dt.datetime.now(dt.timezone.utc)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    stamps = [line.split(":", 1)[1] for line in text.splitlines() if line.startswith("DTSTAMP:")]
    starts = [line.split(":", 1)[1] for line in text.splitlines() if line.startswith("DTSTART:")]
    assert len(stamps) == 9 and len(set(stamps)) == 1
    made = dt.datetime.strptime(stamps[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert before <= made <= after
    assert not set(stamps) & set(starts)


# --- 6. a FIFO is refused before it is opened ------------------------------------------------------

@pytest.mark.parametrize("command", [["contacts", "import"], ["contacts", "unsubscribe", "--from"]])
def test_a_fifo_is_refused_instead_of_hanging(run, home: Path, tmp_path: Path, command: list[str]):
    import threading

    fifo = tmp_path / "list.csv"
    os.mkfifo(fifo)

    # A writer that opens the FIFO and closes it at once: should the command open it after all,
    # it reads an empty file and ends (and the test fails) instead of waiting forever.
    def writer() -> None:
        os.close(os.open(fifo, os.O_WRONLY))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        result = run(*command, str(fifo))
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # frees the writer if nobody read
        thread.join(timeout=10)  # daemon: never keeps the test run alive
    assert result.exit_code == 1
    assert f"{fifo}: is not a regular file" in result.output
    assert "Traceback" not in result.output


# --- 7. CAMPAIGN_HOME set but empty -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("command", [["status"], ["contacts", "list"]])
def test_an_empty_campaign_home_is_an_error_naming_the_variable(run, home: Path, tmp_path: Path, monkeypatch,
                                                                 value: str, command: list[str]):
    from .conftest import copy_project

    root = copy_project(tmp_path / "project")
    monkeypatch.setenv("CAMPAIGN_HOME", value)
    monkeypatch.chdir(root)
    result = run(*command, root=root)
    assert result.exit_code == 1
    assert ("Error: CAMPAIGN_HOME is set but empty: unset it to use var/ in the project folder, or name a folder"
            in result.output)
    assert "Traceback" not in result.output
    assert not (root / "var").exists()


# --- 8. campaign check flags [test] recipients that are contacts or suppressed ---------------------

def test_check_flags_a_test_recipient_that_reaches_a_contact(run, configured_home: Path, tmp_path: Path):
    # The settings' test recipient is staf@zender.test-org.nl; a contact is that mailbox with a tag.
    assert run("contacts", "import", str(contact_list(tmp_path, "Staf+lijst@zender.test-org.nl"))).exit_code == 0
    result = run("check", "--json")
    assert result.exit_code == 1
    found = [f for f in json.loads(result.output)["findings"] if "[test] recipients" in f["message"]]
    assert [f["level"] for f in found] == ["error"]
    assert "s***@zender.test-org.nl reaches the mailbox of an imported contact" in found[0]["message"]
    assert "staf@" not in result.output.lower()


def test_check_flags_a_test_recipient_that_is_suppressed(run, configured_home: Path):
    assert run("contacts", "unsubscribe", "staf@zender.test-org.nl").exit_code == 0
    result = run("check")
    assert result.exit_code == 1
    assert "is on the suppression list" in result.output and "[test] recipients" in result.output


def test_check_has_no_test_recipient_finding_for_a_staff_address(run, configured_home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "iemand@partij.nl"))).exit_code == 0
    result = run("check", "--json")
    assert not [f for f in json.loads(result.output)["findings"] if "[test] recipients" in f["message"]]


# --- 9. typed addresses are normalised the same way by every contacts command ----------------------

@pytest.mark.parametrize("command", [["remove"], ["unsubscribe"], ["reactivate"], ["show"]])
@pytest.mark.parametrize("typed", ["", "jan@@example.nl"])
def test_an_invalid_typed_address_is_an_error_and_changes_nothing(run, home: Path, tmp_path: Path,
                                                                 command: list[str], typed: str):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan@example.nl"))).exit_code == 0
    before = rows(home, "SELECT email, status FROM contacts")
    result = run("contacts", *command, typed)
    assert result.exit_code == 1, result.output
    assert "is not a usable address" in result.output
    assert "not a contact" not in result.output
    assert rows(home, "SELECT email, status FROM contacts") == before
    assert rows(home, "SELECT COUNT(*) FROM suppressions") == [(0,)]


def test_remove_finds_a_contact_typed_in_another_form(run, home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "x@xn--bcher-kva.nl"))).exit_code == 0
    result = run("contacts", "remove", " X@Bücher.nl ")
    assert result.exit_code == 0, result.output
    assert "Removed 1 contact." in result.output
    assert rows(home, "SELECT status FROM contacts") == [("removed",)]


def test_remove_of_a_valid_and_an_invalid_address_changes_nothing(run, home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan@example.nl"))).exit_code == 0
    result = run("contacts", "remove", "jan@example.nl", "kapot@@example.nl")
    assert result.exit_code == 1
    assert "nothing was changed" in result.output
    assert rows(home, "SELECT status FROM contacts") == [("active",)]


# --- 10. the reason of an opt-out ------------------------------------------------------------------------

@pytest.mark.parametrize(("reason", "said"), [("per mail\nFAKE: line", "control character"),
                                              ("\x1b[2Jcleared", "control character"),
                                              ("x" * 201, "201 characters long")])
def test_an_opt_out_reason_with_control_characters_or_too_long_is_a_usage_error(run, home: Path, tmp_path: Path,
                                                                               reason: str, said: str):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan@example.nl"))).exit_code == 0
    result = run("contacts", "unsubscribe", "jan@example.nl", "--reason", reason)
    assert result.exit_code == 2
    assert "--reason" in result.output and said in result.output
    assert "\x1b" not in result.output
    assert rows(home, "SELECT status FROM contacts") == [("active",)]


def test_a_plain_reason_of_200_characters_is_kept(run, home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan@example.nl"))).exit_code == 0
    reason = "Vroeg per brief om afmelding; " + "é" * 170
    assert run("contacts", "unsubscribe", "jan@example.nl", "--reason", reason).exit_code == 0
    assert rows(home, "SELECT status, status_reason FROM contacts") == [("unsubscribed", reason)]


# --- 11. empty rows are counted in the import summary ------------------------------------------------

def test_rows_of_only_delimiters_are_counted_as_skipped(run, home: Path, tmp_path: Path):
    path = tmp_path / "list.csv"
    path.write_text("email;party;municipality\njan@example.nl;A;B\n;;\n;;\npiet@example.nl;A;B\n ; ;\n",
                    encoding="utf-8")
    result = run("contacts", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output
    assert "3 empty rows skipped" in result.output


def test_an_import_without_empty_rows_says_nothing_about_them(run, home: Path, tmp_path: Path):
    result = run("contacts", "import", str(contact_list(tmp_path, "jan@example.nl")))
    assert result.exit_code == 0
    assert "empty row" not in result.output


# --- 3. opt-outs and erasures cover the +tag and Gmail-dot forms of the same mailbox -----------------

GMAIL_FORMS = ("base.person+raad@gmail.com", "baseperson@gmail.com", "Base.Person@googlemail.com")


def test_an_opt_out_of_a_non_contact_refuses_the_other_forms_of_its_mailbox(run, home: Path, tmp_path: Path):
    assert run("contacts", "unsubscribe", "base.person@gmail.com").exit_code == 0
    result = run("contacts", "import", str(contact_list(tmp_path, *GMAIL_FORMS, "other@gmail.com")))
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "3 refused as opted out" in result.output
    assert result.output.count("reaches the mailbox of an address that opted out earlier") == 3
    assert rows(home, "SELECT email_key FROM contacts") == [("other@gmail.com",)]


def test_an_opt_out_with_a_tag_refuses_the_plain_address(run, home: Path, tmp_path: Path):
    assert run("contacts", "unsubscribe", "stranger+tag@example.nl").exit_code == 0
    result = run("contacts", "import", str(contact_list(tmp_path, "stranger@example.nl", "stranger+x@example.nl")))
    assert result.exit_code == 0, result.output
    assert "0 added" in result.output and "2 refused as opted out" in result.output


def test_a_contact_who_opts_out_is_kept_out_under_another_form(run, home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "base.person@gmail.com"))).exit_code == 0
    assert run("contacts", "unsubscribe", "base.person@gmail.com").exit_code == 0
    assert rows(home, "SELECT COUNT(*) FROM suppressions") == [(2,)]  # the address and its mailbox
    result = run("contacts", "import", str(contact_list(tmp_path, *GMAIL_FORMS, name="again.csv")))
    assert "0 added" in result.output and "3 refused as opted out" in result.output


def test_a_contact_who_opted_out_before_hashes_were_kept_still_blocks_other_forms(run, home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan@example.nl"))).exit_code == 0
    assert run("contacts", "unsubscribe", "jan@example.nl").exit_code == 0
    conn = sqlite3.connect(home / "campaign.sqlite3")
    with conn:
        conn.execute("DELETE FROM suppressions")  # as an older version left it: the status only
    conn.close()
    result = run("contacts", "import", str(contact_list(tmp_path, "jan+raad@example.nl", name="again.csv")))
    assert "0 added" in result.output and "1 refused as opted out" in result.output
    assert "reaches the mailbox of the contact j***@example.nl, who opted out" in result.output


def test_set_status_unsubscribed_stores_the_hashes(home: Path, tmp_path: Path):
    from mailer import store
    from mailer.contacts import import_contacts, set_status

    conn = store.connect(home)
    try:
        import_contacts(conn, contact_list(tmp_path, "jan.de.vries@gmail.com"), default_basis="test")
        assert set_status(conn, ["jan.de.vries@gmail.com"], status="unsubscribed", reason="reply") == (1, [])
        # The address changes (the contact is removed by hand); the mailbox stays opted out.
        conn.execute("DELETE FROM contacts")
        result = import_contacts(conn, contact_list(tmp_path, "jandevries@gmail.com", "jan.de.vries@gmail.com",
                                                    name="again.csv"), default_basis="test")
    finally:
        conn.close()
    assert (result.added, result.opted_out) == (0, 2)


def test_unsubscribe_reaches_the_contacts_of_the_same_mailbox(run, home: Path, tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan+raad@example.nl", "piet@example.nl"))).exit_code == 0
    result = run("contacts", "unsubscribe", "jan@example.nl")
    assert result.exit_code == 0, result.output
    assert "Unsubscribed 1 contact." in result.output
    assert rows(home, "SELECT email_key, status FROM contacts ORDER BY id") == [
        ("jan+raad@example.nl", "unsubscribed"), ("piet@example.nl", "active")]


def test_an_erasure_of_a_tagged_address_refuses_the_plain_one_for_import_and_test_mail(run, configured_home: Path,
                                                                                        tmp_path: Path):
    assert run("contacts", "import", str(contact_list(tmp_path, "jan.bakker+raad@bücher.example"))).exit_code == 0
    assert run("contacts", "forget", "jan.bakker+raad@bücher.example", "--yes").exit_code == 0
    sent = run("send-test", "--to", "jan.bakker@bücher.example", "--mail", "1")
    assert sent.exit_code == 1
    assert "is on the suppression list" in sent.output
    assert not (configured_home / "outbox" / "test").exists() or not any((configured_home / "outbox" / "test").iterdir())
    again = run("contacts", "import", str(contact_list(tmp_path, "jan.bakker@bücher.example", name="again.csv")))
    assert "0 added" in again.output and "1 refused as erased" in again.output


def test_an_erasure_request_before_import_covers_the_other_forms(run, home: Path, tmp_path: Path):
    assert run("contacts", "forget", "base.person+x@gmail.com", "--yes", "--not-imported").exit_code == 0
    result = run("contacts", "import", str(contact_list(tmp_path, "base.person@gmail.com")))
    assert "0 added" in result.output and "1 refused as erased" in result.output


# --- 2. the outbox reached no one: shown as such, and sent for real after a switch -----------------

def write_mail_1_to_the_outbox(ahead) -> None:
    schedule_example(ahead)  # no CAMPAIGN_SMTP_URL: the outbox
    assert ahead("reschedule", "--mail", "1", "--at", "now").exit_code == 0
    worked = ahead("worker", "--once")
    assert worked.exit_code == 0, worked.output
    assert "Wrote 5 message(s) to the outbox" in worked.output
    assert "nothing left this machine" in worked.output
    assert "Sent 5" not in worked.output


def next_window_moment(project_root: Path):
    """A moment inside the send window on the next open day (the worker sends only then)."""
    import datetime as dt

    from mailer.plan import closed_reason, window_open
    from mailer.project import Project

    policy = Project.at(project_root).load_campaign().settings.schedule
    today = dt.datetime.now(dt.timezone.utc).date()
    for offset in range(1, 15):
        day = today + dt.timedelta(days=offset)
        if not closed_reason(day, policy):
            return (window_open(day, policy) + dt.timedelta(hours=1)).astimezone(dt.timezone.utc)
    raise AssertionError("no open day in two weeks")


def test_outbox_writes_are_shown_as_outbox_not_as_sent(ahead, home: Path):
    write_mail_1_to_the_outbox(ahead)
    report = json.loads(ahead("status", "--json").output)
    first = report["mails"][0]
    assert (first["sent"], first["outbox"]) == (0, 5)
    assert first["state"] == "written to the outbox"
    table = ahead("status").output
    assert "outbox" in table.splitlines()[0] and "written to the outbox" in table
    shown = ahead("contacts", "show", "renee.jansen@example.nl")
    assert "written to the outbox (not delivered)" in shown.output
    sends = json.loads(ahead("contacts", "show", "renee.jansen@example.nl", "--json").output)["sends"]
    assert [(s["mail"], s["state"], s["transport"]) for s in sends] == [(1, "outbox", "outbox")]
    simulated = ahead("simulate")
    assert simulated.exit_code == 0, simulated.output
    assert "Simulated 45 messages" in simulated.output and "Skipped" not in simulated.output


def test_switch_from_the_outbox_after_outbox_writes_sends_them_for_real(ahead, configured_home: Path,
                                                                        project_ahead: Path, monkeypatch):
    from mailer.deliver import Worker
    from mailer.project import Project

    home = configured_home
    write_mail_1_to_the_outbox(ahead)
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        switched = ahead("schedule", "--switch-transport", "--yes")
        assert switched.exit_code == 0, switched.output
        assert f"from the outbox to {smtp.url}" in switched.output
        assert ("5 message(s) that were only written to the outbox (they reached no one) are back in the queue"
                in switched.output)
        assert "Mail 1 had gone only to the outbox and its planned moment has passed: it goes out now, within the " \
               "send window" in switched.output
        assert rows(home, "SELECT DISTINCT state, transport, sent_at FROM ledger") == [("pending", "", None)]
        assert rows(home, "SELECT state, outside_window FROM schedule WHERE mail = 1") == [("scheduled", 0)]
        status = json.loads(ahead("status", "--json").output)["mails"][0]
        assert (status["sent"], status["outbox"], status["pending"]) == (0, 0, 5)
        moment = next_window_moment(project_ahead)
        stats = Worker(Project.at(project_ahead), clock=lambda: moment,
                       env={"CAMPAIGN_SMTP_URL": smtp.url}).run(once=True)
        assert stats.sent == 5 and smtp.recorder.count() == 5
    report = json.loads(ahead("status", "--json").output)["mails"][0]
    assert (report["state"], report["sent"], report["outbox"]) == ("sent", 5, 0)
    monkeypatch.delenv("CAMPAIGN_SMTP_URL")
    back = ahead("schedule", "--switch-transport", "--yes")  # real sends: no way back to the outbox
    assert back.exit_code == 1 and "5 message(s) of this campaign went out through" in back.output


def test_a_new_schedule_for_smtp_after_cancel_does_not_keep_outbox_mails_as_sent(ahead, configured_home: Path,
                                                                                 monkeypatch):
    home = configured_home
    write_mail_1_to_the_outbox(ahead)
    assert ahead("cancel").exit_code == 0
    with Server() as smtp:
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", smtp.url)
        again = ahead("schedule", "--yes")
    assert again.exit_code == 0, again.output
    assert "sent completely before" not in again.output
    assert rows(home, "SELECT state FROM schedule WHERE mail = 1") == [("scheduled",)]
    assert rows(home, "SELECT DISTINCT state, transport FROM ledger") == [("pending", "")]


def test_a_new_schedule_for_the_outbox_after_cancel_keeps_outbox_mails_written(ahead, home: Path):
    write_mail_1_to_the_outbox(ahead)
    assert ahead("cancel").exit_code == 0
    again = ahead("schedule", "--yes")
    assert again.exit_code == 0, again.output
    assert "Mail 1 was sent or written to the outbox completely before; it is not sent or written again." \
        in again.output
    assert rows(home, "SELECT state FROM schedule WHERE mail = 1") == [("done",)]
    first = json.loads(ahead("status", "--json").output)["mails"][0]
    assert (first["state"], first["outbox"]) == ("written to the outbox", 5)
