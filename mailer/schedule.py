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
from pathlib import Path
from zoneinfo import ZoneInfo

from . import store
from .i18n import N_, _, format_moment, ngettext
from .errors import PlanError, StateError
from .plan import Plan
from .render import RenderedMail

LEDGER_STATES = ("pending", "sending", "sent", "failed", "unknown", "suppressed", "cancelled")
# What status counts per mail: the ledger's states, with the rows sent only to the outbox apart.
COUNTED_STATES = (*LEDGER_STATES, "outbox")


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
        raise StateError(_("campaign {campaign} is not scheduled (see `campaign plan` and `campaign schedule`)").format(
            campaign=campaign))
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
                mismatch = transport_mismatch(existing.transport, transport)
                if mismatch:
                    raise PlanError(mismatch)
                return False
            raise PlanError(
                _("a different plan is already stored for this campaign (made with {options}); move single "
                   "mails with `campaign reschedule --mail N --at WHEN`, or `campaign cancel` and schedule "
                   "again").format(options=_describe_options(existing.options))
            )
        done: set[int] = set()
        if existing is not None:
            done = _start_over(conn, plan.campaign, transport=transport, now=now)
            conn.execute("UPDATE plans SET options = ?, transport = ?, created_at = ?, paused = 0, cancelled = 0"
                         " WHERE campaign = ?",
                         (json.dumps(options, sort_keys=True), transport, store.iso(now), plan.campaign))
        else:
            conn.execute("INSERT INTO plans (campaign, options, transport, created_at) VALUES (?, ?, ?, ?)",
                         (plan.campaign, json.dumps(options, sort_keys=True), transport, store.iso(now)))
        for s in plan.sends:
            if s.mail in done:
                continue
            conn.execute(
                "INSERT INTO schedule (campaign, mail, theme, due_at, approved_fingerprint) VALUES (?, ?, ?, ?, ?)",
                (plan.campaign, s.mail, s.theme, store.iso(s.at), fingerprints[s.mail]),
            )
    return True


def _start_over(conn: sqlite3.Connection, campaign: str, *, transport: str, now: dt.datetime) -> set[int]:
    """Clear a cancelled plan for a new one; returns the mails it had sent completely.

    Sends that never happened may be planned anew. A mail that was sent completely stays
    'done' (with the moment it went), so that status shows it as sent and nobody is sent it
    again; the ledger keeps every row that was sent, so a partly sent mail goes only to the rest.
    For a real ``transport``, what was only written to the outbox reached no one: those rows go
    back to the queue and a mail done only that way is planned anew.
    The plan row is updated, not replaced: deleting it would cascade to the kept schedule rows.
    """
    if transport != "outbox":
        _requeue_outbox(conn, campaign, now=now, apply=True)
    done = {r["mail"] for r in conn.execute("SELECT mail FROM schedule WHERE campaign = ? AND state = 'done'",
                                            (campaign,))}
    conn.execute("DELETE FROM schedule WHERE campaign = ? AND state != 'done'", (campaign,))
    conn.execute("DELETE FROM ledger WHERE campaign = ? AND state = 'cancelled'", (campaign,))
    return done


def completed_mails(conn: sqlite3.Connection, campaign: str, *, transport: str = "outbox") -> list[int]:
    """Mails of a cancelled plan that were sent completely: a new schedule for ``transport`` keeps
    them as sent (for a real transport, not those that were only written to the outbox)."""
    plan = get_plan(conn, campaign)
    if plan is None or not plan.cancelled:
        return []
    only_outbox = "" if transport == "outbox" else (
        " AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.campaign = s.campaign AND l.mail = s.mail"
        " AND l.transport = 'outbox' AND l.state IN ('sent', 'sending', 'unknown'))")
    return [r["mail"] for r in conn.execute("SELECT mail FROM schedule s WHERE campaign = ? AND state = 'done'"
                                            + only_outbox + " ORDER BY mail", (campaign,))]


