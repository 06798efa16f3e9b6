"""Fixes after the attacker's review (issues 11 and 12): erasure, privacy, opt-outs, nobody mailed
against their wish, every message telling the truth.

Through the CLI and the engine, with real SQLite files, real files and a real SMTP server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from .conftest import ROOT
from .smtp_server import Server


def rows(home: Path, query: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(home / "campaign.sqlite3")
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


# --- 1. simulate --out never deletes what it did not write ------------------------------------------

def test_simulate_refuses_a_folder_with_a_stray_timeline_and_deletes_nothing(run, home: Path, tmp_path: Path):
    folder = tmp_path / "D"
    (folder / "sub").mkdir(parents=True)
    (folder / "timeline.csv").write_text("x\n")
    (folder / "precious.docx").write_text("p\n")
    (folder / "sub" / "thesis.txt").write_text("t\n")
    result = run("simulate", "--out", str(folder))
    assert result.exit_code == 1
    assert "choose a new or empty folder" in result.output
    assert "Traceback" not in result.output
    assert (folder / "precious.docx").read_text() == "p\n"
    assert (folder / "sub" / "thesis.txt").read_text() == "t\n"
    assert (folder / "timeline.csv").read_text() == "x\n"


def test_simulate_again_removes_only_what_the_simulation_wrote(run, home: Path, tmp_path: Path):
    ours = tmp_path / "sim"
    assert run("simulate", "--out", str(ours)).exit_code == 0
    mail_folder = next(p for p in ours.iterdir() if p.is_dir())
    (ours / "notes.txt").write_text("mine\n")  # a person put a file beside the simulation
    (mail_folder / "remark.txt").write_text("also mine\n")
    again = run("simulate", "--out", str(ours))
    assert again.exit_code == 0, again.output
    assert (ours / "notes.txt").read_text() == "mine\n"
    assert (mail_folder / "remark.txt").read_text() == "also mine\n"
    assert (ours / "timeline.csv").is_file()
    assert len(list(mail_folder.glob("*.eml"))) == 5


def test_simulate_refuses_an_out_that_is_a_symlink_and_says_so(run, home: Path, tmp_path: Path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("k\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    result = run("simulate", "--out", str(link))
    assert result.exit_code == 1
    assert "is a symbolic link" in result.output
    assert "no timeline.csv" not in result.output
    assert (target / "keep.txt").read_text() == "k\n"
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
