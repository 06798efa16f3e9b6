"""copy.salutation and copy.salutation_fallback name plain contact fields only.

They were passed to str.format unchecked: a width of a billion made `build` hang, an attribute
reached Python's internals, a positional field gave a clumsy message. They are now parsed when
campaign.toml is read and refused there with the file and the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailer.contacts import Contact
from mailer.errors import SettingsError
from mailer.personalise import salutation
from mailer.settings import SALUTATION_FIELDS, load_campaign_settings

ALLOWED = "only {name}, {party}, {municipality} and {role} are allowed"


def set_copy(root: Path, key: str, value: str) -> Path:
    path = root / "campaigns/gr2026/campaign.toml"
    text = path.read_text(encoding="utf-8")
    line = next(l for l in text.splitlines() if l.startswith(f"{key} = "))
    # A JSON string is a TOML basic string: control characters arrive as \uXXXX escapes.
    path.write_text(text.replace(line, f"{key} = {json.dumps(value)}"), encoding="utf-8")
    return path


BAD = [
    ("{name:>999999999}", "uses a format specification"),
    ("Beste {name:>9},", "uses a format specification"),
    ("{name:{party}}", "uses a format specification"),
    ("{name.__class__.__mro__}", "reaches into a field (attribute or index)"),
    ("{name[0]}", "reaches into a field (attribute or index)"),
    ("{name!r}", "uses a conversion"),
    ("{0}", "is a positional field"),
    ("Beste {},", "is a positional field"),
    ("{0.__class__}", "is a positional field"),
    ("Beste {naam},", "'naam' is not a contact field"),
    ("Beste {email},", "'email' is not a contact field"),
    ("Beste {name,", "has a '{' or '}' without its pair"),
    ("Beste name},", "has a '{' or '}' without its pair"),
]


@pytest.mark.parametrize("key", ["salutation", "salutation_fallback"])
@pytest.mark.parametrize("value, reason", BAD)
def test_a_salutation_beyond_plain_fields_is_refused_with_file_and_key(project_copy: Path, key: str, value: str,
                                                                       reason: str):
    path = set_copy(project_copy, key, value)
    with pytest.raises(SettingsError) as caught:
        load_campaign_settings(path.parent)
    message = str(caught.value)
    assert message.startswith(f"{path}: copy.{key}: {value!r} ")
    assert reason in message and ALLOWED in message


@pytest.mark.parametrize("value", ["{name.__class__.__mro__}", "{0}", "{name:>999999999}"])
def test_check_and_build_refuse_it_with_a_sentence(run, project_copy: Path, tmp_path: Path, value: str):
    path = set_copy(project_copy, "salutation", value)
    for args in (["check"], ["build", "--out", str(tmp_path / "out")]):
        result = run(*args, root=project_copy)
        assert result.exit_code == 1, result.output
        assert f"Error: {path}: copy.salutation: {value!r}" in result.output
        assert "Traceback" not in result.output and "<class" not in result.output
    assert not (tmp_path / "out").exists()


def test_plain_fields_and_doubled_braces_are_filled_in(project_copy: Path):
    path = set_copy(project_copy, "salutation", "Geachte {role} {name} ({party}, {municipality}) {{ja}},")
    settings = load_campaign_settings(path.parent)
    contact = Contact(email="jan@example.nl", name="Jan {party}", party="Stadspartij", municipality="Zwolle",
                      role="raadslid")
    # A contact's value is data: a '{' in it is not read as a field.
    assert salutation(contact, settings) == "Geachte raadslid Jan {party} (Stadspartij, Zwolle) {ja},"
    assert SALUTATION_FIELDS == ("name", "party", "municipality", "role")


def test_the_fallback_may_not_name_the_name_it_stands_in_for(project_copy: Path):
    path = set_copy(project_copy, "salutation_fallback", "Beste {name},")
    with pytest.raises(SettingsError, match=r"copy\.salutation_fallback: 'Beste \{name\},' names \{name\}, but the "
                                            r"fallback is for contacts without a name: leave \{name\} out"):
        load_campaign_settings(path.parent)
    path = set_copy(project_copy, "salutation_fallback", "Beste leden van {party},")
    assert load_campaign_settings(path.parent).salutation_fallback == "Beste leden van {party},"


@pytest.mark.parametrize("char", ["\u202e", "\n", "\x00", "\u200b"])
def test_a_salutation_with_a_control_character_is_refused(project_copy: Path, char: str):
    path = set_copy(project_copy, "salutation", f"Beste{char} {{name}},")
    with pytest.raises(SettingsError, match=r"copy\.salutation: "):
        load_campaign_settings(path.parent)


@pytest.mark.parametrize("value", ["Beste {name}, hallo.", "Namens ons aan { party }."])
def test_a_salutation_field_in_the_follow_up_opening_is_refused(project_copy: Path, value: str):
    # That text is Jinja, the same for every contact: '{name}' would reach every mail as written.
    path = set_copy(project_copy, "follow_up_opening", value)
    with pytest.raises(SettingsError) as caught:
        load_campaign_settings(path.parent)
    assert str(caught.value).startswith(f"{path}: copy.follow_up_opening: '{{")
    assert "would be sent as written" in str(caught.value) and "copy.salutation" in str(caught.value)


def test_the_follow_up_opening_may_name_the_election(project_copy: Path):
    path = set_copy(project_copy, "follow_up_opening", "Voor de {{ election.name }} van {{election.year}}.")
    assert "{{ election.name }}" in load_campaign_settings(path.parent).follow_up_opening
