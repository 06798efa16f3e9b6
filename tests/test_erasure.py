"""`contacts forget`, as a data-protection officer tests it: exact, complete, and nothing else touched.

Every file here is written by the tool itself (import, schedule, worker, build, preview,
simulate, send-test), into its own folders and into `--out` folders elsewhere.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer import store
from mailer.deliver import Worker
from mailer.project import Project
from mailer.service import plan_campaign, schedule_campaign

from .conftest import for_election

PLANNED_AT = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
ELECTION = dt.date(2027, 4, 14)
MAIL1 = dt.datetime(2027, 2, 3, 9, 30, tzinfo=ZoneInfo("Europe/Amsterdam"))  # mail 1 is due at 09:00

HEADER = "email,name,party,municipality\n"
SEAN = "sean.o'brien@ok.nl"
# What must not survive an erasure, in the forms the files hold it (lower case).
TRACES = {
    SEAN: [b"o'brien", b"o&#x27;brien", b"o&#39;brien", b"seamus oduibhir", b"partij vergeetmij", b"vergeetdorp"],
    "tom&co@ok.nl": [b"tom&co", b"tom&amp;co", b"tom&#38;co", b"tom timmer", b"timmerpartij", b"timmerdorp"],
}


def contacts_file(folder: Path, lines: list[str]) -> Path:
    path = folder / "lijst.csv"
    path.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


PEOPLE = [
    "an@ok.nl,Annabel Anker,Ankerpartij,Ankeveen",
    "joan@ok.nl,Joan Jorissen,Jorispartij,Joure",
    f"{SEAN},Seamus ODuibhir,Partij Vergeetmij,Vergeetdorp",
    "tom&co@ok.nl,Tom Timmer,Timmerpartij,Timmerdorp",
    "x@bücher.nl,Xander Xavier,Xpartij,Xanten",
]


def contact_id(home: Path, key: str) -> int | None:
    conn = sqlite3.connect(home / store.DB_NAME)
    try:
        row = conn.execute("SELECT id FROM contacts WHERE email_key = ?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def statuses(run, root: Path) -> dict[str, str]:
    import json

    return {r["email"]: r["status"] for r in json.loads(run("contacts", "list", "--json", root=root).output)}


def every_file(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders if folder.exists() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def written(run, home: Path, project_copy: Path, tmp_path: Path):
    """A project whose contacts got mail 1 in the outbox, and were built, previewed, simulated
    and test-mailed into the tool's own folders and into folders elsewhere."""
    root = project_copy
    elsewhere = tmp_path / "elsewhere"
    assert run("contacts", "import", str(contacts_file(tmp_path, PEOPLE)), root=root).exit_code == 0
    project = Project.at(for_election(root, ELECTION))
    report = plan_campaign(project, now=PLANNED_AT)
    assert schedule_campaign(project, report, now=PLANNED_AT)
    stats = Worker(project, clock=lambda: MAIL1, rate_per_minute=1_000_000).run(once=True)
    assert stats.sent == len(PEOPLE)
    for who, name in ((SEAN, "sean"), ("an@ok.nl", "an"), ("joan@ok.nl", "joan")):
        result = run("build", "--contact", who, "--out", str(elsewhere / f"build-{name}"), root=root)
        assert result.exit_code == 0, result.output
        result = run("preview", "--no-serve", "--contact", who, "--out", str(elsewhere / f"preview-{name}"), root=root)
        assert result.exit_code == 0, result.output
    assert run("build", "--contact", SEAN, root=root).exit_code == 0  # into out/gr2026
    assert run("preview", "--no-serve", "--contact", SEAN, root=root).exit_code == 0  # into out/gr2026-preview
    assert run("simulate", root=root).exit_code == 0  # into $CAMPAIGN_HOME/simulation/gr2026
    assert run("simulate", "--out", str(elsewhere / "simulation"), root=root).exit_code == 0
    result = run("send-test", "--mail", "2", "--contact", SEAN, "--to", "staf@zender.test-org.nl", root=root)
    assert result.exit_code == 0, result.output
    return root, elsewhere


