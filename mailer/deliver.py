"""Stage 6: the worker that sends each mail when it is due, exactly once as far as SMTP allows.

The ledger is the single source of truth. For each message: claim the row (pending ->
sending) in a committed transaction, send, then record the outcome. A row found in
``sending`` when a worker starts belonged to a worker that died mid-send: the server may or
may not have accepted it, so it is sent again with the same Message-ID and counted as resent.
At most one message is in flight per connection, so a kill duplicates at most that one. It
rarely does: a message's final dot is written only once the next message is built, and each
250 is appended to a journal file before anything else; the next start records the rows the
journal names as sent instead of sending them again (see ``_open_journal``).

A claim succeeds only while the campaign is neither paused nor cancelled (checked in the
claim's own statement), so once ``pause`` returns no new message leaves. A mail is done only
when every contact active at that moment has a settled row: contacts imported while it sends
get it in the same run.

Unknown outcomes: when the answer to a message's final dot never comes (the connection is
lost, no answer within RFC 5321's 10 minutes, or the worker is stopped while it waits), the
row is recorded as ``unknown``. The next pass that reaches the server sends it again, with the
same Message-ID, and counts it as resent (possibly a duplicate), until it has had
MAX_ATTEMPTS attempts; after that it waits for ``campaign retry``. The mail is not done while
such a row may still go.

Circuit breaker: when ``[delivery] failure_threshold`` messages in a row (default 10) get the
same refusal (the same 5xx code and enhanced code, or the connection lost after the data
each time), the worker stops claiming and stops with an error that quotes the answer. 4xx
answers are retried with back-off and do not count. Refused rows of
that run go back to pending without using an attempt, and the contacts they would have
marked bounced stay active, so that after the relay is fixed ``campaign worker`` simply goes
on. A server that cannot be reached at all (refused, silent, lost before any data) stops the
pass at the first failure: nothing more is claimed, no attempt is used, and a long-running
worker tries again on its next wake.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from .i18n import _
from . import store
from .contacts import Contact, _row_to_contact
from .errors import DeliveryError, SenderNotConfigured, StateError
from .inbox import imap_config
from .message import Envelope, build_message
from .personalise import personalise
from .plan import closed_reason, window_close, window_open
from .project import Project
from .render import RenderedMail, Renderer
from .schedule import fingerprint, get_plan, transport_mismatch
from .transport import (
    ConnectionFailure,
    PermanentFailure,
    TemporaryFailure,
    Throttled,
    TransportConfig,
    UnknownOutcome,
    enhanced_code,
    open_transport,
    transport_config,
)

MAX_ATTEMPTS = 5
BACKOFF = (60, 300, 900, 3600)  # seconds before attempts 2, 3, 4, 5
REREAD_SECONDS = 30  # how often a running worker re-reads the schedule: under a minute
WAIT_SLICE = 0.25  # how long a wait for answers goes without looking at stop, pause and the clock
STOP_GRACE = 5.0  # seconds a stopping worker still waits for answers to messages in flight
THROTTLE_PAUSE = 60.0  # seconds a worker waits after a slow-down answer before the next message
DAY = dt.timedelta(hours=24)
INBOX_SECONDS = 300  # how often it reads bounces and opt-outs when CAMPAIGN_IMAP_URL is set
# From a final dot until its answer is journalled, a kill leaves a message that the server may
# have taken, and the next start sends it again. Before the next dot the worker waits this long
# for the answers already due, so that with a server that answers within it (a relay on this
# machine or network) a kill finds at most one such message, however many connections; a slower
# server gets its messages in parallel, one unanswered per connection, as before.
DOT_WAIT = 0.002
# Waking a process that sleeps in select() costs 20-50 us on a busy machine: a fifth of a
# message's cycle against a fast relay, and all of it inside that window. So a worker with
# nothing else to do polls for the answer this long before it sleeps.
POLL = 0.0003
JOURNAL_HEADER = "campaign worker journal 2\n"


@dataclass
class RunStats:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    resent: int = 0
    held: list[int] = field(default_factory=list)
    last_error: str = ""
    resent_unknown: int = 0  # unknown outcomes of earlier passes sent again (possibly duplicates)
    throttled: int = 0  # slow-down answers: the message went back without using an attempt
    capped_until: dt.datetime | None = None  # the daily cap was reached: nothing more before this


class TransportUnavailable(DeliveryError):
    """The mail server cannot be reached now; a long-running worker tries again later."""


class RepeatedRefusal(DeliveryError):
    """The circuit breaker: the server refused too many messages in a row in the same way."""


_ADDRESS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")


def _masked(text: str) -> str:
    """A server's answer with every address in it masked (answers often quote the recipient)."""
    from .contacts import mask

    return _ADDRESS.sub(lambda m: mask(m.group(0).strip(".")), text)


def _refusal(exc: Exception) -> str:
    """What makes two failures "the same answer": the reply code and enhanced code, or the
    reply text without the addresses in it; the kind of failure for lost connections."""
    if isinstance(exc, UnknownOutcome):
        return "unknown"
    text = str(exc)
    code, _, rest = text.partition(" ")
    enhanced = enhanced_code(rest)
    if enhanced:
        return f"{code} {enhanced}"
    return f"{code} {_ADDRESS.sub('', rest).lower()}"


@dataclass
class _Streak:
    """The latest run of consecutive identical failures (a success or another answer ends it)."""

    signature: str = ""
    rows: list[tuple[int, str, Exception]] = field(default_factory=list)


def notify_worker(home: Path) -> bool:
    """Wake a running worker (SIGUSR1) so that a change reaches it at once; False when none runs."""
    import signal

    path = home / "worker.lock"
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip()
        else:
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False  # nobody holds the lock: no worker runs
    try:
        os.kill(int(pid), signal.SIGUSR1)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


class WorkerLock:
    """Only one worker at a time: an exclusive lock on a file beside the database."""

    def __init__(self, home: Path) -> None:
        self.path = home / "worker.lock"
        self.fh = None

    def __enter__(self) -> "WorkerLock":
        from . import files

        files.private_dir(self.path.parent)
        self.fh = files.open_private_append(self.path)
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            owner = self.fh.read().strip() or "another process"
            self.fh.close()
            raise StateError(_("a worker is already running (pid {owner}); only one may run at a time").format(
                owner=owner)) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


