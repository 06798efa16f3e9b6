"""The state file: created and upgraded in one transaction."""

from __future__ import annotations

from mailer import store


def indexes(conn) -> set[str]:
    return {r[1] for r in conn.execute("PRAGMA index_list(ledger)") if not r[1].startswith("sqlite_")}


def test_a_version_1_file_is_upgraded_and_keeps_its_rows(tmp_path):
    conn = store.connect(tmp_path)
    conn.execute("INSERT INTO plans (campaign, options, transport, created_at) VALUES ('gr2026', '{}', 'outbox', 'x')")
    # What version 1 looked like: the ledger indexed by state.
    conn.executescript("DROP INDEX ledger_mail; DROP INDEX ledger_contact; DROP INDEX ledger_retry;"
                       "CREATE INDEX ledger_work ON ledger (campaign, mail, state); PRAGMA user_version = 1;")
    conn.close()
    conn = store.connect(tmp_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert indexes(conn) == {"ledger_mail", "ledger_contact", "ledger_retry", "ledger_message_id"}
    assert conn.execute("SELECT campaign FROM plans").fetchall()[0][0] == "gr2026"
    conn.close()


def test_sending_leaves_the_indexes_alone(tmp_path):
    # A send updates state, attempts, transport, error, updated_at and sent_at: no index may
    # hold them, or each commit rewrites index pages (see the schema's comment).
    conn = store.connect(tmp_path)
    written = {"state", "attempts", "transport", "error", "updated_at", "sent_at"}
    for name in indexes(conn):
        columns = {r[2] for r in conn.execute(f"PRAGMA index_info({name})")}
        assert not columns & written, name
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
        where = sql.split("WHERE", 1)[1] if "WHERE" in sql else ""
        assert not any(c in where for c in written), name
    conn.close()


def test_a_version_3_file_gains_the_inbox_tables_and_keeps_its_rows(tmp_path):
    conn = store.connect(tmp_path)
    conn.execute("INSERT INTO plans (campaign, options, transport, created_at) VALUES ('gr2026', '{}', 'outbox', 'x')")
    # What version 3 looked like: no tables for what comes back by mail.
    conn.executescript("DROP TABLE inbox_events; DROP TABLE inbox_seen; PRAGMA user_version = 3;")
    conn.close()
    conn = store.connect(tmp_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 4
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"inbox_events", "inbox_seen"} <= tables
    assert conn.execute("SELECT campaign FROM plans").fetchall()[0][0] == "gr2026"
    conn.close()
