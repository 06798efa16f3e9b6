"""settings.toml values that reach every mail are refused when they could mislead or leak.

The opt-out URL goes into List-Unsubscribe: no user name or password, a real port, a host name
(no IP literal, no single-label name). sender.contact and the signatory stand in every footer:
the same validator as header values. Zero-width characters hide text in names: refused too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.contacts import import_contacts
from mailer.errors import SettingsError
from mailer.headers import url_problem, value_problem
from mailer.project import Project
from mailer.settings import load_deployment_settings

from .test_headers import settings_home


@pytest.mark.parametrize("url, expected", [
    ("https://user:pw@www.legerdesheils.nl/u", "holds a user name or password"),
    ("https://user@www.legerdesheils.nl/u", "holds a user name or password"),
    ("https://:pw@www.legerdesheils.nl/u", "holds a user name or password"),
    ("https://www.legerdesheils.nl:99999/u", "has port 99999; a port is a number from 1 to 65535"),
    ("https://www.legerdesheils.nl:0/u", "has port 0; a port is a number from 1 to 65535"),
    ("https://www.legerdesheils.nl:http/u", "has port 'http'; a port is a number from 1 to 65535"),
    ("https://127.0.0.1/u", "names the host by its IP address (127.0.0.1)"),
    ("https://10.1.2.3:8443/u", "names the host by its IP address (10.1.2.3)"),
    ("https://[::1]/u", "names the host by its IP address (::1)"),
    ("https://127.1/u", "names the host by its IP address (127.1)"),
    ("https://2130706433/u", "names the host by its IP address (2130706433)"),
    ("https://0x7f.1/u", "names the host by its IP address (0x7f.1)"),
    ("https://intranet/u", "has no full host name"),
    ("https://localhost/u", "has no full host name"),
    ("https:///u", "has no full host name"),
])
def test_an_opt_out_url_that_leaks_or_cannot_work_is_refused(tmp_path: Path, url: str, expected: str):
    assert expected in (url_problem(url) or "")
    home = settings_home(tmp_path, optout_url=f'"{url}"')
    with pytest.raises(SettingsError) as err:
        load_deployment_settings(home)
    assert str(err.value).startswith(f"{home / 'settings.toml'}: sender.optout_url: {url!r} ")
    assert expected in str(err.value)


@pytest.mark.parametrize("url", ["https://www.legerdesheils.nl/afmelden", "https://www.legerdesheils.nl:8443/u?a=1",
                                 "https://afmelden.legerdesheils.nl./u", "https://xn--bcher-kva.nl/u#x"])
def test_an_ordinary_opt_out_url_passes(url: str):
    assert url_problem(url) is None


def test_check_refuses_the_opt_out_url_with_credentials(run, project_copy: Path, tmp_path: Path, monkeypatch):
    home = settings_home(tmp_path, optout_url='"https://user:pw@www.legerdesheils.nl/u"')
    monkeypatch.setenv("CAMPAIGN_HOME", str(home))
    result = run("check", root=project_copy)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {home / 'settings.toml'}: sender.optout_url: ")
    assert "user name or password" in result.output


@pytest.mark.parametrize("key", ["contact"])
@pytest.mark.parametrize("value, expected", [
    ('"Postbus 1234\\u202E, 9999 ZZ Teststad"', "contains a bidi control character (U+202E)"),
    ('"Postbus 1234\\u2066, 9999 ZZ Teststad"', "contains a bidi control character (U+2066)"),
    ('"Postbus 1234\\r\\nBcc: x@example.nl"', "contains a line break"),
    ('"Postbus 1234\\u0007"', "contains a control character (U+0007)"),
    ('"Postbus\\u200b 1234"', "contains a zero-width character (U+200B)"),
])
def test_sender_contact_is_checked_as_a_header_value(tmp_path: Path, key: str, value: str, expected: str):
    home = settings_home(tmp_path, **{key: value})
    with pytest.raises(SettingsError) as err:
        load_deployment_settings(home)
    assert str(err.value).startswith(f"{home / 'settings.toml'}: sender.{key}: ")
    assert expected in str(err.value)


@pytest.mark.parametrize("key", ["name", "role", "phone"])
def test_signatory_fields_refuse_bidi_and_zero_width(tmp_path: Path, key: str):
    home = tmp_path / "home"
    home.mkdir()
    from .conftest import CONFIGURED_SETTINGS

    for char in ("\\u202E", "\\u2060"):
        old = next(line for line in CONFIGURED_SETTINGS.split("[signatory]")[1].splitlines()
                   if line.startswith(f"{key} = "))
        new = old[:-1] + char + '"'
        (home / "settings.toml").write_text(CONFIGURED_SETTINGS.replace(old, new), encoding="utf-8")
        with pytest.raises(SettingsError, match=rf"signatory\.{key}: contains a "):
            load_deployment_settings(home)


@pytest.mark.parametrize("char", ["\u200b", "\u2060", "\ufeff"])
def test_zero_width_characters_are_refused_with_their_code_point(char: str):
    assert value_problem(f"Jan{char}Jansen") == (
        f"contains a zero-width character (U+{ord(char):04X}), which hides text or joins words unseen")


@pytest.mark.parametrize("char", ["\u200c", "\u200d"])
def test_joiners_that_scripts_need_are_allowed(char: str):
    assert value_problem(f"\u0645\u06cc{char}\u062e\u0648\u0627\u0647\u0645") is None  # Persian uses U+200C


def test_a_contact_with_a_zero_width_space_is_not_imported(project_copy: Path, home: Path, tmp_path: Path):
    from mailer.errors import ContactsError

    path = tmp_path / "lijst.csv"
    path.write_text("email,name,party,municipality\njan@partij.example.nl,Jan\u200bJansen,Partij,Zwolle\n"
                    "piet@partij.example.nl,Piet,Partij,Zwolle\n", encoding="utf-8")
    conn = Project.at(project_copy).connect()
    try:
        with pytest.raises(ContactsError) as err:
            import_contacts(conn, path, default_basis="published-address")
        assert err.value.problems == [f"{path}:2: column 'name': contains a zero-width character (U+200B), which "
                                      "hides text or joins words unseen"]
        assert conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 0
    finally:
        conn.close()