@contextmanager
def _take_worker_lock(home: Path, *, attempts: int = 3) -> Iterator[WorkerLock]:
    """The worker lock, asked for a few times: ``status`` and ``notify_worker`` probe it by taking
    it for a moment, and such a probe must not turn a worker away as if another one ran."""
    for attempt in range(attempts):
        try:
            lock = WorkerLock(home).__enter__()
            break
        except StateError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    try:
        yield lock
    finally:
        lock.__exit__(None, None, None)


def check_transport(project: Project, config: TransportConfig, *, stored: str | None) -> None:
    """Refuse to deliver through another transport than the one the schedule was stored with,
    and to send beyond the outbox while the sender still holds example values."""
    mismatch = transport_mismatch(stored, config.label) if stored is not None else None
    if mismatch:
        raise DeliveryError(mismatch)
    if config.kind != "outbox":
        deployment = project.deployment()
        if not deployment.configured:
            raise SenderNotConfigured(
                "the sender is not configured, so nothing is sent beyond the outbox: "
                + "; ".join(deployment.problems)
            )


class Worker:
    """Sends what is due. ``tick`` does one pass; ``run`` repeats it on APScheduler wake-ups."""

    def __init__(
        self,
        project: Project,
        *,
        clock: Callable[[], dt.datetime],
        rate_per_minute: int | None = None,
        env: dict[str, str] | None = None,
        progress: Callable[[int, int, int], None] | None = None,
        sleep: Callable[[float], bool] | None = None,
        on_error: Callable[[str], None] | None = None,
        connections: int | None = None,
        failure_threshold: int | None = None,
        stop_grace: float = STOP_GRACE,
        max_per_day: int | None = None,
    ) -> None:
        self.project = project
        self.clock = clock
        self.env = dict(os.environ) if env is None else env
        self.config = transport_config(self.env)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.progress = progress
        self.on_error = on_error
        # sleep(seconds) -> True when interrupted by stop
        self.sleep = sleep or (lambda seconds: self.stop.wait(seconds))
        self.campaign = project.load_campaign()
        deployment = project.deployment()
        self.rate = rate_per_minute or deployment.rate_per_minute or self.campaign.settings.schedule.rate_per_minute
        self.conn = project.connect()
        self.connections = connections or deployment.connections
        self.failure_threshold = failure_threshold or deployment.failure_threshold
        self.max_per_day = max_per_day if max_per_day is not None else deployment.max_per_day
        self.oauth = deployment.oauth
        if self.config.auth == "xoauth2":
            self.config.token_source(self.env, self.oauth)  # a missing token source shows now
        self._day: deque[dt.datetime] = deque()  # moments of the claims in the last 24 hours
        self._imap_tokens = None  # the inbox's token source when only the inbox logs in with XOAUTH2
        self.stop_grace = stop_grace
        self.transports: list = []
        self.stats = RunStats()
        self._rendered: dict[int, RenderedMail] = {}
        self._requeued: set[int] = set()  # mails whose unknown rows this pass already sent again
        self._journal: int | None = None  # file descriptor of the acceptance journal (see recover)

    # --- bookkeeping ---------------------------------------------------------------------

    def heartbeat(self, *, stopped: bool = False) -> None:
        now = store.iso(self.clock())
        with store.transaction(self.conn):
            self.conn.execute(
                "INSERT INTO worker (id, pid, started_at, heartbeat_at, stopped_at) VALUES (1, ?, ?, ?, NULL)"
                " ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, heartbeat_at = excluded.heartbeat_at,"
                " stopped_at = ?",
                (os.getpid(), now, now, now if stopped else None),
            )

    def recover(self) -> int:
        """Rows left in ``sending`` by a worker that died: those its journal says the server
        accepted are recorded as sent; those whose final dot was never written (the server holds
        no message) wait again as if never claimed; the others go again, same Message-ID, counted
        as resent (possibly a duplicate)."""
        accepted, handed = self._read_journal()
        with store.transaction(self.conn):
            moment = store.iso(self.clock())
            for ledger_id, mid in accepted:
                self.conn.execute(
                    "UPDATE ledger SET state = 'sent', error = '', updated_at = ?, sent_at = ?"
                    " WHERE id = ? AND message_id = ? AND state = 'sending'", (moment, moment, ledger_id, mid))
            if handed is not None:
                left = [row[0] for row in self.conn.execute("SELECT id FROM ledger WHERE state = 'sending'")]
                for ledger_id in left:
                    if ledger_id not in handed:
                        self.conn.execute("UPDATE ledger SET state = 'pending', attempts = MAX(attempts - 1, 0),"
                                          " next_attempt_at = NULL WHERE id = ?", (ledger_id,))
            n = self.conn.execute(
                "UPDATE ledger SET state = 'pending', resent = resent + 1, next_attempt_at = NULL,"
                " error = 'resent: the previous worker stopped while sending' WHERE state = 'sending'"
            ).rowcount
        # Emptied only now: a kill or a failed write before this commit leaves the journal to
        # the next start, which reads it again.
        self._journal_recorded()
        self.stats.resent += n
        return n

    # --- the acceptance journal ------------------------------------------------------------
    # A success is committed to the ledger with the next claim, in one transaction: one commit
    # per message. Until then, a kill would leave an accepted message in 'sending', and the
    # next start would send it again. So each 250 is first appended to this file (one write,
    # no fsync: it survives the process, which is what a kill ends; after a power failure the
    # row is sent again, a duplicate and never a gap). Only ids of accepted messages are ever
    # written, with their Message-ID, so an entry can only turn 'sending' into 'sent' for the
    # very message that was accepted. No personal data: ledger ids and Message-IDs (hashes).
    # Before each final dot a "handed ID" line is written too: a row left in 'sending' without
    # one was never handed over, so the next start neither counts it as resent nor uses up one
    # of its attempts. The header line says the journal holds those lines since it was emptied
    # (a journal without it, from an older version, leaves every such row counted as resent).

    def _open_journal(self) -> None:
        path = self.project.home / "worker.journal"
        self._journal = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(self._journal, 0o600)  # also when an older file was made with other rights

    def _read_journal(self) -> tuple[list[tuple[int, str]], set[int] | None]:
        """The (ledger id, Message-ID) of each accepted message the journal names, and the ids
        handed over since it was last emptied (None when it cannot say)."""
        path = self.project.home / "worker.journal"
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            text = ""
        accepted = []
        handed: set[int] | None = set() if text.startswith(JOURNAL_HEADER) else None
        for line in text.splitlines():
            ledger_id, _, mid = line.partition(" ")
            if ledger_id.isdigit() and mid:
                accepted.append((int(ledger_id), mid))
            elif ledger_id == "handed" and mid.isdigit() and handed is not None:
                handed.add(int(mid))
        return accepted, handed

    def _journal_handed(self, ledger_id: int) -> None:
        if self._journal is not None:
            os.write(self._journal, f"handed {ledger_id}\n".encode("ascii"))

    def _journal_accepted(self, ledger_id: int, mid: str) -> None:
        if self._journal is not None:
            os.write(self._journal, f"{ledger_id} {mid}\n".encode("ascii", "replace"))

    def _journal_recorded(self) -> None:
        """Every journalled success is in the ledger now, and no row is left in 'sending'."""
        if self._journal is None:
            self._open_journal()
        os.ftruncate(self._journal, 0)
        os.write(self._journal, JOURNAL_HEADER.encode("ascii"))

    def render(self, number: int) -> RenderedMail:
        if number not in self._rendered:
            renderer = Renderer(templates=self.project.templates, campaign=self.campaign,
                                deployment=self.project.deployment(), cache=self.project.render_cache)
            self._rendered[number] = renderer.render(self.campaign.mail(number))
        return self._rendered[number]

    # --- one pass ------------------------------------------------------------------------

    def due_mails(self, now: dt.datetime) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM schedule WHERE campaign = ? AND state IN ('scheduled', 'sending') AND due_at <= ?"
            " ORDER BY due_at, mail", (self.campaign.slug, store.iso(now))).fetchall()

    def next_wake(self) -> dt.datetime | None:
        """The next moment something falls due: a scheduled mail or a deferred retry."""
        row = self.conn.execute(
            "SELECT MIN(t) FROM (SELECT MIN(due_at) AS t FROM schedule WHERE campaign = ? AND state = 'scheduled'"
            " UNION ALL SELECT MIN(next_attempt_at) FROM ledger WHERE campaign = ? AND state = 'pending'"
            " AND next_attempt_at IS NOT NULL)", (self.campaign.slug, self.campaign.slug)).fetchone()
        return store.parse_iso(row[0]) if row and row[0] else None

    def in_window(self, row: sqlite3.Row, now: dt.datetime) -> bool:
        if row["outside_window"]:
            return True
        policy = self.campaign.settings.schedule
        local = now.astimezone(ZoneInfo(policy.timezone))
        if closed_reason(local.date(), policy):
            return False
        return window_open(local.date(), policy) <= local < window_close(local.date(), policy)

    def tick(self) -> RunStats:
        """Send everything that is due now; returns what this pass did."""
        slug = self.campaign.slug
        plan = get_plan(self.conn, slug)
        if plan is None or plan.cancelled or plan.paused:
            return self.stats
        check_transport(self.project, self.config, stored=plan.transport)
        self._requeued.clear()
        self._count_day()
        for row in self.due_mails(self.clock()):
            if self.stop.is_set():
                break
            now = self.clock()
            if now.astimezone(ZoneInfo(self.campaign.settings.schedule.timezone)).date() >= plan.election_day:
                continue  # never after election day; status shows it as overdue
            if not self.in_window(row, now):
                continue
            number = row["mail"]
            rendered = self.render(number)
            if fingerprint(rendered) != row["approved_fingerprint"]:
                if number not in self.stats.held:
                    self.stats.held.append(number)
                continue
            self.materialise(number, now)
            self.send_mail(number, rendered, row)
        return self.stats

    def _count_day(self) -> None:
        """The moments of the messages handed over in the last 24 hours, from the ledger (every
        campaign: the provider counts per mailbox), for the daily cap."""
        self._day.clear()
        self.stats.capped_until = None
        if not self.max_per_day:
            return
        since = store.iso(self.clock() - DAY)
        for (moment,) in self.conn.execute(
                "SELECT COALESCE(sent_at, updated_at) AS t FROM ledger WHERE state IN ('sent', 'unknown', 'sending')"
                " AND COALESCE(sent_at, updated_at) > ? ORDER BY t", (since,)):
            self._day.append(store.parse_iso(moment))

    def _under_cap(self, *, taken: int = 0) -> bool:
        """True while fewer than ``max_per_day`` messages went out in the last 24 hours (with
        ``taken`` about to be claimed); else records in ``stats.capped_until`` when the next may go."""
        if not self.max_per_day:
            return True
        now = self.clock()
        while self._day and self._day[0] <= now - DAY:
            self._day.popleft()
        if len(self._day) + taken < self.max_per_day:
            return True
        if not self._day:
            self.stats.capped_until = now + DAY
            return False
        self.stats.capped_until = self._day[0] + DAY
        return False

    def materialise(self, number: int, now: dt.datetime) -> None:
        """One ledger row per active contact for this mail; contacts added later join while it sends."""
        slug = self.campaign.slug
        with store.transaction(self.conn):
            self._add_rows(number, now)
            self.conn.execute("UPDATE schedule SET state = 'sending' WHERE campaign = ? AND mail = ? AND state = 'scheduled'",
                              (slug, number))

    def _add_rows(self, number: int, now: dt.datetime) -> int:
        """Inside a transaction: rows for active contacts that have none for this mail yet."""
        from .message import message_id

        slug = self.campaign.slug
        # Computed inside SQLite, so that 50,000 contacts never sit in Python's memory at once.
        self.conn.create_function("message_id", 4, message_id, deterministic=True)
        return self.conn.execute(
            "INSERT OR IGNORE INTO ledger (campaign, mail, contact_id, message_id, updated_at)"
            " SELECT ?, ?, c.id, message_id(?, ?, c.email, ?), ? FROM contacts c WHERE c.status = 'active'"
            " AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.campaign = ? AND l.mail = ? AND l.contact_id = c.id)",
            (slug, number, slug, number, self.project.deployment().sender.domain, store.iso(now), slug, number)).rowcount

    def still_allowed(self, number: int) -> bool:
        row = self.conn.execute(
            "SELECT s.state, p.paused, p.cancelled FROM schedule s JOIN plans p USING (campaign)"
            " WHERE s.campaign = ? AND s.mail = ?", (self.campaign.slug, number)).fetchone()
        return row is not None and row["state"] == "sending" and not row["paused"] and not row["cancelled"]

    def _open_transports(self) -> None:
        """Connect every connection before claiming anything, so that a wrong setting stops the
        run cleanly and an unreachable server leaves nothing claimed."""
        if self.transports:
            return
        count = self.connections if self.config.kind == "smtp" else 1
        opened = []
        try:
            for _ in range(count):
                transport = open_transport(self.config, outbox=self.project.outbox, env=self.env,
                                           interrupted=self.stop.is_set, oauth=self.oauth)
                opened.append(transport)
                opener = getattr(transport, "open", None)
                if opener is not None:
                    opener()
        except TemporaryFailure as exc:
            for t in opened:
                t.close()
            if self.stop.is_set():
                return  # told to stop while a server kept us waiting: nothing was claimed
            raise TransportUnavailable(str(exc)) from None
        except DeliveryError:
            for t in opened:
                t.close()
            raise
        self.transports = opened

    def _pending_rows(self, number: int) -> Iterator[sqlite3.Row]:
        """Rows of this mail that may be sent now, in ledger order, read 500 at a time; at the
        end, rows for contacts imported meanwhile, so that nobody active is skipped."""
        after_id = 0
        while True:
            batch = self.conn.execute(
                "SELECT l.id AS ledger_id, l.message_id, c.* FROM ledger l JOIN contacts c ON c.id = l.contact_id"
                " WHERE l.campaign = ? AND l.mail = ? AND l.state = 'pending' AND l.id > ?"
                " AND (l.next_attempt_at IS NULL OR l.next_attempt_at <= ?) ORDER BY l.id LIMIT 500",
                (self.campaign.slug, number, after_id, store.iso(self.clock()))).fetchall()
            if not batch:
                # New rows get higher ids than any before, so the scan goes on from after_id.
                with store.transaction(self.conn):
                    added = self._add_rows(number, self.clock())
                if added:
                    continue
                return
            after_id = batch[-1]["ledger_id"]
            yield from batch

    def _requeue_unknown(self, number: int) -> int:
        """Unknown outcomes of earlier passes go again now that the server answers (see the
        module's docstring); each is counted as resent, since the first copy may have arrived."""
        with store.transaction(self.conn):
            return self.conn.execute(
                "UPDATE ledger SET state = 'pending', resent = resent + 1, next_attempt_at = NULL,"
                " error = 'resent: the answer to the earlier attempt never came', updated_at = ?"
                " WHERE campaign = ? AND mail = ? AND state = 'unknown' AND attempts < ?"
                " AND contact_id IN (SELECT id FROM contacts WHERE status = 'active')",
                (store.iso(self.clock()), self.campaign.slug, number, MAX_ATTEMPTS)).rowcount

    def send_mail(self, number: int, rendered: RenderedMail, schedule_row: sqlite3.Row) -> None:
        """Send one mail to every pending contact, over one or more connections, from this thread."""
        self._open_transports()
        if not self.transports:
            return
        if number not in self._requeued:
            self._requeued.add(number)
            self.stats.resent_unknown += self._requeue_unknown(number)
        # Contacts imported after the last row was read get rows when the mail would be done:
        # they are sent to before it is.
        while self._send_rows(number, rendered, schedule_row) and not self.stop.is_set():
            pass

    def _send_rows(self, number: int, rendered: RenderedMail, schedule_row: sqlite3.Row) -> bool:
        """One pass over the pending rows; True when contacts imported meanwhile still need it.

        Each connection has at most one message in flight, so a kill leaves at most one
        ambiguous ('sending') row per connection. A round: read the answers that came, commit
        them with the claims of the next messages (one transaction), write those messages
        without their final dot, build the messages after them, then write the dots. So the
        window in which a kill leaves an accepted message unrecorded holds no message building.
        """
        import select

        slug = self.campaign.slug
        settings = self.campaign.settings
        sender = self.project.deployment().sender
        idle = list(reversed(self.transports))
        inflight: dict[object, tuple[int, str, str]] = {}  # ledger id, address, Message-ID
        # The row each connection sends next: its envelope goes along with the dot before it,
        # and its message is built before that dot (claimed only once the server has answered).
        upcoming: dict[object, sqlite3.Row] = {}
        built: dict[object, tuple[Contact, Envelope | Exception | None]] = {}
        group = f"{slug}/{number:02d}"
        interval = 60.0 / self.rate
        # An envelope opened ahead must not keep a server waiting long for its data.
        ahead = interval < 2.0
        rows = self._pending_rows(number)
        total = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE campaign = ? AND mail = ?", (slug, number)).fetchone()[0]
        done = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE campaign = ? AND mail = ? AND state != 'pending'",
                                 (slug, number)).fetchone()[0]
        next_start = last_beat = time.monotonic()
        last_check = 0.0
        # Successes are recorded in the same transaction that claims the next messages: one
        # commit per round, and still only messages in flight are ever ambiguous.
        unrecorded: list[tuple[int, dt.datetime]] = []
        halt: BaseException | None = None
        more = True
        exhausted = False  # every pending row has been handed to a connection
        streak = _Streak()
        stopping_since: float | None = None
        recorded = False  # the loop ended without an error: every claimed row is settled

        def record_sent() -> None:
            for ledger_id, moment in unrecorded:
                self.conn.execute("UPDATE ledger SET state = 'sent', error = '', updated_at = ?, sent_at = ? WHERE id = ?",
                                  (store.iso(moment), store.iso(moment), ledger_id))
            unrecorded.clear()

        def flush() -> None:
            if unrecorded:
                with store.transaction(self.conn):
                    record_sent()

        def end_streak() -> None:
            """A run of identical refusals ended below the threshold: its bounces stand."""
            from .contacts import set_status

            for _ledger_id, email, exc in streak.rows:
                if isinstance(exc, PermanentFailure) and exc.user_unknown:
                    set_status(self.conn, [email], status="bounced", reason=str(exc)[:200])
            streak.rows.clear()
            streak.signature = ""

        def note(ledger_id: int, email: str, exc: Exception | None) -> None:
            """Feed the circuit breaker with a 5xx or an unknown outcome (None: something else
        happened); trip it when the threshold is reached."""
            nonlocal halt, more
            signature = "" if exc is None else _refusal(exc)
            if signature != streak.signature:
                end_streak()
            if exc is None:
                return
            streak.signature = signature
            streak.rows.append((ledger_id, email, exc))
            if len(streak.rows) >= self.failure_threshold and halt is None:
                halt = self._trip(streak.rows)
                streak.rows.clear()
                streak.signature = ""
                more = False

        def settle(ledger_id: int, email: str, error: Exception | None, mid: str = "") -> None:
            """Record how a claimed message ended: sent (no error), or as the error says."""
            nonlocal done, halt, more, interval, next_start
            try:
                if error is not None:
                    raise error
            except ConnectionFailure as exc:
                # Nothing was handed over: the row waits without losing an attempt, and the
                # pass stops instead of failing to connect once for every remaining row.
                self._release(ledger_id)
                if halt is None and not self.stop.is_set():  # not when a stop cut a wait short
                    halt = TransportUnavailable(
                        _("{exc}; nothing more was claimed, and the messages not yet sent wait in the queue with "
                           "their attempts intact").format(exc=exc))
                more = False
                return
            except Throttled as exc:
                # The provider asks for less: the message waits without using an attempt, the
                # worker halves its rate and pauses; a daily quota ends this pass.
                self._release(ledger_id)
                self.stats.throttled += 1
                self.stats.last_error = _masked(str(exc))[:200]
                if exc.daily:
                    self.stats.capped_until = self.clock() + DAY
                    more = False
                    return
                interval = min(interval * 2, 60.0)
                next_start = max(next_start, time.monotonic()) + THROTTLE_PAUSE
                return
            except TemporaryFailure as exc:
                # A 4xx is retried with back-off anyway (greylisting answers every new recipient
                # so): it does not feed the breaker, but it does end a run of identical refusals.
                self._defer(ledger_id, str(exc))
                if streak.rows:
                    note(ledger_id, email, None)
            except PermanentFailure as exc:
                self._finish(ledger_id, "failed", self.clock(), error=str(exc))
                self.stats.failed += 1
                note(ledger_id, email, exc)  # a bounce is recorded once the breaker lets it stand
            except UnknownOutcome as exc:
                self._finish(ledger_id, "unknown", self.clock(), error=str(exc))
                self.stats.unknown += 1
                if not self.stop.is_set():  # not when we stopped waiting ourselves
                    note(ledger_id, email, exc)
            except DeliveryError as exc:
                # The connection itself cannot work (TLS, login): the message was never handed over.
                self._release(ledger_id)
                halt = halt or exc
                more = False
                return
            except Exception as exc:  # a bug in a transport: record it on the row, keep going
                self._finish(ledger_id, "failed", self.clock(), error=f"{type(exc).__name__}: {exc}")
                self.stats.failed += 1
            else:
                self._journal_accepted(ledger_id, mid)  # first: from here a kill sends no second copy
                unrecorded.append((ledger_id, self.clock()))
                self.stats.sent += 1
                if streak.rows:
                    note(ledger_id, email, None)
            done += 1
            if self.progress:
                self.progress(number, done, total)

        def build(row: sqlite3.Row) -> tuple[Contact, Envelope | Exception | None]:
            """The contact and their message; None for a contact no longer active, the exception
            for a message that cannot be made."""
            contact = _row_to_contact(row)
            if contact.status != "active":
                return contact, None
            try:
                personal = personalise(rendered, contact, settings=settings)
            except Exception as exc:
                return contact, exc
            drain()  # building takes longest: an answer that came meanwhile is journalled halfway
            try:
                return contact, build_message(personal, sender=sender, campaign=settings, now=self.clock(),
                                              mid=row["message_id"])
            except Exception as exc:
                return contact, exc

        def answered(transport) -> None:
            ledger_id, email, mid = inflight.pop(transport)
            try:
                transport.finish()
            except Exception as exc:
                settle(ledger_id, email, exc)
            else:
                settle(ledger_id, email, None, mid)
            idle.append(transport)

        def arrived(wait: float = 0.0) -> list:
            """The connections whose answer has come, polling up to POLL and then sleeping for
            the rest of ``wait`` seconds (at once when nothing comes)."""
            waiting = list(inflight)
            ready = [t for t in waiting if t.ready()] or select.select(waiting, [], [], 0)[0]
            if ready or wait <= 0:
                return ready
            began = time.perf_counter()
            polling = min(wait, POLL)
            while not ready and time.perf_counter() - began < polling:
                ready = select.select(waiting, [], [], 0)[0]
            if not ready and wait > polling:
                ready = select.select(waiting, [], [], max(0.0, wait - (time.perf_counter() - began)))[0]
            return ready

        def drain(wait: float = 0.0) -> None:
            """Read (and so journal) the answers that have come, waiting up to ``wait`` seconds
            for all of them: until an answer is journalled, a kill leaves that message to be sent
            again. Called between the steps of the worker's work (claim, each message's data,
            each build), so that with several connections an answer waits for at most one step."""
            deadline = time.perf_counter() + wait
            while inflight:
                ready = arrived(max(0.0, deadline - time.perf_counter()))
                if not ready:
                    return
                for transport in ready:
                    answered(transport)

        def give_up(transport) -> None:
            """Stopping: the answer did not come within the grace; the server may still take it."""
            ledger_id, _email, _mid = inflight.pop(transport)
            transport.abandon()
            self._finish(ledger_id, "unknown", self.clock(),
                         error="unknown: the worker stopped before the server answered")
            self.stats.unknown += 1
            idle.append(transport)

        try:
            while True:
                if time.monotonic() - last_beat > REREAD_SECONDS:
                    flush()
                    self.heartbeat()  # a long send (or a long wait) must not look like a dead worker
                    last_beat = time.monotonic()
                # 1. Give idle connections their next message, built (or known to need none).
                batch: list[tuple[object, sqlite3.Row, Contact, Envelope]] = []
                while more and halt is None and idle and not self.stop.is_set():
                    now = self.clock()
                    tick = time.monotonic()
                    if tick - last_check > 0.25:  # a closing window takes effect within a second
                        if not self.still_allowed(number) or not self.in_window(schedule_row, now):
                            more = False
                            break
                        last_check = tick
                    if not self._under_cap(taken=len(batch)):
                        more = False  # the daily cap: the rest waits for the next 24 hours' room
                        break
                    # A connection with a reserved row goes first: its envelope is open already.
                    transport = next((t for t in idle if t in upcoming), idle[-1])
                    row = upcoming.pop(transport, None) or next(rows, None)
                    made = built.pop(transport, None)
                    if row is None:
                        # Done when no busy connection still holds a reserved row.
                        exhausted, more = True, bool(upcoming)
                        break
                    wait_for = next_start - time.monotonic()
                    if wait_for > 0:
                        # The rate limit holds the next message back.
                        upcoming[transport] = row
                        if made is not None:
                            built[transport] = made
                        if inflight or batch:
                            break  # settle what is in flight meanwhile
                        flush()
                        if self.sleep(wait_for):
                            more = False
                            break
                        continue
                    idle.remove(transport)
                    next_start = max(next_start, time.monotonic()) + interval
                    contact, envelope = made or build(row)
                    if envelope is None:
                        self._finish(row["ledger_id"], "suppressed", now)
                        idle.append(transport)
                        continue
                    if isinstance(envelope, Exception):
                        # Not a transport answer (a header or template problem): record it, keep going.
                        self._finish(row["ledger_id"], "failed", self.clock(),
                                     error=f"{type(envelope).__name__}: {envelope}")
                        self.stats.failed += 1
                        idle.append(transport)
                        continue
                    batch.append((transport, row, contact, envelope))
                # 2. Claim them, in the transaction that records the successes just answered.
                # The claim itself checks pause and cancel: once `pause` has returned, no claim
                # succeeds, so no new message leaves.
                if batch:
                    throttled = self.stats.throttled
                    drain()
                    if halt is not None or self.stop.is_set() or self.stats.throttled != throttled:
                        # An answer just read stopped the pass (the breaker, a server gone) or asked
                        # for a pause: claim nothing; a throttled worker sends these after the pause.
                        for transport, row, contact, envelope in batch:
                            if halt is None and not self.stop.is_set():
                                upcoming[transport], built[transport] = row, (contact, envelope)
                            idle.append(transport)
                        batch = []
                if batch:
                    claimed = self._claim([row["ledger_id"] for _, row, _, _ in batch], unrecorded, record_sent)
                    drain()
                    if self.max_per_day:
                        self._day.extend(self.clock() for _ in claimed)
                    if len(claimed) < len(batch) and not self.still_allowed(number):
                        more = False
                    started = []
                    for transport, row, contact, envelope in batch:
                        if row["ledger_id"] not in claimed:
                            idle.append(transport)  # opted out, paused, cancelled or sent meanwhile
                            continue
                        if halt is not None:
                            self._release(row["ledger_id"])  # the pass stopped since the claim
                            idle.append(transport)
                            continue
                        # 3. The message without its final dot: a kill from here on leaves no copy.
                        try:
                            transport.start(envelope, group=group)
                        except Exception as exc:
                            settle(row["ledger_id"], contact.email, exc)
                            idle.append(transport)
                            continue
                        started.append((transport, row, contact))
                        drain()
                    # 4. For each connection: build what it sends next, then write its dot (with
                    # the next envelope). From the dot until the server's answer is journalled,
                    # a kill may leave an accepted message in 'sending'; so no building happens
                    # in that window on this connection, and before each dot the answers to
                    # the dots already written are awaited (up to DOT_WAIT) and journalled.
                    for transport, row, contact in started:
                        following = next(rows, None) if ahead and more and halt is None else None
                        if following is not None:
                            upcoming[transport] = following
                            built[transport] = build(following)
                        then = (sender.envelope_sender, following["email"]) if following is not None else None
                        drain(DOT_WAIT)
                        if halt is not None:
                            # The pass stopped since this message's data went: without its final
                            # dot the server holds no message, and the row waits with its attempt.
                            transport.abandon()
                            self._release(row["ledger_id"])
                            idle.append(transport)
                            continue
                        self._journal_handed(row["ledger_id"])
                        try:
                            transport.commit(then=then)
                        except Exception as exc:
                            settle(row["ledger_id"], contact.email, exc)
                            idle.append(transport)
                            continue
                        inflight[transport] = (row["ledger_id"], contact.email, row["message_id"])
                if not inflight:
                    if halt is not None or not more or self.stop.is_set():
                        break
                    continue
                # 6. Wait for answers, a slice at a time, so that a stop is heard while a server
                # takes its time (RFC 5321 allows it 10 minutes for the final dot).
                ready = [t for t in inflight if t.overdue()]
                if not ready:
                    blocked = not idle or not more or exhausted or halt is not None or self.stop.is_set()
                    timeout = WAIT_SLICE if blocked else max(0.0, min(WAIT_SLICE, next_start - time.monotonic()))
                    ready = arrived(timeout)
                    ready += [t for t in inflight if t not in ready and t.overdue()]
                for transport in ready:
                    answered(transport)
                if self.stop.is_set() and inflight:
                    stopping_since = stopping_since or time.monotonic()
                    if time.monotonic() - stopping_since > self.stop_grace:
                        for transport in list(inflight):
                            give_up(transport)
            recorded = True
        finally:
            # Whatever stops the loop, the messages in flight are recorded: answered, or unknown.
            for transport in list(inflight):
                if transport.ready():
                    answered(transport)
                else:
                    give_up(transport)
            flush()
            if recorded:
                # Only when every row is settled: after an error a row may still be 'sending',
                # and its "handed" line must tell the next start that it may have arrived.
                self._journal_recorded()
            if halt is None:
                end_streak()
        if halt is not None:
            raise halt
        return self._maybe_done(number) and not self.stop.is_set()

    def _claim(self, ids: list[int], unrecorded: list, record_sent: Callable[[], None]) -> set[int]:
        """Claim rows (pending -> sending) unless the campaign is paused or cancelled, in one
        committed transaction with the successes not yet recorded; returns the claimed ids."""
        claimed = set()
        now = store.iso(self.clock())
        with store.transaction(self.conn):
            record_sent()
            for ledger_id in ids:
                if self.conn.execute(
                        "UPDATE ledger SET state = 'sending', attempts = attempts + 1, transport = ?, updated_at = ?"
                        " WHERE id = ? AND state = 'pending'"
                        " AND NOT EXISTS (SELECT 1 FROM plans WHERE campaign = ? AND (paused OR cancelled))",
                        (self.config.label, now, ledger_id, self.campaign.slug)).rowcount:
                    claimed.add(ledger_id)
        return claimed

    def _trip(self, streak: list[tuple[int, str, Exception]]) -> DeliveryError:
        """The circuit breaker: the rows refused in this run of identical answers go back to the
        queue without using an attempt (unknown ones stay unknown: they may have arrived)."""
        latest = streak[-1][2]
        answer = _masked(str(latest))[:200]
        refused = [ledger_id for ledger_id, _moment, exc in streak if not isinstance(exc, UnknownOutcome)]
        if refused:
            marks = ",".join("?" * len(refused))
            with store.transaction(self.conn):
                self.conn.execute(
                    f"UPDATE ledger SET state = 'pending', attempts = MAX(attempts - 1, 0), next_attempt_at = NULL,"
                    f" error = ?, updated_at = ? WHERE id IN ({marks}) AND state = 'failed'",
                    (f"held back: the server refused {len(streak)} messages in a row with: {latest}"[:500],
                     store.iso(self.clock()), *refused))
            self.stats.failed -= len(refused)
        n = len(streak)
        if isinstance(latest, UnknownOutcome):
            return RepeatedRefusal(
                _("the connection to {label} was lost after the message was handed over {n} times in a row "
                   "({answer}); the worker stopped so as not to go on like that through the whole list. "
                   "Those {n} messages are recorded as unknown and are sent again (counted as resent) on "
                   "the next run that reaches the server; check the server and its logs, then start "
                   "`campaign worker` again.").format(label=self.config.label, n=n, answer=answer))
        return RepeatedRefusal(
            _("{label} refused {n} messages in a row with the same answer: {answer}; the worker "
               "stopped so as not to fail the whole list. Those {n} messages are back in the queue "
               "without using an attempt and no contact was marked bounced. Fix what the answer names "
               "(for example, whether the server lets this sender relay), then start `campaign worker` "
               "again; [delivery] failure_threshold in settings.toml sets how many identical refusals "
               "stop it (now {failure_threshold}).").format(
                   label=self.config.label, n=n, answer=answer, failure_threshold=self.failure_threshold))

    def _release(self, ledger_id: int) -> None:
        with store.transaction(self.conn):
            self.conn.execute("UPDATE ledger SET state = 'pending', attempts = attempts - 1 WHERE id = ? AND state = 'sending'",
                              (ledger_id,))

    def _finish(self, ledger_id: int, state: str, now: dt.datetime, *, error: str = "", sent: bool = False) -> None:
        with store.transaction(self.conn):
            self.conn.execute(
                "UPDATE ledger SET state = ?, error = ?, updated_at = ?, sent_at = CASE WHEN ? THEN ? ELSE sent_at END"
                " WHERE id = ?", (state, error[:500], store.iso(now), int(sent), store.iso(now), ledger_id))

    def _defer(self, ledger_id: int, error: str) -> None:
        now = self.clock()
        with store.transaction(self.conn):
            attempts = self.conn.execute("SELECT attempts FROM ledger WHERE id = ?", (ledger_id,)).fetchone()[0]
            if attempts >= MAX_ATTEMPTS:
                self.conn.execute("UPDATE ledger SET state = 'failed', error = ?, updated_at = ? WHERE id = ?",
                                  (f"gave up after {attempts} attempts: {error}"[:500], store.iso(now), ledger_id))
                self.stats.failed += 1
            else:
                delay = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
                self.conn.execute(
                    "UPDATE ledger SET state = 'pending', error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
                    (error[:500], store.iso(now + dt.timedelta(seconds=delay)), store.iso(now), ledger_id))
                self.stats.deferred += 1

    def _maybe_done(self, number: int) -> bool:
        """Mark the mail done when every active contact has a settled row. Contacts imported
        since the rows were read get theirs in the same transaction, so none is left out by a
        mail that is done; returns True when there are such rows to send first."""
        with store.transaction(self.conn):
            added = self._add_rows(number, self.clock())
            left = self.conn.execute(
                "SELECT COUNT(*) FROM ledger WHERE campaign = ? AND mail = ? AND (state IN ('pending', 'sending')"
                " OR (state = 'unknown' AND attempts < ?))",
                (self.campaign.slug, number, MAX_ATTEMPTS)).fetchone()[0]
            if not left:
                self.conn.execute("UPDATE schedule SET state = 'done' WHERE campaign = ? AND mail = ? AND state = 'sending'",
                                  (self.campaign.slug, number))
        return added > 0

    # --- the long run ----------------------------------------------------------------------

    def run(self, *, once: bool, started: Callable[[], None] | None = None) -> RunStats:
        """``once``: one pass and return. Otherwise run until stopped (SIGTERM, Ctrl-C).

        ``started`` is called once this worker holds the lock and its transport was accepted:
        only then may anyone be told that it started.
        """
        with _take_worker_lock(self.project.home):
            try:
                plan = get_plan(self.conn, self.campaign.slug)
                check_transport(self.project, self.config, stored=plan.transport if plan else None)
                self.heartbeat()
                self._open_journal()
                self.recover()
                if started:
                    started()
                if once:
                    if imap_config(self.env) is not None:
                        # Run from cron, this pass is the only one for a while: an opt-out that
                        # came by mail must stop the very messages it is about to send.
                        self.read_inbox()
                    self.tick()
                    return self.stats
                self._loop()
                return self.stats
            finally:
                for transport in self.transports:
                    transport.close()
                self.heartbeat(stopped=True)
                self.conn.close()
                if self._journal is not None:
                    os.close(self._journal)
                    self._journal = None

    def _loop(self) -> None:
        # APScheduler with an in-memory store wakes the loop at each due moment it read from the
        # ledger, and at least every REREAD_SECONDS, so schedule changes made by other processes
        # arrive within a minute. The ledger, not APScheduler, decides what is sent.
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone=dt.timezone.utc,
                                        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        scheduler.add_job(self.wake.set, "interval", seconds=REREAD_SECONDS, id="reread")
        if imap_config(self.env) is not None:
            # Bounces and opt-outs arrive by mail: read them every few minutes (and at once), so
            # that an opt-out stops the next mail without anyone running `campaign inbox`.
            scheduler.add_job(self.read_inbox, "interval", seconds=INBOX_SECONDS, id="inbox",
                              next_run_time=dt.datetime.now(dt.timezone.utc))
        scheduler.start()
        try:
            while not self.stop.is_set():
                self.heartbeat()
                try:
                    self.tick()
                    self.stats.last_error = ""
                    # Mails are days apart: no connection is kept open in between.
                    for transport in self.transports:
                        transport.close()
                    self.transports = []
                except TransportUnavailable as exc:
                    # The server is down or unreachable: nothing was claimed; try again on the next wake.
                    self.stats.last_error = str(exc)
                    if self.on_error:
                        self.on_error(str(exc))
                upcoming = self.next_wake()
                if self.stats.capped_until is not None and upcoming is not None:
                    upcoming = max(upcoming, self.stats.capped_until)
                if upcoming is not None and upcoming > self.clock():
                    scheduler.add_job(self.wake.set, "date", run_date=upcoming, id="due", replace_existing=True)
                self.wake.wait(REREAD_SECONDS)
                self.wake.clear()
        finally:
            scheduler.shutdown(wait=False)


    def _inbox_tokens(self):  # type: ignore[no-untyped-def]
        """One token source for every inbox read of this worker (its cache outlives each read);
        the SMTP login's when that is XOAUTH2 too: the app's token is good for both."""
        config = imap_config(self.env)
        if config is None or config.auth != "xoauth2":
            return None
        if self.config.auth == "xoauth2":
            return self.config.token_source(self.env, self.oauth)
        if self._imap_tokens is None:
            from .oauth import token_provider

            self._imap_tokens = token_provider(self.env, self.oauth)
        return self._imap_tokens

    def read_inbox(self) -> None:
        """Read and apply the mailbox of ``CAMPAIGN_IMAP_URL`` (in APScheduler's thread, with its own
        database connection); a failure is reported and tried again at the next run."""
        from .errors import CampaignError
        from .inbox import read_inbox

        try:
            read_inbox(self.project, env=self.env, now=self.clock(), tokens=self._inbox_tokens())
        except (CampaignError, sqlite3.Error, OSError) as exc:
            if self.on_error:
                self.on_error(_("reading the inbox failed: {exc}").format(exc=exc))


