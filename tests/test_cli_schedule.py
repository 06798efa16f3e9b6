"""plan, schedule, steering commands, status and simulate, through the CLI with real SQLite files."""

from __future__ import annotations

import csv
import datetime as dt
import email
import json
import sqlite3
from email import policy
from pathlib import Path

import pytest

from .conftest import ELECTION_AHEAD, ROOT

ELECTION = ELECTION_AHEAD


@pytest.fixture
def run(run, project_ahead: Path):
    """``campaign`` against a copy of the project whose election is ahead (the bundled one is past)."""
    def invoke(*args: str, root: Path = project_ahead, input: str | None = None):
        return run(*args, root=root, input=input)

    return invoke


def rows(home: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(home / "campaign.sqlite3")
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def scheduled(run) -> None:
    assert run("contacts", "import", str(ROOT / "contacts/example.csv")).exit_code == 0
    result = run("schedule", "--yes")
    assert result.exit_code == 0, result.output
    assert "Stored." in result.output


def test_plan_refuses_the_past_election_with_a_hint(run):
    result = run("plan", root=ROOT)
    assert result.exit_code == 1
    assert "Error: election day Wed 18 Mar 2026 is not in the future" in result.output
    assert "campaign new NAME --from-campaign gr2026 --election-day DATE" in result.output


def test_plan_prints_nine_moments_and_writes_ics(run, tmp_path: Path):
    ics = tmp_path / "plan.ics"
    result = run("plan", "--ics", str(ics))
    assert result.exit_code == 0, result.output
    assert result.output.count("09:00") == 9
    assert ics.read_text(encoding="utf-8").count("BEGIN:VEVENT") == 9


def test_schedule_same_options_shows_the_plan_other_options_refuse(run, home: Path):
    scheduled(run)
    before = rows(home, "SELECT mail, due_at FROM schedule ORDER BY mail")
    assert len(before) == 9
    again = run("schedule")
    assert again.exit_code == 0 and "already stored" in again.output
    other = run("schedule", "--start", (dt.date.today() + dt.timedelta(days=100)).isoformat(), "--yes")
    assert other.exit_code == 1
    assert "reschedule" in other.output and "cancel" in other.output
    assert rows(home, "SELECT mail, due_at FROM schedule ORDER BY mail") == before


def test_schedule_without_a_terminal_or_yes_refuses(run, home: Path):
    result = run("schedule")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert not (home / "campaign.sqlite3").exists() or not rows(home, "SELECT * FROM schedule")


def test_reschedule_moves_exactly_one_mail(run, home: Path):
    scheduled(run)
    before = dict(rows(home, "SELECT mail, due_at FROM schedule"))
    when = (dt.date.fromisoformat(ELECTION) - dt.timedelta(days=30)).isoformat() + "T21:30"
    result = run("reschedule", "--mail", "4", "--at", when)
    assert result.exit_code == 0, result.output
    after = dict(rows(home, "SELECT mail, due_at FROM schedule"))
    assert {k for k in before if before[k] != after[k]} == {4}
    assert rows(home, "SELECT outside_window FROM schedule WHERE mail = 4") == [(1,)]
    late = run("reschedule", "--mail", "4", "--at", ELECTION + "T10:00")
    assert late.exit_code == 1 and "on or after election day" in late.output


def test_pause_resume_cancel_retry_change_only_their_rows(run, home: Path):
    scheduled(run)
    assert run("pause").exit_code == 0
    assert rows(home, "SELECT paused FROM plans") == [(1,)]
    assert "paused" in json.loads(run("status", "--json").output)["mails"][0]["state"]
    assert run("resume").exit_code == 0
    assert rows(home, "SELECT paused FROM plans") == [(0,)]
    # Pretend mail 2 is under way: two sent, one failed, one unknown, one pending.
    conn = sqlite3.connect(home / "campaign.sqlite3")
    ids = [r[0] for r in conn.execute("SELECT id FROM contacts ORDER BY id")]
    for cid, state in zip(ids, ["sent", "sent", "failed", "unknown", "pending"]):
        conn.execute("INSERT INTO ledger (campaign, mail, contact_id, state, message_id, updated_at) "
                     "VALUES ('gr2026', 2, ?, ?, 'x', 'now')", (cid, state))
    conn.execute("UPDATE schedule SET state = 'sending' WHERE mail = 2")
    conn.commit()
    conn.close()
    result = run("retry", "--mail", "2")
    assert "2 send(s) of mail 2 queued again" in result.output
    assert sorted(r[0] for r in rows(home, "SELECT state FROM ledger")) == ["pending"] * 3 + ["sent"] * 2
    result = run("cancel", "--mail", "2")
    assert "3 pending send(s) called off" in result.output
    assert sorted(r[0] for r in rows(home, "SELECT state FROM ledger")) == ["cancelled"] * 3 + ["sent"] * 2
    states = dict(rows(home, "SELECT mail, state FROM schedule"))
    assert states[2] == "cancelled" and all(states[n] == "scheduled" for n in states if n != 2)
    assert run("cancel").exit_code == 0
    assert set(dict(rows(home, "SELECT mail, state FROM schedule")).values()) == {"cancelled"}
    status = json.loads(run("status", "--json").output)
    assert status["cancelled"] is True
    assert status["mails"][1]["sent"] == 2  # sent mails stay recorded


def test_status_shows_counts_transport_and_worker(run):
    scheduled(run)
    result = run("status")
    assert result.exit_code == 0
    assert "transport: outbox" in result.output
    assert "Worker: has never run." in result.output
    data = json.loads(run("status", "--json").output)
    assert [m["number"] for m in data["mails"]] == list(range(1, 10))
    assert data["contacts"]["active"] == 5


def test_simulate_gives_every_active_contact_nine_mails_in_order(run, home: Path):
    scheduled(run)
    run("contacts", "unsubscribe", "sanne.devries@example.org")
    result = run("simulate")
    assert result.exit_code == 0, result.output
    assert "on the stored schedule" in result.output and "36 messages for 4 contact(s)" in result.output
    out = home / "simulation" / "gr2026"
    with (out / "timeline.csv").open(encoding="utf-8") as fh:
        timeline = list(csv.DictReader(fh))
    planned = {int(m): dt.datetime.strptime(d, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
               for m, d in rows(home, "SELECT mail, due_at FROM schedule")}
    by_contact: dict[str, list[tuple[int, dt.datetime]]] = {}
    for row in timeline:
        by_contact.setdefault(row["contact"], []).append((int(row["mail"]), dt.datetime.fromisoformat(row["moment"])))
    assert set(by_contact) == {"renee.jansen@example.nl", "zoe.vandenberg@example.org", "unal.demir@example.nl",
                               "info@stadspartij.example.nl"}
    for sends in by_contact.values():
        assert [m for m, _ in sends] == list(range(1, 10))
        for mail, moment in sends:
            assert planned[mail] <= moment < planned[mail] + dt.timedelta(minutes=10)
    first = email.message_from_bytes((out / timeline[0]["file"]).read_bytes(), policy=policy.default)
    assert first["Subject"] == "Wonen Eerst: herstel begint met een thuis"
    # Nothing counts as delivered.
    assert rows(home, "SELECT COUNT(*) FROM ledger") == [(0,)]


def test_simulate_without_schedule_uses_the_policy(run):
    result = run("simulate", root=ROOT)
    assert result.exit_code == 0, result.output
    assert "not scheduled yet" in result.output
    assert "Wed 4 Mar 2026" in result.output  # the last mail, two weeks before election day
