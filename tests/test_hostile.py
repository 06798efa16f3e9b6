"""Hostile input: every command, every option, odd environments and failing disks end in a
sentence (``Error: ...``, exit 1 or 2), never in a Python traceback."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import cli
from mailer import store

from .conftest import CONFIGURED_SETTINGS, ELECTION_AHEAD, IN_CI, ROOT, for_election

TEXT = ["", "../../etc/passwd", "x" * 3000, "a\x00b", "\x1b[2J\r\nBcc: x@example.org", "\u202eabc@example.org",
        "nobody@", "-1", "\u00b2", "\u0663", "jan@\u0430\u0440\u0440le.com", "'; DROP TABLE ledger; --"]
INTEGER = ["-1", "0", "-5", "80000", "99999999999999999999", "abc", ""]
DATE = ["9999-12-20", "0001-01-02", "9999-12-31", "0001-01-01", "2026-02-30", "", "\u202e2027-01-01"]
CHOICE = ["", "nope", "a\x00b"]
# Output paths: a virtual file system, a device that is always full, a file where a folder is
# expected, a name too long. Never an existing system file (as root it would be overwritten), and
# nothing that root could create outside the test's folder.
OUT_PATH = ["/proc/x", "/dev/full/x", "../../etc/passwd", "/dev/full", "", "a\x00b", "{file}", "{file}/x", "x" * 5000]
IN_PATH = ["/proc/x", "{missing}", "../../etc/passwd", "", "a\x00b", "{binary}", "{folder}", "{empty}", "x" * 5000]
# Commands that would otherwise run until stopped.
ALWAYS = {("worker",): ["--once"], ("preview",): ["--no-serve"]}


def commands(group: click.Group = cli.cli, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the CLI, found by walking the groups: a command added later is covered too."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


def hostile_values(param: click.Parameter) -> list[str]:
    kind = param.type
    if isinstance(kind, click.types.IntParamType):
        return INTEGER
    if isinstance(kind, click.DateTime):
        return DATE
    if isinstance(kind, click.Choice):
        return CHOICE
    if isinstance(kind, click.Path):
        return IN_PATH if kind.exists else OUT_PATH
    return TEXT


def benign_value(param: click.Parameter) -> str:
    """For a required parameter while another one is hostile."""
    kind = param.type
    if isinstance(kind, click.types.IntParamType):
        return "1"
    if isinstance(kind, click.Path):
        return str(ROOT / "contacts" / "example.csv")
    if param.name == "at":
        return "now"
    return "nobody@example.org"


def flag(param: click.Option) -> str:
    return param.opts[0]


def option(param: click.Parameter) -> list[str]:
    return [param.opts[0]] if isinstance(param, click.Option) else []


def invocations(path: tuple[str, ...], command: click.Command) -> Iterator[list[str]]:
    """One hostile value at a time, the others left out (or benign when required); flags on and off."""
    flags = [p for p in command.params if isinstance(p, click.Option) and p.is_flag]
    values = [p for p in command.params if not (isinstance(p, click.Option) and p.is_flag)]
    forced = ALWAYS.get(path, [])
    yield [*path, *forced]
    yield [*path, "--help"]
    for param in values:
        for i, value in enumerate(hostile_values(param)):
            args = [*path, *forced]
            if i % 2 == 0:
                args += [flag(f) for f in flags if flag(f) not in forced]
            for other in values:
                if other is param:
                    args += [*option(other), value]
                elif other.required:
                    args += [*option(other), benign_value(other)]
            yield args


# The project the commands run against: a copy whose election is ahead (the bundled one is past).
AHEAD: list[Path] = []


@pytest.fixture(autouse=True)
def _ahead(project_ahead: Path) -> None:
    AHEAD[:] = [project_ahead]


def invoke(args: list[str], *, root: Path | None = None) -> Result:
    root = root or AHEAD[0]
    runner = CliRunner()
    # Safety net: a command that starts serving or looping must fail this test, not hang it.
    signal.alarm(60)
    try:
        return runner.invoke(cli.cli, ["--project", str(root), *args], catch_exceptions=True)
    finally:
        signal.alarm(0)


def shown(args: list[str]) -> str:
    return repr([a if len(a) < 60 else a[:20] + f"...({len(a)} characters)" for a in args])


def problem(args: list[str], result: Result) -> str | None:
    """What is wrong with how a command ended, or None when it ended with a sentence."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else repr(result.exception)
        return f"{shown(args)}: {type(result.exception).__name__}\n{trace[-1200:]}"
    if result.exit_code not in (0, 1, 2):
        return f"{shown(args)}: exit {result.exit_code}\n{result.output[-500:]}"
    if "Traceback" in result.output:
        return f"{shown(args)}: a traceback in the output\n{result.output[-1200:]}"
    if result.exit_code != 0 and "Error" not in result.output and "Usage" not in result.output:
        return f"{shown(args)}: exit {result.exit_code} without a sentence\n{result.output[-500:]}"
    return None


