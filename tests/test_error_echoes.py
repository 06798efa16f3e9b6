"""What a command echoes back in an error: every address masked, every date with four digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.contacts import mask

TYPED = ["tester@example.com,piet.other@example.nl", "tester@example.com piet.other@example.nl",
         "tester@example.com;piet.other@example.nl", "tester@example.com, <piet.other@example.nl>",
         "tester@example.com,piet.other@example.nl,anne.derde@example.org"]


@pytest.mark.parametrize("typed", TYPED)
def test_mask_masks_every_address_in_what_was_typed(typed: str):
    masked = mask(typed)
    assert "ester" not in masked and "piet" not in masked and "other" not in masked and "anne" not in masked
    assert "t***@example.com" in masked and "p***@example.nl" in masked


def test_mask_of_one_address_is_as_before():
    assert mask("renee.jansen@example.nl") == "r***@example.nl"
    assert mask("r@example.nl") == "r***@example.nl"


@pytest.mark.parametrize("typed", TYPED)
@pytest.mark.parametrize("command", [["send-test", "--mail", "1", "--to"], ["contacts", "forget", "--yes"],
                                     ["contacts", "unsubscribe"], ["build", "--contact"]])
def test_commands_mask_every_address_they_refuse(run, configured_home: Path, tmp_path: Path, typed: str,
                                                 command: list[str]):
    out = ["--out", str(tmp_path / "out")] if command[0] == "build" else []
    result = run(*command, typed, *out)
    assert result.exit_code == 1, result.output
    assert "is not a usable address" in result.output
    assert "piet.other" not in result.output and "tester@" not in result.output, result.output
    assert "p***@example.nl" in result.output


@pytest.mark.parametrize("option", ["--election-date", "--start"])
@pytest.mark.parametrize("command", ["plan", "simulate"])
@pytest.mark.parametrize("typed", ["0001-01-01", "0999-12-31", "9999-12-31"])
def test_a_date_out_of_range_is_echoed_with_four_digits(run, option: str, command: str, typed: str):
    result = run(command, option, typed)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': {typed} is out of range: give a date from 2000-01-01 to 2999-12-31" \
        in result.output


@pytest.mark.parametrize("when, expected", [
    ("0001-01-01T10:00", "0001-01-01 10:00 is in the past"),
    ("0999-06-01T10:00+00:00", "0999-06-01 10:00 is in the past"),
    ("9999-12-31T10:00", "9999-12-31 is on or after election day"),
])
def test_reschedule_echoes_the_moment_with_four_digits(run, home: Path, project_ahead: Path, when: str, expected: str):
    assert run("schedule", "--yes", root=project_ahead).exit_code == 0
    result = run("reschedule", "--mail", "4", "--at", when, root=project_ahead)
    assert result.exit_code == 1, result.output
    assert expected in result.output and "Traceback" not in result.output