@pytest.mark.parametrize("person", [SEAN, "tom&co@ok.nl"])
def test_forget_removes_every_file_written_for_the_person_and_nothing_of_theirs_stays(
        run, home: Path, written, tmp_path: Path, person: str):
    root, elsewhere = written
    traces = TRACES[person]
    before = every_file(home, root / "out", elsewhere)
    holding = [p for p, data in before.items() if any(t in data.lower() for t in traces)]
    # The set-up wrote the person's data in every kind of place the tool writes to (Sean's
    # builds and test mail too: the others were built for him).
    places = [home / "outbox" / "gr2026" / "01", home / "simulation", elsewhere / "simulation"]
    if person == SEAN:
        places += [home / "outbox" / "test", root / "out" / "gr2026", elsewhere / "build-sean",
                   root / "out" / "gr2026-preview", elsewhere / "preview-sean"]
    for place in places:
        assert any(place in p.parents for p in holding), place

    result = run("contacts", "forget", person, "--yes", root=root)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Erased {person[0]}***@ok.nl: contact and send records deleted,")
    assert person not in result.output

    after = every_file(home, root / "out", elsewhere)
    for path, data in after.items():
        for trace in traces:
            assert trace not in data.lower(), (path, trace)
    removed = set(before) - set(after)
    assert f"{len([p for p in removed if p.suffix != '.tmp'])} file(s) removed" in result.output
    # Each simulation lost Sean's lines, and only those: nine each, since mail 1 was only written
    # to the outbox (it reached no one), so simulate keeps it.
    assert "18 timeline line(s) dropped" in result.output
    everyone = {"an@ok.nl", "joan@ok.nl", SEAN, "tom&co@ok.nl", "x@xn--bcher-kva.nl"}
    assert statuses(run, root) == dict.fromkeys(everyone - {person}, "active")
    # A later import cannot bring him back.
    again = run("contacts", "import", str(contacts_file(tmp_path, PEOPLE)), root=root)
    assert "1 refused as erased" in again.output


def test_forget_an_leaves_joan_byte_for_byte(run, home: Path, written):
    root, elsewhere = written
    joan = contact_id(home, "joan@ok.nl")
    an = contact_id(home, "an@ok.nl")
    conn = sqlite3.connect(home / store.DB_NAME)
    joan_mids = [r[0] for r in conn.execute("SELECT message_id FROM ledger WHERE contact_id = ?", (joan,))]
    conn.close()
    joan_outbox = [home / "outbox" / "gr2026" / "01" / (hashlib.sha256(m.encode()).hexdigest()[:24] + ".eml")
                   for m in joan_mids]
    joan_sim = [p for folder in (home / "simulation", elsewhere / "simulation")
                for p in folder.rglob(f"*-c{joan}.eml")]
    an_sim = [p for folder in (home / "simulation", elsewhere / "simulation") for p in folder.rglob(f"*-c{an}.eml")]
    joan_files = joan_outbox + joan_sim + sorted((elsewhere / "build-joan").iterdir())
    # Mails 1-9 in each of the two simulations: mail 1 was only written to the outbox, so simulate keeps it.
    assert len(joan_outbox) == 1 and len(joan_sim) == 18 and len(an_sim) == 18
    kept = {p: p.read_bytes() for p in joan_files}
    timelines = [home / "simulation" / "gr2026" / "timeline.csv", elsewhere / "simulation" / "timeline.csv"]
    joan_lines = {t: [r for r in csv.DictReader(t.open(encoding="utf-8")) if r["contact_id"] == str(joan)]
                  for t in timelines}

    result = run("contacts", "forget", "an@ok.nl", "--yes", root=root)
    assert result.exit_code == 0, result.output

    assert {p: p.read_bytes() for p in joan_files} == kept
    assert not any(p.exists() for p in an_sim)
    assert not (elsewhere / "build-an").exists() or not any((elsewhere / "build-an").iterdir())
    for t in timelines:
        rows = list(csv.DictReader(t.open(encoding="utf-8")))
        assert [r for r in rows if r["contact_id"] == str(joan)] == joan_lines[t]
        assert not [r for r in rows if r["contact_id"] == str(an) or r["contact"] == "an@ok.nl"]
    # Joan's preview holds Joan only, so erasing An leaves it as it was.
    assert (elsewhere / "preview-joan" / "index.html").exists()
    assert statuses(run, root)["joan@ok.nl"] == "active"
    assert "an@ok.nl" not in statuses(run, root)


@pytest.mark.parametrize("typed, says", [
    ("e", "'e' is not a usable address: An email address must have an @-sign."),
    ("", "'' is not a usable address"),
    ("anna@0ther.nl", "no contact a***@0ther.nl; nothing was erased."),
    ("sean.o'brien@ok.nl.", "is not a usable address: An email address cannot end with a period."),
    ("Sean <sean.o'brien@ok.nl>", "is not a usable address: A display name and angle brackets"),
    ("an@ok.n", "no contact a***@ok.n; nothing was erased."),
])
def test_forget_refuses_what_is_not_exactly_a_contact_and_erases_nothing(run, home: Path, written, typed, says):
    root, elsewhere = written
    before = every_file(root / "out", elsewhere, home / "outbox", home / "simulation")
    contacts = statuses(run, root)
    result = run("contacts", "forget", typed, "--yes", root=root)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert says in result.output
    assert "Erased" not in result.output
    assert every_file(root / "out", elsewhere, home / "outbox", home / "simulation") == before
    assert statuses(run, root) == contacts
    conn = sqlite3.connect(home / store.DB_NAME)
    assert conn.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize("typed", ["x@xn--bcher-kva.nl", "X@Bücher.NL", " x@bücher.nl "])
