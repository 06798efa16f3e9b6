"""The one SQLite file under ``$CAMPAIGN_HOME``: contacts, suppressions, schedule and ledger.

WAL mode lets the worker and the CLI share the file; ``secure_delete`` overwrites what is
deleted, so that erased personal data does not linger in free pages.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from . import files

DB_NAME = "campaign.sqlite3"
SCHEMA_VERSION = 4
# Seconds a connection waits for another process's write (a worker's commit takes
# milliseconds) before it gives up with "database is locked". Tests shorten it.
BUSY_TIMEOUT = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    party TEXT NOT NULL,
    municipality TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}',
    basis TEXT NOT NULL,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'unsubscribed', 'bounced', 'removed')),
    status_at TEXT,
    status_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS contacts_status ON contacts (status);
CREATE TABLE IF NOT EXISTS suppressions (
    hash TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    campaign TEXT PRIMARY KEY,
    options TEXT NOT NULL,
    transport TEXT NOT NULL,
    created_at TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS schedule (
    campaign TEXT NOT NULL REFERENCES plans (campaign) ON DELETE CASCADE,
    mail INTEGER NOT NULL,
    theme TEXT NOT NULL,
    due_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'scheduled'
        CHECK (state IN ('scheduled', 'sending', 'done', 'cancelled')),
    approved_fingerprint TEXT NOT NULL,
    -- set by reschedule: staff chose the moment, so the daily window does not apply
    outside_window INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign, mail)
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    mail INTEGER NOT NULL,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'suppressed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    resent INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    message_id TEXT NOT NULL,
    transport TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    error TEXT NOT NULL DEFAULT '',
    UNIQUE (campaign, mail, contact_id)
);
-- No index holds the state: a send changes a row's state twice, and an index on it would
-- rewrite several more pages in each of those commits (about half their cost). Counting the
-- states of a mail scans its rows instead, which takes milliseconds.
CREATE INDEX IF NOT EXISTS ledger_mail ON ledger (campaign, mail);
CREATE INDEX IF NOT EXISTS ledger_contact ON ledger (contact_id);
-- Only deferred rows have a next attempt, and a send leaves the column alone.
CREATE INDEX IF NOT EXISTS ledger_retry ON ledger (campaign, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- Files and folders written with contact data outside the outbox (whose files follow from the
-- ledger's Message-IDs), by absolute path: erasure deletes exactly these, never by searching text.
-- kind 'file': written for contact_id; everyone = 1 when it also lists every contact of the audience.
-- kind 'simulation': a folder whose messages are named NNNNN-c<contact id>.eml, with a
-- timeline.csv whose contact_id column says whose each line is.
CREATE TABLE IF NOT EXISTS written (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'simulation')),
    contact_id INTEGER,
    everyone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS written_contact ON written (contact_id);
-- What came back by mail (campaign inbox). Only what the actions need: who (the contact, or the
-- salted hash of an address that is not one), when, what kind, which mail it answers, the DSN
-- status, and the subject of a reply; never a body or a plain address. Erasure deletes these rows.
CREATE TABLE IF NOT EXISTS inbox_events (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER REFERENCES contacts (id) ON DELETE CASCADE,
    hash TEXT,
    kind TEXT NOT NULL,
    campaign TEXT,
    mail INTEGER,
    received_at TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    effect TEXT NOT NULL DEFAULT ''
);
-- A bounce names the Message-ID of the send it answers (written once, when the row is made).
CREATE INDEX IF NOT EXISTS ledger_message_id ON ledger (message_id);
CREATE INDEX IF NOT EXISTS inbox_events_contact ON inbox_events (contact_id);
CREATE INDEX IF NOT EXISTS inbox_events_hash ON inbox_events (hash) WHERE hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS inbox_events_mail ON inbox_events (campaign, mail);
-- Messages already handled, by a salted hash of their Message-ID (or content): reading one twice
-- changes nothing. Holds nothing about a person, so erasure leaves it.
CREATE TABLE IF NOT EXISTS inbox_seen (
    fingerprint TEXT PRIMARY KEY,
    handled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS worker (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER,
    started_at TEXT,
    heartbeat_at TEXT,
    stopped_at TEXT
);
"""


# What turns a file of version N into one that SCHEMA (all IF NOT EXISTS) completes.
MIGRATIONS = {
    1: "DROP INDEX IF EXISTS ledger_work;",
    # 2 -> 3 adds the table `written` (SCHEMA creates it). Files written by version 2 were not
    # recorded: erasure cannot attribute them (re-running build or simulate replaces them).
    # 3 -> 4 adds inbox_events and inbox_seen (SCHEMA creates them).
}


def db_path(home: Path) -> Path:
    return home / DB_NAME


def connect(home: Path) -> sqlite3.Connection:
    """Open (and create or upgrade) the state file under ``home``.

    The folder is made (or tightened to) 0700 and the file 0600 before SQLite opens it;
    SQLite gives its -wal and -shm files the mode of the database file.
    """
    files.private_dir(home)
    path = db_path(home)
    files.touch_private(path)
    for suffix in ("-wal", "-shm"):
        files.tighten(path.with_name(path.name + suffix), files.FILE_MODE)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        return _prepare(conn)
    except BaseException:
        conn.close()  # a file that cannot be set up (locked, read-only, full) is not left open
        raise


def _prepare(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        # One script, one transaction: a crash leaves either the old schema or all of the new.
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + "".join(MIGRATIONS.get(v, "") for v in range(max(version, 1), SCHEMA_VERSION))
            + SCHEMA
            + f"INSERT OR IGNORE INTO meta (key, value) VALUES ('salt', '{secrets.token_hex(16)}');"
            + f"PRAGMA user_version = {SCHEMA_VERSION};"
            + "COMMIT;"
        )
    return conn


class transaction:
    """``with transaction(conn):`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                # A commit that fails (disk full, locked) leaves the transaction open: end it,
                # so that the connection's next step does not fail on it instead.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        elif self.conn.in_transaction:
            # SQLite may have rolled back already (SQLITE_FULL does); the first error is the one to show.
            self.conn.execute("ROLLBACK")


def salt(conn: sqlite3.Connection) -> str:
    return conn.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_ISO_CACHE: list = [None, ""]


def iso(moment: dt.datetime) -> str:
    """UTC, second precision, sortable as text."""
    # The worker asks several times a message, mostly for the same second.
    second = int(moment.timestamp())
    cached = _ISO_CACHE
    if cached[0] != second:
        cached = [second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))]
        _ISO_CACHE[:] = cached
    return cached[1]


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def scrub(conn: sqlite3.Connection) -> None:
    """Leave no deleted bytes behind: fold the WAL into the file, empty it, and rebuild the file."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def record_files(conn: sqlite3.Connection, paths: Iterable[Path], *, contact_id: int, everyone: bool = False) -> None:
    """Note files about to be written with a contact's data, so that erasure finds them.

    Recorded before writing, so that a crash never leaves an unrecorded file; a path written
    again for someone else is theirs from now on.
    """
    with transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO written (path, kind, contact_id, everyone) VALUES (?, 'file', ?, ?)",
                         [(str(p.resolve()), contact_id, int(everyone)) for p in paths])


def record_simulation(conn: sqlite3.Connection, folder: Path) -> None:
    """Note a folder about to hold simulated messages to the imported contacts."""
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO written (path, kind, contact_id, everyone) VALUES (?, 'simulation', NULL, 1)",
                     (str(folder.resolve()),))
