"""contacts/example.csv is needed only while no contacts are imported.

A project with imported contacts and no example list is checked, built and previewed for the
imported contacts; with neither, every command says plainly what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailer.preview import build_site, search_contacts
from mailer.project import Project

from .conftest import FIXED_NOW
from .test_preview_safety import import_people, people

NONE_MESSAGE = ("no contacts imported and no contacts/example.csv: import a list with "
                "`campaign contacts import FILE`")


@pytest.fixture
def imported_only(project_copy: Path, home: Path, tmp_path: Path) -> Path:
    import_people(Project.at(project_copy), tmp_path, people(5))
    (project_copy / "contacts" / "example.csv").unlink()
    return project_copy


def test_check_build_and_preview_use_the_imported_contacts(run, imported_only: Path, tmp_path: Path):
    result = run("check", "--json", root=imported_only)
    assert result.exit_code == 0, result.output
    assert not [f for f in json.loads(result.output)["findings"] if f["level"] == "error"]
    result = run("build", "--out", str(tmp_path / "b1"), root=imported_only)
    assert result.exit_code == 0, result.output
    assert "Naam0000 Achternaam0" in (tmp_path / "b1" / "02-verantwoord-zorgbeleid.txt").read_text(encoding="utf-8")
    who = people(5)[3]
    result = run("build", "--out", str(tmp_path / "b2"), "--contact", who[0], root=imported_only)
    assert result.exit_code == 0, result.output
    assert who[1] in (tmp_path / "b2" / "02-verantwoord-zorgbeleid.txt").read_text(encoding="utf-8")
    result = run("preview", "--no-serve", "--out", str(tmp_path / "p"), root=imported_only)
    assert result.exit_code == 0, result.output
    for output in (run("check", root=imported_only).output,):
        assert "example.csv" not in output


def test_a_contact_not_imported_is_named_without_the_missing_example_list(run, imported_only: Path, tmp_path: Path):
    result = run("build", "--out", str(tmp_path / "b"), "--contact", "niemand@example.nl", root=imported_only)
    assert result.exit_code == 1
    assert "cannot read" not in result.output and "n***@example.nl" in result.output


def test_the_live_preview_and_its_search_use_the_imported_contacts(imported_only: Path):
    project = Project.at(imported_only)
    pages = build_site(project, live=True, now=FIXED_NOW)
    assert "cannot be built" not in pages["index.html"].body.decode("utf-8")
    assert "Naam0000" in pages["index.html"].body.decode("utf-8")
    found, more = search_contacts(project, "naam0002")
    assert [c.name for c in found] == [people(5)[2][1]] and not more


@pytest.mark.parametrize("args", [["check"], ["build"], ["preview", "--no-serve"]])
def test_without_either_every_command_says_what_to_do(run, project_copy: Path, home: Path, tmp_path: Path,
                                                       args: list[str]):
    (project_copy / "contacts" / "example.csv").unlink()
    out = ["--out", str(tmp_path / "out")] if args[0] != "check" else []
    result = run(*args, *out, root=project_copy)
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: {NONE_MESSAGE}\n"
    assert not (tmp_path / "out").exists()


def test_without_either_the_live_preview_says_what_to_do(project_copy: Path, home: Path):
    (project_copy / "contacts" / "example.csv").unlink()
    project = Project.at(project_copy)
    assert NONE_MESSAGE in build_site(project, live=True, now=FIXED_NOW)["index.html"].body.decode("utf-8")
    assert search_contacts(project, "jan") == ([], False)