@dataclass(frozen=True)
class TestSend:
    mail: int
    subject: str
    recipient: str
    where: str  # the file written, or the server's answer
    transport: str = "outbox"  # the transport's label: "outbox" or smtp[s]://[user@]host:port, never a password

    @property
    def left_machine(self) -> bool:
        """False for a file in the outbox: such a mail reached no one."""
        return self.transport != "outbox"


def send_test(
    project: Project,
    *,
    to: list[str] | None,
    mails: list[int] | None,
    contact: str | None,
    now: dt.datetime,
    env: dict[str, str] | None = None,
) -> list[TestSend]:
    """Send mails now, marked ``[TEST]``, as ``contact`` would get them (but with every opt-out
    naming the test recipient); never in the ledger. Refuses, before anything is sent, any
    recipient that reaches a contact's mailbox or is on the suppression list."""
    from .build import choose_contact
    from .guard import check_test_recipients

    env = dict(os.environ) if env is None else env
    config = transport_config(env)
    check_transport(project, config, stored=None)
    deployment = project.deployment()
    if config.auth == "xoauth2":
        config.token_source(env, deployment.oauth)
    recipients = list(to or deployment.test_recipients)
    if not recipients:
        raise DeliveryError(_("no test recipients: pass --to ADDRESS or set test.recipients in settings.toml"))
    origin = "--to" if to else "test.recipients in settings.toml"
    conn = project.connect() if project.db_exists else None
    try:
        checked = check_test_recipients(conn, recipients, origin=origin)
    finally:
        if conn is not None:
            conn.close()
    campaign = project.load_campaign()
    chosen, _source = choose_contact(project, contact)
    renderer = Renderer(templates=project.templates, campaign=campaign, deployment=deployment,
                        cache=project.render_cache)
    numbers = mails or [m.number for m in campaign.mails]
    transport = open_transport(config, outbox=project.outbox, env=env, oauth=deployment.oauth)
    sent = []
    try:
        for number in numbers:
            rendered = renderer.render(campaign.mail(number))
            for address in checked:
                personal = personalise(rendered, chosen, settings=campaign.settings, optout_for=address)
                envelope = build_message(personal, sender=deployment.sender, campaign=campaign.settings, now=now,
                                         test=True, to=address)
                if config.kind == "outbox" and chosen.id is not None:
                    # The file holds the contact's name, party and municipality: erasure must find it.
                    from .transport import outbox_path

                    with project.db() as conn:
                        store.record_files(conn, [outbox_path(project.outbox, envelope.message_id, group="test")],
                                           contact_id=chosen.id)
                try:
                    where = transport.send(envelope, group="test")
                except (TemporaryFailure, PermanentFailure, UnknownOutcome) as exc:
                    raise DeliveryError(_("test mail {number} to {address} was not accepted: {exc}; the {count} test "
                                          "mail(s) before it were handed over.").format(
                                               number=number, address=address, exc=exc, count=len(sent))) from None
                sent.append(TestSend(mail=number, subject=f"[TEST] {personal.subject}", recipient=address, where=where,
                                     transport=config.label))
    finally:
        transport.close()
    return sent