def transport_mismatch(stored: str, current: str) -> str | None:
    """Why a worker with transport ``current`` refuses a plan stored for ``stored``, and the way
    out; None when they agree. Used by the worker, ``schedule`` and ``status`` alike."""
    if stored == current:
        return None
    if stored == "outbox":
        return _("the plan is stored for the outbox (nothing leaves this machine), but CAMPAIGN_SMTP_URL here gives "
                 "{current}, so a worker started here refuses to send; to send through {current} instead, run "
                 "`campaign schedule --switch-transport` with this CAMPAIGN_SMTP_URL (what was written to the outbox "
                 "reached no one and is then sent for real), or unset CAMPAIGN_SMTP_URL to keep writing the mails to "
                 "the outbox").format(current=current)
    if current == "outbox":
        return _("the plan is stored for {stored}, but CAMPAIGN_SMTP_URL is not set here, so a worker started here "
                 "would write to the outbox instead and refuses to send; set CAMPAIGN_SMTP_URL={stored} (and "
                 "CAMPAIGN_SMTP_PASSWORD) as when you scheduled, or run `campaign schedule --switch-transport` "
                 "without it to keep the mails in the outbox (possible while nothing has been sent)").format(
                     stored=stored)
    return _("the plan is stored for {stored}, but CAMPAIGN_SMTP_URL here gives {current}, so a worker started here "
             "refuses to send; set CAMPAIGN_SMTP_URL={stored} as when you scheduled, or run `campaign schedule "
             "--switch-transport` with this CAMPAIGN_SMTP_URL to send through {current} instead (possible while "
             "nothing has been sent)").format(stored=stored, current=current)


@dataclass(frozen=True)
class ReplannedMail:
    """A mail that was done only through the outbox and is planned again for a real transport."""

    number: int
    due_at: dt.datetime
    passed: bool  # its planned moment had passed: it goes out now, within the send window


@dataclass(frozen=True)
class TransportChange:
    """What ``switch_transport`` did (or, with ``check_only``, would do)."""

    old: str
    requeued: int = 0  # rows written to the outbox that go back to the queue, to be sent for real
    replanned: tuple[ReplannedMail, ...] = ()


def _outbox_rows(campaign: str) -> tuple[str, tuple]:
    return ("campaign = ? AND transport = 'outbox' AND state IN ('sent', 'sending', 'unknown')", (campaign,))


def _requeue_outbox(conn: sqlite3.Connection, campaign: str, *, now: dt.datetime, apply: bool) -> TransportChange:
    """Inside a transaction: what was only written to the outbox (it reached no one) goes back to
    the queue so that a real transport sends it: its rows to pending (suppressed for a contact no
    longer active, cancelled in a cancelled mail), and a mail done only through the outbox to
    'scheduled' at its planned moment, or now (within the send window) when that has passed.
    ``apply`` False only counts. The outbox files stay where they are (erasure still finds them)."""
    where, args = _outbox_rows(campaign)
    requeued = conn.execute(f"SELECT COUNT(*) FROM ledger WHERE {where}", args).fetchone()[0]
    done = [r for r in conn.execute(
        "SELECT mail, due_at FROM schedule s WHERE campaign = ? AND state = 'done' AND EXISTS (SELECT 1 FROM ledger l"
        " WHERE l.campaign = s.campaign AND l.mail = s.mail AND l.transport = 'outbox'"
        " AND l.state IN ('sent', 'sending', 'unknown')) ORDER BY mail", (campaign,))]
    replanned = []
    for row in done:
        due = store.parse_iso(row["due_at"])
        passed = due <= now
        replanned.append(ReplannedMail(number=row["mail"], due_at=now if passed else due, passed=passed))
    if apply and requeued:
        moment = store.iso(now)
        conn.execute(
            "UPDATE ledger SET state = CASE"
            # A mail cancelled in a plan that goes on stays cancelled; a cancelled plan is being
            # scheduled again (see _start_over), and its mails with it.
            " WHEN (SELECT state FROM schedule s WHERE s.campaign = ledger.campaign AND s.mail = ledger.mail)"
            " = 'cancelled' AND (SELECT cancelled FROM plans p WHERE p.campaign = ledger.campaign) = 0"
            " THEN 'cancelled' WHEN (SELECT status FROM contacts c WHERE c.id = ledger.contact_id) = 'active' THEN "
            "'pending' ELSE 'suppressed' END, transport = '', attempts = 0, next_attempt_at = NULL, sent_at = NULL, "
            "error = '', updated_at = ?"
            f" WHERE {where}", (moment, *args))
        for mail in replanned:
            # A moment that passed becomes now, inside the window: the staff's reschedule was for then.
            conn.execute("UPDATE schedule SET state = 'scheduled', due_at = ?,"
                         " outside_window = CASE WHEN ? THEN 0 ELSE outside_window END"
                         " WHERE campaign = ? AND mail = ?",
                         (store.iso(mail.due_at), int(mail.passed), campaign, mail.number))
    return TransportChange(old="outbox", requeued=requeued, replanned=tuple(replanned))