def fill(arg: str, files: dict[str, Path]) -> str:
    """An argument with its placeholder ({file}, {missing}...) replaced by the test's own path."""
    for key, path in files.items():
        if arg.startswith(key):
            return str(path) + arg[len(key):]
    return arg


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """The worker command installs its own handlers; give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A project copy, plus two homes to copy from: empty, and configured with a stored plan."""
    base = tmp_path_factory.mktemp("hostile")
    project = base / "project"
    for name in ("campaigns", "templates"):
        shutil.copytree(ROOT / name, project / name)
    (project / "contacts").mkdir()
    shutil.copy(ROOT / "contacts" / "example.csv", project / "contacts" / "example.csv")
    for_election(project, ELECTION_AHEAD)
    scheduled = base / "scheduled"
    scheduled.mkdir()
    (scheduled / "settings.toml").write_text(CONFIGURED_SETTINGS, encoding="utf-8")
    env = {**os.environ, "CAMPAIGN_HOME": str(scheduled)}
    env.pop("CAMPAIGN_SMTP_URL", None)
    for args in (["contacts", "import", str(ROOT / "contacts" / "example.csv")],
                 ["schedule", "--yes"]):
        result = CliRunner().invoke(cli.cli, ["--project", str(project), *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return {"project": project, "scheduled": scheduled}


COMMANDS = list(commands())


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
@pytest.mark.parametrize("state", ["fresh", "scheduled"])
def test_every_command_survives_hostile_arguments(path: tuple[str, ...], state: str, prepared: dict[str, Path],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  restore_signals: None) -> None:
    command = dict(COMMANDS)[path]
    home = tmp_path / "home"
    if state == "scheduled":
        shutil.copytree(prepared["scheduled"], home)
    monkeypatch.setenv("CAMPAIGN_HOME", str(home))
    monkeypatch.delenv("CAMPAIGN_SMTP_URL", raising=False)
    monkeypatch.delenv("CAMPAIGN_SMTP_CA_FILE", raising=False)
    # Relative paths such as ../../etc/passwd stay inside the test's folder.
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    files = {"{file}": tmp_path / "a-file", "{binary}": tmp_path / "binary.csv", "{folder}": tmp_path / "a",
             "{empty}": tmp_path / "empty.csv", "{missing}": tmp_path / "missing" / "dir" / "x"}
    files["{file}"].write_text("not a folder\n")
    files["{binary}"].write_bytes(b"e-mail;name\n\xff\xfe\x00\x01;\x00\n" * 20)
    files["{empty}"].write_bytes(b"")
    found = []
    for args in invocations(path, command):
        args = [fill(a, files) for a in args]
        result = invoke(args, root=prepared["project"])
        wrong = problem(args, result)
        if wrong:
            found.append(wrong)
    assert not found, f"{len(found)} invocation(s) of `{' '.join(path)}` ended badly:\n\n" + "\n\n".join(found[:5])


@pytest.mark.parametrize("args", [[], ["no-such-command"], ["--campaign"], *[["--campaign", v, "status"] for v in TEXT],
                                  *[["--project", v, "status"] for v in IN_PATH if not v.startswith("{")]])
def test_the_group_survives_hostile_arguments(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              args: list[str]):
    monkeypatch.chdir(tmp_path)
    result = invoke(args)
    wrong = problem(args, result)
    assert wrong is None, wrong


@pytest.mark.parametrize("args", [["contacts", "import", "/dev/null"], ["contacts", "unsubscribe", "--from", "/dev/null"]])
def test_a_device_is_not_read_as_a_file(home: Path, args: list[str]):
    # /dev/null stands in for /dev/zero, which the old code read until memory ran out.
    result = campaign(*args)
    assert result.exit_code == 2, result.output
    assert "'/dev/null' is a device, not a file" in result.output


def test_a_state_database_that_is_not_one_is_named(home: Path):
    home.mkdir()
    (home / "campaign.sqlite3").write_bytes(b"this is not a database\n" * 100)
    for args in (["status"], ["contacts", "list"], ["pause"]):
        refused(campaign(*args), 1, f"the state database {home / 'campaign.sqlite3'} is damaged or not a database")


# --- single cases from the issues ---------------------------------------------------------------

def campaign(*args: str, root: Path | None = None) -> Result:
    """Invoke ``campaign`` in-process; exceptions are caught so that a traceback fails the check."""
    return invoke(list(args), root=root)


def refused(result: Result, code: int, *words: str) -> None:
    """The command ended with a sentence naming ``words``, with exit ``code``."""
    wrong = problem(["..."], result)
    assert wrong is None, wrong
    assert result.exit_code == code, result.output
    assert "Error: " in result.output, result.output
    for word in words:
        assert word in result.output, result.output


def stored(home: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(home / "campaign.sqlite3")
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture
def scheduled(configured_home: Path, restore_signals: None) -> Path:
    """A configured home with the example contacts imported and the plan stored."""
    assert campaign("contacts", "import", str(ROOT / "contacts" / "example.csv")).exit_code == 0
    result = campaign("schedule", "--yes")
    assert result.exit_code == 0, result.output
    return configured_home


@pytest.mark.parametrize(("ca_file", "reason"), [("/nonexistent.pem", "No such file"),
                                                 ("/etc/passwd", "no certificate")])
def test_a_bad_ca_file_is_named(configured_home: Path, monkeypatch: pytest.MonkeyPatch, ca_file: str, reason: str,
                                restore_signals: None):
    monkeypatch.setenv("CAMPAIGN_SMTP_URL", "smtp://127.0.0.1:1")
    monkeypatch.setenv("CAMPAIGN_SMTP_CA_FILE", ca_file)
    for args in (["send-test"], ["worker", "--once"], ["status"]):
        refused(campaign(*args), 1, f"CAMPAIGN_SMTP_CA_FILE={ca_file}", reason)


@pytest.mark.parametrize(("url", "words"), [
    ("smtp://u:hunter2@[::1:8587", ["not a valid URL"]),
    ("smtp://mail.example.org:99999", ["port", "0-65535"]),
    ("smtp://mail.example.org:abc", ["port"]),
    ("ftp://mail.example.org", ["scheme 'ftp'"]),
    ("smtp://", ["host"]),
    ("smtp://u:hunter2@mail.example.org", ["CAMPAIGN_SMTP_PASSWORD"]),
])
def test_a_malformed_smtp_url_is_a_sentence_without_the_password(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 url: str, words: list[str]):
    monkeypatch.setenv("CAMPAIGN_SMTP_URL", url)
    result = campaign("status")
    refused(result, 1, "CAMPAIGN_SMTP_URL", *words)
    assert "hunter2" not in result.output


def test_settings_that_are_not_utf8_name_the_line(configured_home: Path):
    path = configured_home / "settings.toml"
    lines = CONFIGURED_SETTINGS.encode().splitlines(keepends=True)
    lines[2] = b'address = "campagne@zender\xff.nl"\n'
    path.write_bytes(b"".join(lines))
    refused(campaign("send-test"), 1, f"{path}:3:", "UTF-8")


@pytest.mark.parametrize(("text", "key"), [
    ("[test]\nrecipients = [42]\n", "test.recipients"),
    ('[test]\nrecipients = ["a@example.nl", ["b@example.nl"]]\n', "test.recipients"),
    ("[delivery]\nrate_per_minute = -5\n", "delivery.rate_per_minute"),
    ("[delivery]\nrate_per_minute = 0\n", "delivery.rate_per_minute"),
    ('[delivery]\nrate_per_minute = "60"\n', "delivery.rate_per_minute"),
    ("[delivery]\nconnections = 0\n", "delivery.connections"),
])
def test_wrong_types_and_rates_in_settings_are_refused(configured_home: Path, text: str, key: str):
    from mailer.errors import SettingsError
    from mailer.settings import load_deployment_settings

    body = CONFIGURED_SETTINGS.replace('[test]\nrecipients = ["staf@zender.test-org.nl"]\n', "")
    (configured_home / "settings.toml").write_text(body + text, encoding="utf-8")
    with pytest.raises(SettingsError, match=key.replace(".", r"\.")):
        load_deployment_settings(configured_home)
    refused(campaign("send-test"), 1, key)


@pytest.mark.parametrize("args", [["worker", "--once", "--rate", "-5"], ["worker", "--once", "--rate", "0"],
                                  ["simulate", "--rate", "0"], ["simulate", "--rate", "-5"]])
def test_a_rate_below_one_is_a_usage_error(home: Path, args: list[str], restore_signals: None):
    result = campaign(*args)
    assert result.exit_code == 2, result.output
    assert "--rate" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("port", ["80000", "-1"])
def test_a_port_out_of_range_is_a_usage_error_before_serving(home: Path, port: str):
    result = campaign("preview", "--port", port)
    assert result.exit_code == 2, result.output
    assert "--port" in result.output and "0<=x<=65535" in result.output


@pytest.mark.parametrize("args", [["--start", "9999-12-20"], ["--election-date", "0001-01-02"],
                                  ["--start", "0001-01-01"], ["--election-date", "9999-12-31"]])
@pytest.mark.parametrize("command", ["plan", "simulate", "schedule"])
def test_dates_that_would_overflow_are_a_usage_error(home: Path, command: str, args: list[str]):
    result = campaign(command, *args, "--yes") if command == "schedule" else campaign(command, *args)
    assert result.exit_code == 2, result.output
    assert args[0] in result.output and "2000-01-01" in result.output and "Traceback" not in result.output


def test_retry_and_approve_refuse_a_mail_the_campaign_does_not_have(scheduled: Path):
    from mailer.errors import StateError
    from mailer.schedule import approve, retry

    before = stored(scheduled, "SELECT * FROM schedule ORDER BY mail")
    refused(campaign("retry", "--mail", "999"), 1, "campaign gr2026 has no mail 999; its mails are 1-9")
    refused(campaign("approve", "--mail", "12"), 1, "campaign gr2026 has no mail 12; its mails are 1-9")
    for args in (["retry", "--mail", "0"], ["approve", "--mail", "0"], ["cancel", "--mail", "-1"],
                 ["reschedule", "--mail", "99999999999999999999", "--at", "now"]):
        result = campaign(*args)
        assert result.exit_code == 2 and "--mail" in result.output, result.output
    conn = store.connect(scheduled)
    try:
        with pytest.raises(StateError, match="no mail 10"):
            retry(conn, "gr2026", mail=10, now=store.now_utc())
        with pytest.raises(StateError, match="no mail 0"):
            approve(conn, "gr2026", {}, mails=[3, 0])
    finally:
        conn.close()
    assert stored(scheduled, "SELECT * FROM schedule ORDER BY mail") == before


@pytest.mark.parametrize(("path", "reason"), [("{tmp}/nonexistent/dir/x.ics", "No such file or directory"),
                                              ("/dev/full", "No space left on device")])
def test_an_ics_file_that_cannot_be_written_is_a_sentence(home: Path, tmp_path: Path, path: str, reason: str):
    path = path.replace("{tmp}", str(tmp_path))
    refused(campaign("plan", "--ics", path), 1, f"could not write {path}: {reason}")


@pytest.mark.parametrize("args", [["build", "--out", "/proc/foo"], ["simulate", "--out", "/proc/x"],
                                  ["preview", "--no-serve", "--out", "/proc/x"], ["build", "--out", "/dev/full"]])
def test_an_output_folder_that_cannot_be_made_is_a_sentence(home: Path, args: list[str]):
    refused(campaign(*args), 1, args[-1])


def test_simulate_does_not_empty_a_folder_it_did_not_write(home: Path, tmp_path: Path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work\n")
    refused(campaign("simulate", "--out", str(precious)), 1, str(precious))
    assert (precious / "thesis.txt").read_text() == "years of work\n"
    ours = tmp_path / "simulation"
    assert campaign("simulate", "--out", str(ours)).exit_code == 0
    again = campaign("simulate", "--out", str(ours))  # its own earlier output is replaced
    assert again.exit_code == 0, again.output


# --- a locked database, a database that cannot be written, a full disk -------------------------

def test_a_locked_database_is_a_sentence_and_changes_nothing(scheduled: Path, monkeypatch: pytest.MonkeyPatch):
    # The busy timeout (30 s in use) is shortened; the lock itself is real: a second
    # connection, as another process would hold it, inside BEGIN EXCLUSIVE.
    monkeypatch.setattr(store, "BUSY_TIMEOUT", 0.2)
    query = "SELECT * FROM plans, schedule USING (campaign) ORDER BY mail"
    before = stored(scheduled, query), stored(scheduled, "SELECT email, status FROM contacts ORDER BY id")
    holder = sqlite3.connect(scheduled / "campaign.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for args in (["pause"], ["reschedule", "--mail", "2", "--at", "now"], ["retry", "--mail", "1"],
                     ["contacts", "unsubscribe", "jan.jansen@example.nl"],
                     ["contacts", "import", str(ROOT / "contacts" / "example.csv")], ["worker", "--once"]):
            refused(campaign(*args), 1, f"the state database {scheduled / 'campaign.sqlite3'} is locked by "
                    "another process (a worker or another command); try again when it has finished")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (stored(scheduled, query), stored(scheduled, "SELECT email, status FROM contacts ORDER BY id")) == before
    assert campaign("pause").exit_code == 0  # once the lock is gone


@pytest.fixture
def mount(tmp_path: Path) -> Iterator:
    """``mount(path, size)``: a real small tmpfs at ``path`` (root only); unmounted afterwards."""
    mounted: list[Path] = []

    def make(path: Path, size: str) -> Path:
        if os.geteuid() != 0:
            if IN_CI:
                pytest.fail("this test mounts a small tmpfs and needs root; .ci/run runs as root")
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            if IN_CI:
                pytest.fail(f"mount -t tmpfs failed: {done.stderr}")
            pytest.skip(f"mount -t tmpfs is not allowed here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield make
    gc.collect()  # connections of a command that failed, still held by its traceback
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill_disk(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):  # down to the last partial block
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def due_now(home: Path) -> None:
    """Import the example contacts, store the plan and make mail 1 due at once."""
    (home / "settings.toml").write_text(CONFIGURED_SETTINGS, encoding="utf-8")
    for args in (["contacts", "import", str(ROOT / "contacts" / "example.csv")],
                 ["schedule", "--yes"], ["reschedule", "--mail", "1", "--at", "now"]):
        result = campaign(*args)
        assert result.exit_code == 0, result.output


def ledger_states(home: Path) -> dict[str, int]:
    return dict(stored(home, "SELECT state, COUNT(*) FROM ledger GROUP BY state"))


def test_a_full_outbox_stops_the_worker_with_every_message_still_queued(home: Path, mount, restore_signals: None):
    home.mkdir()
    due_now(home)
    outbox = mount(home / "outbox", "1m")
    filler = fill_disk(outbox)
    result = campaign("worker", "--once")
    refused(result, 1, "could not write", "No space left on device", "not written to the outbox")
    # Nobody was marked failed: the worker stopped at the first message and put it back.
    assert ledger_states(home) == {"pending": 5}
    assert stored(home, "SELECT MAX(attempts) FROM ledger") == [(0,)]
    filler.unlink()
    again = campaign("worker", "--once", "--rate", "100000")
    assert again.exit_code == 0, again.output
    assert ledger_states(home) == {"sent": 5}
    assert len(list((outbox / "gr2026" / "01").glob("*.eml"))) == 5
    assert not list(outbox.rglob("*.tmp"))


def test_a_full_disk_under_the_database_is_a_sentence_and_the_ledger_holds(tmp_path: Path, monkeypatch, mount,
                                                                          restore_signals: None):
    home = mount(tmp_path / "small", "2m")
    monkeypatch.setenv("CAMPAIGN_HOME", str(home))
    due_now(home)
    before = stored(home, "SELECT * FROM schedule ORDER BY mail")
    filler = fill_disk(home)
    results = [campaign(*args) for args in (["contacts", "import", str(ROOT / "contacts" / "example.csv")],
                                            ["worker", "--once"], ["simulate"])]
    for result in results:
        wrong = problem(["..."], result)
        assert wrong is None, wrong
        assert result.exit_code == 1 and "Error: " in result.output, result.output
        assert "No space left on device" in result.output or "the disk is full" in result.output, result.output
    filler.unlink()
    assert "failed" not in ledger_states(home)
    again = campaign("worker", "--once", "--rate", "100000")
    assert again.exit_code == 0, again.output
    # Each contact got mail 1 exactly once, whatever the full disk interrupted.
    assert ledger_states(home) == {"sent": 5}
    assert len(list((home / "outbox" / "gr2026" / "01").glob("*.eml"))) == 5
    assert [r[:4] for r in stored(home, "SELECT * FROM schedule WHERE mail > 1 ORDER BY mail")] == \
        [r[:4] for r in before[1:]]


def test_a_database_that_cannot_be_written_is_a_sentence(tmp_path: Path, monkeypatch, mount, restore_signals: None):
    home = mount(tmp_path / "readonly", "4m")
    monkeypatch.setenv("CAMPAIGN_HOME", str(home))
    due_now(home)
    before = (home / "campaign.sqlite3").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
    for args in (["pause"], ["contacts", "import", str(ROOT / "contacts" / "example.csv")], ["worker", "--once"],
                 ["status"]):
        refused(campaign(*args), 1, str(home / "campaign.sqlite3"))
    assert (home / "campaign.sqlite3").read_bytes() == before


# --- hostile environments ------------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value", "words"), [
    ("CAMPAIGN_HOME", "{file}", ["CAMPAIGN_HOME=", "is not a folder"]),
    ("CAMPAIGN_HOME", "/proc/campaign", ["/proc/campaign"]),
    ("CAMPAIGN_HOME", "/dev/full/campaign", ["/dev/full/campaign"]),
    ("CAMPAIGN_PROJECT", "{tmp}/no/such/project", ["'--project'", "no/such/project", "does not exist"]),
    ("CAMPAIGN_SMTP_URL", "smtp://mail.example.org:0x1F", ["CAMPAIGN_SMTP_URL", "port"]),
    ("CAMPAIGN_SMTP_URL", "smtps://u:hunter2@", ["CAMPAIGN_SMTP_URL"]),
    ("CAMPAIGN_SMTP_URL", "http://mail.example.org", ["CAMPAIGN_SMTP_URL", "scheme 'http'"]),
    ("CAMPAIGN_SMTP_URL", "smtp://[fe80::1%25eth0", ["CAMPAIGN_SMTP_URL"]),
    ("CAMPAIGN_SMTP_CA_FILE", "{tmp}", ["CAMPAIGN_SMTP_CA_FILE="]),
])
def test_a_hostile_environment_is_named(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        restore_signals: None, variable: str, value: str, words: list[str]):
    (tmp_path / "a-file").write_text("not a folder\n")
    value = value.replace("{file}", str(tmp_path / "a-file")).replace("{tmp}", str(tmp_path))
    monkeypatch.setenv(variable, value)
    if variable == "CAMPAIGN_SMTP_CA_FILE":
        monkeypatch.setenv("CAMPAIGN_SMTP_URL", "smtp://127.0.0.1:1")
    for args in (["status"], ["init"], ["contacts", "list"], ["worker", "--once"], ["send-test"]):
        # The group's --project is given by invoke(); CAMPAIGN_PROJECT only counts without it.
        result = (CliRunner().invoke(cli.cli, args, catch_exceptions=True) if variable == "CAMPAIGN_PROJECT"
                  else campaign(*args))
        wrong = problem(args, result)
        assert wrong is None, wrong
        if args[0] in ("init", "contacts") and variable.startswith("CAMPAIGN_SMTP"):
            continue  # these send nothing and need no transport
        refused(result, 2 if variable == "CAMPAIGN_PROJECT" else 1, *words)
    assert "hunter2" not in result.output
