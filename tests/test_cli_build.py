"""``campaign init`` and ``campaign build`` as a user runs them."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from .conftest import ROOT


def test_init_writes_example_settings_once(run, home: Path):
    result = run("init")
    assert result.exit_code == 0, result.output
    settings = home / "settings.toml"
    assert "example.org" in settings.read_text(encoding="utf-8")
    settings.write_text(settings.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    again = run("init")
    assert "left as it is" in again.output
    assert "# edited" in settings.read_text(encoding="utf-8")


def test_build_writes_four_files_per_mail_and_a_table(run, tmp_path: Path):
    out = tmp_path / "out"
    result = run("build", "--out", str(out))
    assert result.exit_code == 0, result.output
    for n, slug in enumerate(sorted(p.stem for p in (ROOT / "campaigns/gr2026/mails").glob("*.md")), start=1):
        for suffix in (".mjml", ".html", ".txt", ".eml"):
            assert (out / f"{slug}{suffix}").is_file()
        assert f"\n{n}  " in result.output
    assert "Sender not configured" in result.output
    assert "HTML KB" in result.output
    msg = email.message_from_bytes((out / "01-wonen-eerst.eml").read_bytes(), policy=policy.default)
    assert msg["To"] == "Renée Jansen <renee.jansen@example.nl>"


def test_build_for_a_chosen_example_contact(run, tmp_path: Path):
    out = tmp_path / "out"
    result = run("build", "--out", str(out), "--contact", "UNAL.DEMIR@example.nl")
    assert result.exit_code == 0, result.output
    assert "Geachte Ünal Demir," in (out / "05-jeugd.txt").read_text(encoding="utf-8")
    missing = run("build", "--out", str(out), "--contact", "nobody@example.nl")
    assert missing.exit_code == 1
    assert "Error: no contact n***@example.nl" in missing.output


def test_build_error_names_file_and_line(run, project_copy: Path, tmp_path: Path):
    mail = project_copy / "campaigns/gr2026/mails/04-samen-leven.md"
    mail.write_text(mail.read_text(encoding="utf-8").replace('theme = "Samen leven doe je niet alleen"', "theme = 4"),
                    encoding="utf-8")
    result = run("build", "--out", str(tmp_path / "out"), root=project_copy)
    assert result.exit_code == 1
    assert f"Error: {mail}:3: field 'theme': expected str, got 4" in result.output


def test_help_answers_for_every_command(run):
    import cli

    def walk(group, prefix):
        for name, command in group.commands.items():
            assert command.help, f"{prefix} {name} has no help text"
            for param in command.params:
                if param.param_type_name == "option":
                    assert param.help, f"{prefix} {name} {param.opts} has no help text"
            if hasattr(command, "commands"):
                walk(command, f"{prefix} {name}")

    walk(cli.cli, "campaign")
    assert run("--help").exit_code == 0