def switch_transport(conn: sqlite3.Connection, campaign: str, *, transport: str, now: dt.datetime | None = None,
                     check_only: bool = False) -> TransportChange:
    """Store another transport for the plan, keeping its moments and reschedules.

    From the outbox to a real transport, what was written to the outbox (it reached no one)
    goes back to the queue to be sent for real (see ``_requeue_outbox``). Refused for a
    cancelled plan, and once anything went out through a real transport: 'sent', 'sending' and
    'unknown' rows may have reached someone that way. ``check_only`` raises what a switch would
    raise and says what it would do, changing nothing.
    """
    now = now or store.now_utc()
    with store.transaction(conn):
        plan = require_plan(conn, campaign)
        if plan.cancelled:
            raise StateError(_("campaign {campaign} is cancelled, so it has no transport to switch; schedule it again "
                                "with `campaign schedule`, which stores the transport of this environment").format(
                                    campaign=campaign))
        if plan.transport == transport:
            return TransportChange(old=plan.transport)
        if plan.transport == "outbox":
            change = _requeue_outbox(conn, campaign, now=now, apply=not check_only)
        else:
            gone = conn.execute("SELECT COUNT(*) FROM ledger WHERE campaign = ? AND transport = ?"
                                " AND state IN ('sent', 'sending', 'unknown')", (campaign, plan.transport)).fetchone()[0]
            if gone:
                raise StateError(
                    _("refused: {gone} message(s) of this campaign went out through {transport} already, so "
                       "its transport can no longer be switched (the rest of the series would go another way "
                       "than the mails before it); start the worker with the stored transport, or `campaign "
                       "cancel` and `campaign schedule` again to send the mails not yet sent through "
                       "{transport2} (mails already sent stay sent)").format(
                           gone=gone, transport=plan.transport, transport2=transport))
            change = TransportChange(old=plan.transport)
        if not check_only:
            conn.execute("UPDATE plans SET transport = ? WHERE campaign = ?", (transport, campaign))
    return change


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
        raise PlanError(_("--at {text}: not an ISO date-time like 2027-02-03T10:00, or 'now'").format(
            text=repr(text))) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


