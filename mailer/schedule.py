"""Stage 5: the stored schedule and the ledger that the worker reads.

CLI commands write only these tables; the worker reads them. The ledger (one row per
campaign, mail and contact) is the single source of truth for what is due and what was sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from . import store
from .errors import PlanError, StateError
from .plan import Plan
from .render import RenderedMail

LEDGER_STATES = ("pending", "sending", "sent", "failed", "unknown", "suppressed", "cancelled")
WORKER_STALE = dt.timedelta(minutes=2)


def fingerprint(mail: RenderedMail) -> str:
    """What was approved: any change to subject, preheader, HTML or text changes it."""
    h = hashlib.sha256()
    for part in (mail.subject, mail.preheader, mail.html, mail.text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class StoredPlan:
    campaign: str
    options: dict
    transport: str
    created_at: str
    paused: bool
    cancelled: bool

    @property
    def election_day(self) -> dt.date:
        return dt.date.fromisoformat(self.options["election_day"])


def get_plan(conn: sqlite3.Connection, campaign: str) -> StoredPlan | None:
    row = conn.execute("SELECT * FROM plans WHERE campaign = ?", (campaign,)).fetchone()
    if row is None:
        return None
    return StoredPlan(campaign=campaign, options=json.loads(row["options"]), transport=row["transport"],
                      created_at=row["created_at"], paused=bool(row["paused"]), cancelled=bool(row["cancelled"]))


def require_plan(conn: sqlite3.Connection, campaign: str) -> StoredPlan:
    plan = get_plan(conn, campaign)
    if plan is None:
        raise StateError(f"campaign {campaign} is not scheduled (see `campaign plan` and `campaign schedule`)")
    return plan


def plan_options(plan: Plan) -> dict:
    return {**plan.options(), "election_day": plan.election_day.isoformat()}


def store_schedule(
    conn: sqlite3.Connection,
    plan: Plan,
    *,
    fingerprints: dict[int, str],
    transport: str,
    now: dt.datetime,
) -> bool:
    """Store the plan; returns False when the same plan was stored already.

    A different plan for a campaign that is already scheduled is refused: staff move single
    mails with ``reschedule`` or start over after ``cancel``.
    """
    options = plan_options(plan)
    with store.transaction(conn):
        existing = get_plan(conn, plan.campaign)
        if existing is not None and not existing.cancelled:
            if existing.options == options:
                if existing.transport != transport:
                    raise PlanError(f"the plan is stored with transport {existing.transport}, not {transport}; "
                                    "cancel it first to change the transport")
                return False
            raise PlanError(
                "a different plan is already stored for this campaign "
                f"(made with {_describe_options(existing.options)}); move single mails with "
                "`campaign reschedule --mail N --at WHEN`, or `campaign cancel` and schedule again"
            )
        if existing is not None:
            # Starting over after a cancel: sends that never happened may be planned anew;
            # the ledger keeps every row that was sent, so nobody gets a mail twice.
            conn.execute("DELETE FROM schedule WHERE campaign = ?", (plan.campaign,))
            conn.execute("DELETE FROM ledger WHERE campaign = ? AND state = 'cancelled'", (plan.campaign,))
            conn.execute("DELETE FROM plans WHERE campaign = ?", (plan.campaign,))
        conn.execute("INSERT INTO plans (campaign, options, transport, created_at) VALUES (?, ?, ?, ?)",
                     (plan.campaign, json.dumps(options, sort_keys=True), transport, store.iso(now)))
        for s in plan.sends:
            conn.execute(
                "INSERT INTO schedule (campaign, mail, theme, due_at, approved_fingerprint) VALUES (?, ?, ?, ?, ?)",
                (plan.campaign, s.mail, s.theme, store.iso(s.at), fingerprints[s.mail]),
            )
    return True


def _describe_options(options: dict) -> str:
    parts = []
    if options.get("start"):
        parts.append(f"--start {options['start']}")
    if options.get("election_date"):
        parts.append(f"--election-date {options['election_date']}")
    return " ".join(parts) or "no options"


def parse_when(text: str, *, timezone: str, now: dt.datetime) -> dt.datetime:
    """``now`` or an ISO date-time; without an offset it is read in the campaign's time zone."""
    if text.strip().lower() == "now":
        return now
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PlanError(f"--at {text!r}: not an ISO date-time like 2027-02-03T10:00, or 'now'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


def reschedule(conn: sqlite3.Connection, campaign: str, mail: int, at: dt.datetime, *, now: dt.datetime) -> dt.datetime:
    """Move one mail; outside the window is allowed (staff's explicit choice), after election day is not."""
    plan = require_plan(conn, campaign)
    if plan.cancelled:
        raise StateError(f"campaign {campaign} is cancelled; schedule it again first")
    if at < now - dt.timedelta(minutes=1):
        raise PlanError(f"{at:%Y-%m-%d %H:%M} is in the past; use --at now to send at once")
    if at.date() >= plan.election_day:
        raise PlanError(f"{at:%Y-%m-%d} is on or after election day ({plan.election_day}); refused")
    with store.transaction(conn):
        row = conn.execute("SELECT state FROM schedule WHERE campaign = ? AND mail = ?", (campaign, mail)).fetchone()
        if row is None:
            raise StateError(f"campaign {campaign} has no mail {mail}")
        if row["state"] in ("sending", "done"):
            raise StateError(f"mail {mail} has already started sending; it cannot be moved "
                             "(use `campaign cancel --mail N` to stop it)")
        conn.execute("UPDATE schedule SET due_at = ?, state = 'scheduled', outside_window = 1"
                     " WHERE campaign = ? AND mail = ?",
                     (store.iso(max(at, now)), campaign, mail))
    return max(at, now)


def set_paused(conn: sqlite3.Connection, campaign: str, paused: bool) -> None:
    require_plan(conn, campaign)
    with store.transaction(conn):
        conn.execute("UPDATE plans SET paused = ? WHERE campaign = ?", (int(paused), campaign))


def cancel(conn: sqlite3.Connection, campaign: str, *, mail: int | None, now: dt.datetime) -> int:
    """Stop a mail (or the whole campaign): nothing more of it is sent. Returns sends called off."""
    require_plan(conn, campaign)
    moment = store.iso(now)
    with store.transaction(conn):
        where, args = ("campaign = ?", (campaign,)) if mail is None else ("campaign = ? AND mail = ?", (campaign, mail))
        if mail is not None and conn.execute(f"SELECT 1 FROM schedule WHERE {where}", args).fetchone() is None:
            raise StateError(f"campaign {campaign} has no mail {mail}")
        conn.execute(f"UPDATE schedule SET state = 'cancelled' WHERE {where} AND state != 'done'", args)
        n = conn.execute(f"UPDATE ledger SET state = 'cancelled', updated_at = ? WHERE {where} AND state = 'pending'",
                         (moment, *args)).rowcount
        if mail is None:
            conn.execute("UPDATE plans SET cancelled = 1 WHERE campaign = ?", (campaign,))
    return n


def retry(conn: sqlite3.Connection, campaign: str, *, mail: int, now: dt.datetime) -> int:
    """Put failed and unknown sends of a mail back in the queue; returns how many. An unknown
    one may have arrived the first time, so its second copy is counted as resent."""
    require_plan(conn, campaign)
    with store.transaction(conn):
        n = conn.execute(
            "UPDATE ledger SET state = 'pending', next_attempt_at = NULL, error = '', updated_at = ?,"
            " resent = resent + (state = 'unknown')"
            " WHERE campaign = ? AND mail = ? AND state IN ('failed', 'unknown')"
            " AND contact_id IN (SELECT id FROM contacts WHERE status = 'active')",
            (store.iso(now), campaign, mail)).rowcount
        if n:
            conn.execute("UPDATE schedule SET state = 'sending' WHERE campaign = ? AND mail = ? AND state = 'done'",
                         (campaign, mail))
    return n


def approve(conn: sqlite3.Connection, campaign: str, fingerprints: dict[int, str], *, mails: Iterable[int] | None) -> list[int]:
    """Approve the current version of changed mails; returns the mails whose approval changed."""
    require_plan(conn, campaign)
    wanted = set(mails) if mails is not None else None
    changed = []
    with store.transaction(conn):
        for row in conn.execute("SELECT mail, approved_fingerprint FROM schedule WHERE campaign = ?", (campaign,)).fetchall():
            n = row["mail"]
            if (wanted is None or n in wanted) and fingerprints.get(n) and fingerprints[n] != row["approved_fingerprint"]:
                conn.execute("UPDATE schedule SET approved_fingerprint = ? WHERE campaign = ? AND mail = ?",
                             (fingerprints[n], campaign, n))
                changed.append(n)
    return changed


@dataclass(frozen=True)
class MailStatus:
    number: int
    theme: str
    due_at: dt.datetime
    state: str
    counts: dict[str, int]
    resent: int
    changed: bool


@dataclass(frozen=True)
class StatusReport:
    campaign: str
    scheduled: bool
    transport: str
    paused: bool
    cancelled: bool
    election_day: dt.date | None
    mails: tuple[MailStatus, ...]
    worker_pid: int | None
    worker_heartbeat: dt.datetime | None
    worker_running: bool
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        return {
            "campaign": self.campaign, "scheduled": self.scheduled, "transport": self.transport,
            "paused": self.paused, "cancelled": self.cancelled,
            "election_day": self.election_day.isoformat() if self.election_day else None,
            "worker": {"running": self.worker_running, "pid": self.worker_pid,
                       "last_seen": store.iso(self.worker_heartbeat) if self.worker_heartbeat else None},
            "mails": [{"number": m.number, "theme": m.theme, "due_at": store.iso(m.due_at), "state": m.state,
                       **m.counts, "resent": m.resent, "changed_since_approval": m.changed} for m in self.mails],
            "warnings": list(self.warnings),
        }


def worker_seen(conn: sqlite3.Connection, *, now: dt.datetime) -> tuple[int | None, dt.datetime | None, bool]:
    row = conn.execute("SELECT pid, heartbeat_at, stopped_at FROM worker WHERE id = 1").fetchone()
    if row is None or row["heartbeat_at"] is None:
        return None, None, False
    beat = store.parse_iso(row["heartbeat_at"])
    running = row["stopped_at"] is None and now - beat < WORKER_STALE
    return row["pid"], beat, running


def _excluded(conn: sqlite3.Connection, campaign: str) -> dict[int, int]:
    """Per mail: contacts not active (bounced, unsubscribed, removed) without a row for it."""
    inactive = conn.execute("SELECT COUNT(*) FROM contacts WHERE status != 'active'").fetchone()[0]
    if not inactive:
        return {}
    return {row["mail"]: row["n"] for row in conn.execute(
        "SELECT s.mail, (SELECT COUNT(*) FROM contacts c WHERE c.status != 'active' AND NOT EXISTS"
        " (SELECT 1 FROM ledger l WHERE l.campaign = s.campaign AND l.mail = s.mail AND l.contact_id = c.id)) AS n"
        " FROM schedule s WHERE s.campaign = ?", (campaign,))}


def status(conn: sqlite3.Connection, campaign: str, *, now: dt.datetime, fingerprints: dict[int, str] | None,
           transport: str) -> StatusReport:
    """Per mail: planned moment, state and counts; the transport; the worker; what needs attention."""
    plan = get_plan(conn, campaign)
    pid, beat, running = worker_seen(conn, now=now)
    if plan is None:
        return StatusReport(campaign=campaign, scheduled=False, transport=transport, paused=False, cancelled=False,
                            election_day=None, mails=(), worker_pid=pid, worker_heartbeat=beat, worker_running=running,
                            warnings=("not scheduled: see `campaign plan` and `campaign schedule`",))
    counts: dict[int, dict[str, int]] = {}
    resent: dict[int, int] = {}
    for row in conn.execute("SELECT mail, state, COUNT(*) AS n, SUM(resent) AS r FROM ledger WHERE campaign = ?"
                            " GROUP BY mail, state", (campaign,)):
        counts.setdefault(row["mail"], dict.fromkeys(LEDGER_STATES, 0))[row["state"]] = row["n"]
        resent[row["mail"]] = resent.get(row["mail"], 0) + (row["r"] or 0)
    excluded = _excluded(conn, campaign)
    mails = []
    warnings = []
    for row in conn.execute("SELECT * FROM schedule WHERE campaign = ? ORDER BY mail", (campaign,)):
        n = row["mail"]
        due = store.parse_iso(row["due_at"])
        # "excluded": contacts that get no row for this mail because they bounced, opted out or
        # were removed before it was prepared (those who left later are "suppressed").
        c = {**counts.get(n, dict.fromkeys(LEDGER_STATES, 0)), "excluded": excluded.get(n, 0)}
        changed = fingerprints is not None and fingerprints.get(n) != row["approved_fingerprint"]
        state = row["state"]
        if state == "done":
            shown = "sent" if not (c["failed"] or c["unknown"]) else "sent, with failures"
        elif state == "cancelled":
            shown = "cancelled"
        elif plan.paused:
            shown = "paused"
        elif changed:
            shown = "held: changed since approval"
        elif due > now:
            shown = "scheduled"
        else:
            shown = "sending" if state == "sending" else "due"
            if not running:
                warnings.append(f"mail {n} is overdue since {store.iso(due)} and no worker is running "
                                "(start `campaign worker`)")
        if changed and state not in ("done", "cancelled"):
            warnings.append(f"mail {n} changed after it was approved; it is held until `campaign approve --mail {n}`")
        mails.append(MailStatus(number=n, theme=row["theme"], due_at=due, state=shown, counts=c,
                                resent=resent.get(n, 0), changed=changed))
    if plan.transport != transport and not plan.cancelled:
        warnings.append(f"the plan was stored for transport {plan.transport}, but this environment gives "
                        f"{transport}; a worker started here refuses to send")
    return StatusReport(campaign=campaign, scheduled=True, transport=plan.transport, paused=plan.paused,
                        cancelled=plan.cancelled, election_day=plan.election_day, mails=tuple(mails),
                        worker_pid=pid, worker_heartbeat=beat, worker_running=running, warnings=tuple(warnings))
