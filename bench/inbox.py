"""Benchmark: `campaign inbox` reading 10,000 messages from a Maildir, against flufl.bounce alone.

    .venv/bin/python bench/inbox.py                 # 10,000 messages, 2,000 contacts
    .venv/bin/python bench/inbox.py --messages 2000

The Maildir is made from the corpus in tests/fixtures/inbox (bounces in the formats of Postfix,
Exim, Office 365, Gmail and qmail, an ARF report, out-of-office answers, opt-outs and replies),
each copy addressed to another imported contact and quoting that contact's real Message-ID,
so every message is tied to a ledger row as in real use. Measured in the same run:

- baseline: flufl.bounce alone: read each message from the Maildir, parse it and run
  ``all_failures`` on it (what any bounce processor does at the least);
- inbox: ``read_inbox`` on the same Maildir: read, classify, tie to the send, apply and record;
- again: the same Maildir a second time (everything recognised, nothing changed).

Goal: inbox at most 2x the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import mailbox
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "tests" / "fixtures" / "inbox"
DOMAIN = "zender.test-org.nl"
SETTINGS = """\
[sender]
name = "Leger des Heils"
address = "campagne@zender.test-org.nl"
reply_to = "reacties@zender.test-org.nl"
contact = "Leger des Heils, Postbus 1234, 9999 ZZ Teststad"
optout_address = "afmelden@zender.test-org.nl"
bounce_address = "bounces@zender.test-org.nl"
[test]
recipients = ["staf@zender.test-org.nl"]
"""
# Each corpus message and the contact address it concerns (replaced per copy).
TEMPLATES = {
    "postfix-dsn-5.1.1.eml": "jan.bakker@wijkpartij.example.nl",
    "exim-non-dsn.eml": "petra.smit@dorpsbelang.example.nl",
    "office365-dsn-5.1.10.eml": "kees.visser@stadspartij.example.org",
    "gmail-dsn-no-original.eml": "anouk.mulder@groen-ede.example.nl",
    "postfix-mailbox-full.eml": "lisa.dekker@lokaal.example.nl",
    "postfix-delayed.eml": "emma.bos@dorpsbelang.example.nl",
    "qmail-non-dsn.eml": "tom.jacobs@stembureau.example.org",
    "arf-abuse-report.eml": "bas.vermeulen@samen.example.org",
    "ooo-exchange-nl.eml": "kees.visser@stadspartij.example.org",
    "ooo-english.eml": "emma.bos@dorpsbelang.example.nl",
    "ooo-afwezig-subject-only.eml": "petra.smit@dorpsbelang.example.nl",
    "optout-mailto-with-body.eml": "jan.bakker@wijkpartij.example.nl",
    "optout-mailto-without-body.eml": "lisa.dekker@lokaal.example.nl",
    "optout-english.eml": "bas.vermeulen@samen.example.org",
    "reply-in-thread.eml": "emma.bos@dorpsbelang.example.nl",
    "reply-new-thread.eml": "petra.smit@dorpsbelang.example.nl",
    "other-newsletter.eml": "",
}
MAILS = (1, 2, 3, 4)


def make_state(home: Path, contacts: int) -> list[str]:
    """Import ``contacts`` contacts and record mails 1-4 as sent to each; returns their addresses."""
    from mailer import contacts as contacts_module
    from mailer import store
    from mailer.message import message_id

    home.mkdir(parents=True)
    (home / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    addresses = [f"raadslid{i:05d}@partij{i % 97:02d}.example.nl" for i in range(contacts)]
    csv = home.parent / "contacts.csv"
    csv.write_text("email;party;municipality\n" + "".join(f"{a};Partij {i % 97};Gemeente {i % 342}\n"
                                                          for i, a in enumerate(addresses)), encoding="utf-8")
    conn = store.connect(home)
    contacts_module.import_contacts(conn, csv, default_basis="published-address")
    with store.transaction(conn):
        rows = conn.execute("SELECT id, email FROM contacts").fetchall()
        conn.executemany(
            "INSERT INTO ledger (campaign, mail, contact_id, state, message_id, updated_at, sent_at)"
            " VALUES ('gr2026', ?, ?, 'sent', ?, ?, ?)",
            [(m, r["id"], message_id("gr2026", m, r["email"], DOMAIN), f"2026-01-0{m}T09:00:00Z",
              f"2026-01-0{m}T09:00:00Z") for r in rows for m in MAILS])
    conn.close()
    return addresses


def make_maildir(path: Path, messages: int, addresses: list[str]) -> None:
    from mailer.message import message_id

    templates = [(name, (CORPUS / name).read_bytes(), who) for name, who in TEMPLATES.items()]
    ids = re.compile(rb"<gr2026\.(\d)\.[0-9a-f]{32}@" + re.escape(DOMAIN.encode()) + rb">")
    own_id = re.compile(rb"^(Message-I[dD]: *)<[^>]+>", re.M)
    box = mailbox.Maildir(path, create=True)
    for i in range(messages):
        name, data, who = templates[i % len(templates)]
        target = addresses[(i * 7919) % len(addresses)]
        if who:
            data = data.replace(who.encode(), target.encode())
            data = ids.sub(lambda m: message_id("gr2026", int(m[1]), target, DOMAIN).encode(), data)
        data = own_id.sub(lambda m: m[1] + f"<bench-{i}@mail.example.net>".encode(), data, count=1)
        box.add(data)
    box.close()


def baseline(path: Path) -> float:
    """flufl.bounce alone on the same messages: read, parse, all_failures."""
    from flufl.bounce import all_failures

    start = time.perf_counter()
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        all_failures(email.message_from_bytes(box.get_bytes(key)))
    return time.perf_counter() - start


def inbox(path: Path, home: Path) -> tuple[float, dict[str, int]]:
    from mailer.inbox import read_inbox
    from mailer.project import Project

    os.environ["CAMPAIGN_HOME"] = str(home)
    project = Project.at(ROOT)
    start = time.perf_counter()
    report = read_inbox(project, source=path, now=dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc), env={})
    return time.perf_counter() - start, report.counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="campaign-bench-inbox-") as tmp:
        tmp_path = Path(tmp)
        addresses = make_state(tmp_path / "state", args.contacts)
        maildir = tmp_path / "Maildir"
        make_maildir(maildir, args.messages, addresses)
        # The machine is shared: each side runs --rounds times, interleaved, and the best counts.
        # Every first read starts from a copy of the same state file.
        bases, firsts, agains = [], [], []
        for r in range(args.rounds):
            bases.append(baseline(maildir))
            home = tmp_path / f"var{r}"
            shutil.copytree(tmp_path / "state", home)
            seconds, counts = inbox(maildir, home)
            firsts.append(seconds)
            agains.append(inbox(maildir, home)[0])
    base, ours, again = min(bases), min(firsts), min(agains)
    n = args.messages
    print(f"{n} messages from a Maildir, {args.contacts} contacts with 4 sends each; best of {args.rounds} rounds")
    print(f"  kinds: {', '.join(f'{k} {v}' for k, v in counts.items() if v)}")
    print(f"  flufl.bounce alone (read, parse, all_failures): {base:.2f} s ({n / base:,.0f} messages/s)")
    print(f"  campaign inbox, first read (classify, tie, apply): {ours:.2f} s ({n / ours:,.0f} messages/s), "
          f"{ours / base:.2f}x the baseline")
    print(f"  campaign inbox, second read (all recognised):     {again:.2f} s, {again / base:.2f}x the baseline")
    print(f"  goal: at most 2x -> {'met' if ours / base <= 2 else 'NOT met'}")

if __name__ == "__main__":
    main()