def reschedule(conn: sqlite3.Connection, campaign: str, mail: int, at: dt.datetime, *, now: dt.datetime) -> dt.datetime:
    """Move one mail; outside the window is allowed (staff's explicit choice), after election day is not."""
    plan = require_plan(conn, campaign)
    refuse_if_cancelled(conn, plan, mail, action="move")
    if at < now - dt.timedelta(minutes=1):
        # isoformat, not %Y: strftime writes the year 999 as '999'.
        raise PlanError(_("{date} {at} is in the past; use --at now to send at once").format(
            date=at.date().isoformat(), at=format(at, "%H:%M")))
    if at.date() >= plan.election_day:
        raise PlanError(_("{date} is on or after election day ({election_day}); refused").format(
            date=at.date().isoformat(), election_day=plan.election_day))
    with store.transaction(conn):
        row = conn.execute("SELECT state FROM schedule WHERE campaign = ? AND mail = ?", (campaign, mail)).fetchone()
        if row is None:
            raise StateError(_("campaign {campaign} has no mail {mail}").format(campaign=campaign, mail=mail))
        refuse_if_cancelled(conn, require_plan(conn, campaign), mail, action="move")  # cancelled meanwhile
        if row["state"] in ("sending", "done"):
            raise StateError(_("mail {mail} has already started sending; it cannot be moved (use `campaign cancel "
                                "--mail N` to stop it)").format(mail=mail))
        conn.execute("UPDATE schedule SET due_at = ?, state = 'scheduled', outside_window = 1"
                     " WHERE campaign = ? AND mail = ?",
                     (store.iso(max(at, now)), campaign, mail))
    return max(at, now)


def set_paused(conn: sqlite3.Connection, campaign: str, paused: bool) -> None:
    """Pause or resume sending; a cancelled campaign has nothing to pause or resume."""
    plan = require_plan(conn, campaign)
    if plan.cancelled:
        if paused:
            raise StateError(_("campaign {campaign} is cancelled, so there is nothing to pause: no mail of it is sent "
                                "any more; to send it after all, schedule it again with `campaign schedule`").format(
                                    campaign=campaign))
        raise StateError(_("campaign {campaign} is cancelled, so there is nothing to resume and nothing would be "
                            "sent; to send it after all, schedule it again with `campaign schedule`").format(
                                campaign=campaign))
    with store.transaction(conn):
        conn.execute("UPDATE plans SET paused = ? WHERE campaign = ?", (int(paused), campaign))


def cancel(conn: sqlite3.Connection, campaign: str, *, mail: int | None, now: dt.datetime) -> int:
    """Stop a mail (or the whole campaign): nothing more of it is sent. Returns sends called off."""
    require_plan(conn, campaign)
    moment = store.iso(now)
    with store.transaction(conn):
        where, args = ("campaign = ?", (campaign,)) if mail is None else ("campaign = ? AND mail = ?", (campaign, mail))
        if mail is not None and conn.execute(f"SELECT 1 FROM schedule WHERE {where}", args).fetchone() is None:
            raise StateError(_("campaign {campaign} has no mail {mail}").format(campaign=campaign, mail=mail))
        conn.execute(f"UPDATE schedule SET state = 'cancelled' WHERE {where} AND state != 'done'", args)
        n = conn.execute(f"UPDATE ledger SET state = 'cancelled', updated_at = ? WHERE {where} AND state = 'pending'",
                         (moment, *args)).rowcount
        if mail is None:
            conn.execute("UPDATE plans SET cancelled = 1 WHERE campaign = ?", (campaign,))
    return n


# The action a cancelled campaign refuses, as a verb that completes "nothing to ...".
_ACTIONS = {"move": N_("move"), "retry": N_("retry"), "approve": N_("approve")}


def refuse_if_cancelled(conn: sqlite3.Connection, plan: StoredPlan, mail: int | None, *, action: str) -> None:
    """Refuse ``action`` (a retry, an approval, a move) on a cancelled campaign or a cancelled mail,
    as pause and resume are refused: nothing of it is sent any more, so it would change nothing."""
    if plan.cancelled:
        raise StateError(_("campaign {campaign} is cancelled, so nothing of it is sent any more and there is "
                            "nothing to {action}; to send it after all, schedule it again with `campaign "
                            "schedule`").format(
                                campaign=plan.campaign, action=_(_ACTIONS[action])))
    if mail is None:
        return
    row = conn.execute("SELECT state FROM schedule WHERE campaign = ? AND mail = ?", (plan.campaign, mail)).fetchone()
    if row is not None and row["state"] == "cancelled":
        raise StateError(_("mail {mail} of campaign {campaign} is cancelled, so it is not sent any more and there "
                            "is nothing to {action}; to send it after all, `campaign cancel` the campaign and "
                            "schedule it again with `campaign schedule` (mails sent completely stay sent)").format(
                                mail=mail, campaign=plan.campaign, action=_(_ACTIONS[action])))


