"""A real asynchronous bounce: the worker sends through a real Postfix, which accepts every
message, is refused afterwards by the next hop (550 5.1.1), and writes its own DSN into the
Maildir of the bounce address; `campaign inbox --from` that Maildir marks exactly those contacts."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import require_tool
from .mail_servers import require_root
from .mail_servers import Postfix
from .smtp_server import Server
from .test_deliver import MAIL1, prepare, run_worker
from .test_inbox import SETTINGS, statuses

pytestmark = pytest.mark.slow

REFUSED = ["weg.een@verhuisd.example.net", "weg.twee@verhuisd.example.net"]
ACCEPTED = ["blijft.een@ok.example.nl", "blijft.twee@ok.example.nl", "blijft.drie@ok.example.nl"]


@pytest.fixture
def postfix():
    require_tool("postfix")
    require_root("Postfix")
    # Postfix's unprivileged processes must reach the folder: not under pytest's private tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="campaign-postfix-"))
    try:
        with Server() as accepting:
            with Postfix(folder, own_domain="zender.test-org.nl", refused_domain="verhuisd.example.net",
                         accept_port=accepting.port) as server:
                server.accepting = accepting
                yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_postfix_bounces_afterwards_and_inbox_marks_exactly_those_contacts(home, run, tmp_path, monkeypatch,
                                                                           postfix):
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    project = prepare(tmp_path, monkeypatch, REFUSED + ACCEPTED, smtp_url=postfix.url)
    stats = run_worker(project, MAIL1)
    # Postfix accepted all five: the refusal comes later, as a message of its own.
    assert stats.sent == 5 and stats.failed == 0
    bounces = postfix.wait_for_bounces(2)
    assert len(bounces) == 2, postfix.log.read_text()[-3000:]
    # The DSNs went to the envelope sender, [sender] bounce_address, not to the From address.
    assert all(b"To: bounces@zender.test-org.nl" in p.read_bytes() for p in bounces)

    result = run("inbox", "--from", str(postfix.maildir), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert sorted((o["kind"], o["contact"], o["campaign"], o["mail"]) for o in out) == [
        ("bounce-hard", a, "gr2026", 1) for a in REFUSED]
    assert all(o["status"] == "5.1.1" for o in out)
    now = statuses(home)
    assert {a: now[a] for a in REFUSED} == dict.fromkeys(REFUSED, "bounced")
    assert {a: now[a] for a in ACCEPTED} == dict.fromkeys(ACCEPTED, "active")
    mail1 = json.loads(run("status", "--json").output)["mails"][0]
    assert (mail1["sent"], mail1["bounced"], mail1["opted_out"]) == (5, 2, 0)
