"""`campaign inbox` over IMAP, against a real Dovecot with TLS verified."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import require_tool
from .mail_servers import require_root
from .mail_servers import Dovecot
from .test_inbox import CORPUS, EXPECTED, inbox_home, statuses  # noqa: F401  (inbox_home: a fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dovecot_server():
    require_tool("dovecot")
    require_root("Dovecot")
    # Not under pytest's tmp_path: its parent is private to root, and Dovecot's unprivileged
    # processes must read the configuration's files.
    folder = Path(tempfile.mkdtemp(prefix="campaign-dovecot-"))
    try:
        with Dovecot(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_server: Dovecot):
    """The module's Dovecot, with an empty mailbox for each test."""
    dovecot_server.empty()
    return dovecot_server


def use(monkeypatch, server: Dovecot, url: str, *, ca: bool = True) -> None:
    monkeypatch.setenv("CAMPAIGN_IMAP_URL", url)
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", server.password)
    if ca:
        monkeypatch.setenv("CAMPAIGN_IMAP_CA_FILE", str(server.cert))
    else:
        monkeypatch.delenv("CAMPAIGN_IMAP_CA_FILE", raising=False)


def test_the_corpus_read_over_imaps_is_applied_flagged_and_never_read_twice(inbox_home, run, dovecot, monkeypatch):
    names = sorted(EXPECTED)
    dovecot.append([(CORPUS / n).read_bytes() for n in names])
    use(monkeypatch, dovecot, dovecot.url())
    result = run("inbox", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [(o["kind"], o["contact"]) for o in out] == [EXPECTED[n] for n in names]
    assert out[0]["source"].startswith("IMAP INBOX UID ")
    assert statuses(inbox_home)["petra.smit@dorpsbelang.example.nl"] == "bounced"
    assert statuses(inbox_home)["jan.bakker@wijkpartij.example.nl"] == "unsubscribed"
    # Every message flagged, none deleted; replies (and 'other') stay unread for staff.
    listing = dovecot.listing()
    assert len(listing) == len(names)
    for (flags, _), name in zip(listing, names):
        assert "$CampaignHandled" in flags, name
        assert ("\\Seen" in flags) == (EXPECTED[name][0] not in ("reply", "other")), name
    # A second run finds nothing new to read.
    again = run("inbox", "--json")
    assert json.loads(again.output) == []


def test_starttls_and_a_dry_run_that_flags_nothing(inbox_home, run, dovecot, monkeypatch):
    dovecot.append([(CORPUS / "exim-non-dsn.eml").read_bytes()])
    use(monkeypatch, dovecot, dovecot.url(starttls=True))
    out = json.loads(run("inbox", "--json", "--dry-run").output)
    assert [o["action"] for o in out] == ["would be marked bounced; no further mail"]
    assert dovecot.listing()[0][0] in ("", "\\Recent")
    assert statuses(inbox_home)["petra.smit@dorpsbelang.example.nl"] == "active"
    out = json.loads(run("inbox", "--json").output)
    assert [o["action"] for o in out] == ["marked bounced; no further mail"]


def test_handled_messages_are_moved_when_a_folder_is_set(inbox_home, run, dovecot, monkeypatch):
    with (inbox_home / "settings.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[inbox]\nmove_to = "Verwerkt"\n')
    dovecot.append([(CORPUS / n).read_bytes() for n in ("exim-non-dsn.eml", "reply-in-thread.eml")])
    use(monkeypatch, dovecot, dovecot.url())
    result = run("inbox")
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    left = dovecot.listing()
    moved = dovecot.listing("Verwerkt")
    assert [m for _, m in left] == [b"Message-ID: <reply-6@dorpsbelang.example.nl>"]
    assert [m for _, m in moved] == [b"Message-Id: <E1vQx3a-0004kL-2b@mx1.dorpsbelang.example.nl>"]


def test_an_unverifiable_certificate_or_wrong_password_stops_before_anything_is_read(inbox_home, run, dovecot,
                                                                                      monkeypatch):
    dovecot.append([(CORPUS / "exim-non-dsn.eml").read_bytes()])
    use(monkeypatch, dovecot, dovecot.url(), ca=False)
    result = run("inbox")
    assert result.exit_code == 1
    assert "certificate cannot be verified" in result.output and "nothing was read" in result.output
    use(monkeypatch, dovecot, dovecot.url())
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", "wrong")
    result = run("inbox")
    assert result.exit_code == 1 and "the server refused" in result.output and "wrong" not in result.output
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", dovecot.password)
    monkeypatch.setenv("CAMPAIGN_IMAP_URL", dovecot.url("Bestaat-Niet"))
    result = run("inbox")
    assert result.exit_code == 1 and "opening the folder 'Bestaat-Niet' failed" in result.output
    assert statuses(inbox_home)["petra.smit@dorpsbelang.example.nl"] == "active"


def test_the_running_worker_reads_the_inbox_so_an_opt_out_stops_the_next_mail(inbox_home, dovecot, monkeypatch):
    import threading
    import time

    from mailer.deliver import Worker
    from mailer.project import Project

    from .conftest import ROOT, FIXED_NOW

    dovecot.append([(CORPUS / "optout-mailto-without-body.eml").read_bytes()])
    use(monkeypatch, dovecot, dovecot.url())
    errors: list[str] = []
    made = threading.Event()
    workers: list[Worker] = []

    def serve() -> None:
        # A worker uses its database connection in the thread that made it, as the CLI's does.
        workers.append(Worker(Project.at(ROOT), clock=lambda: FIXED_NOW, on_error=errors.append))
        made.set()
        workers[0].run(once=False)

    thread = threading.Thread(target=serve)
    thread.start()
    assert made.wait(30)
    worker = workers[0]
    try:
        end = time.monotonic() + 30
        while statuses(inbox_home)["lisa.dekker@lokaal.example.nl"] != "unsubscribed" and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        worker.stop.set()
        worker.wake.set()
        thread.join(30)
    assert statuses(inbox_home)["lisa.dekker@lokaal.example.nl"] == "unsubscribed", errors
    assert "$CampaignHandled" in dovecot.listing()[0][0]


def test_worker_once_reads_the_inbox_before_it_sends(inbox_home, dovecot, monkeypatch):
    # Run from cron, `worker --once` is the only pass for a while: an opt-out that came by mail
    # must be applied before it sends anything.
    from mailer.deliver import Worker
    from mailer.project import Project

    from .conftest import ROOT, FIXED_NOW

    dovecot.append([(CORPUS / "optout-mailto-without-body.eml").read_bytes()])
    use(monkeypatch, dovecot, dovecot.url())
    errors: list[str] = []
    Worker(Project.at(ROOT), clock=lambda: FIXED_NOW, on_error=errors.append).run(once=True)
    assert statuses(inbox_home)["lisa.dekker@lokaal.example.nl"] == "unsubscribed", errors
    assert "$CampaignHandled" in dovecot.listing()[0][0]


def test_worker_once_goes_on_when_the_inbox_cannot_be_read(inbox_home, dovecot, monkeypatch):
    from mailer.deliver import Worker
    from mailer.project import Project

    from .conftest import ROOT, FIXED_NOW

    use(monkeypatch, dovecot, dovecot.url())
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", "wrong")
    errors: list[str] = []
    stats = Worker(Project.at(ROOT), clock=lambda: FIXED_NOW, on_error=errors.append).run(once=True)
    assert stats is not None
    assert len(errors) == 1 and "reading the inbox failed" in errors[0] and "wrong" not in errors[0]