def require_mails(conn: sqlite3.Connection, campaign: str, mails: Iterable[int]) -> None:
    """Refuse a mail number that the stored schedule of the campaign does not have."""
    known = [row[0] for row in conn.execute("SELECT mail FROM schedule WHERE campaign = ? ORDER BY mail", (campaign,))]
    for mail in mails:
        if mail not in known:
            span = f"{known[0]}-{known[-1]}" if known else "none"
            raise StateError(_("campaign {campaign} has no mail {mail}; its mails are {span}").format(
                campaign=campaign, mail=mail, span=span))


def retry(conn: sqlite3.Connection, campaign: str, *, mail: int, now: dt.datetime) -> int:
    """Put failed and unknown sends of a mail back in the queue; returns how many. An unknown
    one may have arrived the first time, so its second copy is counted as resent."""
    plan = require_plan(conn, campaign)
    require_mails(conn, campaign, [mail])
    refuse_if_cancelled(conn, plan, mail, action="retry")
    with store.transaction(conn):
        refuse_if_cancelled(conn, require_plan(conn, campaign), mail, action="retry")  # cancelled meanwhile
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
    """Approve the current version of changed mails; returns the mails whose approval changed.
    Cancelled mails (and a cancelled campaign) are refused when named, and skipped otherwise."""
    plan = require_plan(conn, campaign)
    wanted = set(mails) if mails is not None else None
    require_mails(conn, campaign, sorted(wanted or ()))
    refuse_if_cancelled(conn, plan, None, action="approve")
    for n in sorted(wanted or ()):
        refuse_if_cancelled(conn, plan, n, action="approve")
    changed = []
    with store.transaction(conn):
        for row in conn.execute("SELECT mail, approved_fingerprint, state FROM schedule WHERE campaign = ?",
                                (campaign,)).fetchall():
            n = row["mail"]
            if row["state"] == "cancelled":
                continue
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
    """The worker's pid, its last heartbeat and whether one runs now.

    A worker runs exactly while a process holds the lock beside the database: a heartbeat
    says nothing about a worker that died (a write error, a refused start) a moment ago.
    """
    holder = worker_lock_holder(_home_of(conn))
    row = conn.execute("SELECT pid, heartbeat_at FROM worker WHERE id = 1").fetchone()
    beat = store.parse_iso(row["heartbeat_at"]) if row is not None and row["heartbeat_at"] else None
    if holder is not None:
        return holder or (row["pid"] if row is not None else None), beat, True
    return (row["pid"] if beat is not None else None), beat, False


def _home_of(conn: sqlite3.Connection) -> Path:
    # The lock lives beside the database file (both in $CAMPAIGN_HOME), so the connection says where.
    return Path(conn.execute("PRAGMA database_list").fetchone()[2]).parent