def test_forget_matches_a_stored_idn_address_in_any_of_its_forms(run, home: Path, project_copy: Path, tmp_path: Path,
                                                                 typed):
    source = contacts_file(tmp_path, PEOPLE)
    run("contacts", "import", str(source), root=project_copy)
    result = run("contacts", "forget", typed, "--yes", root=project_copy)
    assert result.exit_code == 0, result.output
    assert "Erased x***@xn--bcher-kva.nl" in result.output
    assert "x@xn--bcher-kva.nl" not in statuses(run, project_copy)
    # The hash is made of the same normal form as import's: the Unicode spelling is refused too.
    again = run("contacts", "import", str(source), root=project_copy)
    assert "1 refused as erased" in again.output


def test_forget_not_imported_records_only_a_hash_and_says_what_was_typed(run, home: Path, project_copy: Path,
                                                                         tmp_path: Path):
    root = project_copy
    run("contacts", "import", str(contacts_file(tmp_path, PEOPLE[:2])), root=root)
    result = run("contacts", "forget", "Later@Elders.nl", "--not-imported", "--yes", root=root)
    assert result.exit_code == 0, result.output
    assert "Recorded the erasure request for l***@elders.nl, which was never imported" in result.output
    # An imported address is not recorded by mistake as never imported.
    refused = run("contacts", "forget", "an@ok.nl", "--not-imported", "--yes", root=root)
    assert refused.exit_code == 1
    assert "a***@ok.nl is an imported contact; run it again without --not-imported" in refused.output
    assert statuses(run, root)["an@ok.nl"] == "active"
    # Forgetting twice tells the truth the second time.
    again = run("contacts", "forget", "later@elders.nl", "--yes", root=root)
    assert again.exit_code == 0 and "l***@elders.nl was erased earlier" in again.output
    later = contacts_file(tmp_path, ["later@elders.nl,Later,P,Ede"])
    assert "1 refused as erased" in run("contacts", "import", str(later), root=root).output


def test_forget_with_an_unremovable_file_keeps_the_contact_and_says_which(run, home: Path, project_copy: Path,
                                                                         tmp_path: Path):
    root = project_copy
    run("contacts", "import", str(contacts_file(tmp_path, PEOPLE[:2])), root=root)
    out = tmp_path / "built"
    assert run("build", "--contact", "an@ok.nl", "--out", str(out), root=root).exit_code == 0
    # Something in the way that unlink() refuses, even for root: a folder where a file was.
    stuck = out / "01-wonen-eerst.html"
    stuck.unlink()
    stuck.mkdir()
    (stuck / "kept.txt").write_text("x")
    result = run("contacts", "forget", "an@ok.nl", "--yes", root=root)
    assert result.exit_code == 1
    assert "a***@ok.nl: 1 file(s) could not be erased; the contact is kept" in result.output
    assert str(stuck) in result.output
    assert statuses(run, root)["an@ok.nl"] == "active"
    (stuck / "kept.txt").unlink()
    stuck.rmdir()
    result = run("contacts", "forget", "an@ok.nl", "--yes", root=root)
    assert result.exit_code == 0, result.output
    assert not list(out.iterdir())


def test_a_version_2_file_gets_the_written_table_and_keeps_its_contacts(tmp_path: Path):
    conn = store.connect(tmp_path)
    conn.execute("INSERT INTO contacts (email, email_key, party, municipality, basis, source, imported_at, updated_at)"
                 " VALUES ('a@ok.nl', 'a@ok.nl', 'P', 'Ede', 'b', 's', 'x', 'x')")
    conn.executescript("DROP TABLE written; PRAGMA user_version = 2;")
    conn.close()
    conn = store.connect(tmp_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    store.record_files(conn, [tmp_path / "f.html"], contact_id=1)
    assert [tuple(r) for r in conn.execute("SELECT path, kind, contact_id, everyone FROM written")] == [
        (str((tmp_path / "f.html").resolve()), "file", 1, 0)]
    assert conn.execute("SELECT email FROM contacts").fetchall()[0][0] == "a@ok.nl"
    conn.close()