def worker_lock_holder(home: Path) -> int | None:
    """None when no process holds the worker lock; else the pid written in it (0 when unreadable).

    Probes the lock the way ``deliver.notify_worker`` does: a non-blocking flock that is
    released at once when it succeeds.
    """
    import fcntl

    path = home / "worker.lock"
    try:
        fh = open(path, "r")
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


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
           transport: str, timezone: str = "Europe/Amsterdam") -> StatusReport:
    """Per mail: planned moment, state and counts; the transport; the worker; what needs attention.

    The states and warnings are sentences in the interface language (``--json`` chooses English);
    moments in them are written in ``timezone``, the campaign's.
    """
    plan = get_plan(conn, campaign)
    pid, beat, running = worker_seen(conn, now=now)
    if plan is None:
        return StatusReport(campaign=campaign, scheduled=False, transport=transport, paused=False, cancelled=False,
                            election_day=None, mails=(), worker_pid=pid, worker_heartbeat=beat, worker_running=running,
                            warnings=(_("not scheduled: see `campaign plan` and `campaign schedule`"),))
    counts: dict[int, dict[str, int]] = {}
    resent: dict[int, int] = {}
    # "outbox": sent rows that were only written to the outbox; they reached no one, so "sent"
    # counts only what a mail server accepted.
    for row in conn.execute("SELECT mail, CASE WHEN state = 'sent' AND transport = 'outbox' THEN 'outbox' ELSE state"
                            " END AS shown, COUNT(*) AS n, SUM(resent) AS r FROM ledger WHERE campaign = ?"
                            " GROUP BY mail, shown", (campaign,)):
        counts.setdefault(row["mail"], dict.fromkeys(COUNTED_STATES, 0))[row["shown"]] = row["n"]
        resent[row["mail"]] = resent.get(row["mail"], 0) + (row["r"] or 0)
    excluded = _excluded(conn, campaign)
    from .inbox import counts_per_mail

    came_back = counts_per_mail(conn, campaign)
    mails = []
    warnings = []
    for row in conn.execute("SELECT * FROM schedule WHERE campaign = ? ORDER BY mail", (campaign,)):
        n = row["mail"]
        due = store.parse_iso(row["due_at"])
        # "excluded": contacts that get no row for this mail because they bounced, opted out or
        # were removed before it was prepared (those who left later are "suppressed").
        c = {**counts.get(n, dict.fromkeys(COUNTED_STATES, 0)), "excluded": excluded.get(n, 0)}
        # What came back by mail (campaign inbox), beside the ledger's states.
        c = {**c, **came_back.get(n, {"bounced": 0, "opted_out": 0})}
        changed = fingerprints is not None and fingerprints.get(n) != row["approved_fingerprint"]
        state = row["state"]
        if state == "done":
            if c["outbox"] and not c["sent"]:
                shown = _("written to the outbox")  # nothing of it reached anyone
            elif c["outbox"]:
                shown = _("sent, partly only to the outbox")
            else:
                shown = _("sent")
            if c["failed"] or c["unknown"]:
                shown = _("{state}, with failures").format(state=shown)
        elif state == "cancelled":
            shown = _("cancelled")
        elif plan.paused:
            shown = _("paused")
        elif changed:
            shown = _("held: changed since approval")
        elif due > now:
            shown = _("scheduled")
        else:
            shown = _("sending") if state == "sending" else _("due")
            if not running:
                warnings.append(_("mail {number} is overdue since {moment} and no worker is running (start "
                                  "`campaign worker`)").format(number=n, moment=format_moment(due, timezone)))
        if c["sending"] and not running:
            # Rows a worker claimed and then stopped on (killed, or it crashed): shown nowhere in
            # the table's columns, so say where they are and what becomes of them.
            warnings.append(ngettext(
                "{count} message of mail {number} was in flight when the worker stopped: the next `campaign worker` "
                "settles it (recorded as sent, or sent again and counted as resent if it may have arrived)",
                "{count} messages of mail {number} were in flight when the worker stopped: the next `campaign worker` "
                "settles them (recorded as sent, or sent again and counted as resent if they may have arrived)",
                c["sending"]).format(count=c["sending"], number=n))
        if changed and state not in ("done", "cancelled"):
            warnings.append(_("mail {number} changed after it was approved; it is held until `campaign approve "
                              "--mail {number}`").format(number=n))
        mails.append(MailStatus(number=n, theme=row["theme"], due_at=due, state=shown, counts=c,
                                resent=resent.get(n, 0), changed=changed))
    mismatch = transport_mismatch(plan.transport, transport)
    if mismatch and not plan.cancelled:
        warnings.append(mismatch)
    return StatusReport(campaign=campaign, scheduled=True, transport=plan.transport, paused=plan.paused,
                        cancelled=plan.cancelled, election_day=plan.election_day, mails=tuple(mails),
                        worker_pid=pid, worker_heartbeat=beat, worker_running=running, warnings=tuple(warnings))
