"""Provider limits in the plan: the daily cap spreads a send over days ([delivery] max_per_day,
presets for Microsoft 365 and Google Workspace), and `plan` says so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mailer.errors import SettingsError
from mailer.plan import estimate, send_moments
from mailer.settings import load_deployment_settings

from .conftest import CONFIGURED_SETTINGS
from .test_plan import AMS, POLICY, plan


def test_4000_contacts_at_2000_a_day_take_two_days():
    start = dt.datetime(2026, 1, 6, 9, tzinfo=AMS)  # a Tuesday
    moments = list(send_moments(start, 4000, rate_per_minute=60, policy=POLICY, max_per_day=2000))
    assert {m.date() for m in moments[:2000]} == {dt.date(2026, 1, 6)}
    # No more than 2,000 in any 24 hours: the 2,001st waits until the first is a day old.
    assert moments[2000] == dt.datetime(2026, 1, 7, 9, tzinfo=AMS)
    assert all(later - earlier >= dt.timedelta(hours=24) for earlier, later in zip(moments, moments[2000:]))
    p = plan(start=dt.date(2026, 1, 6), election=dt.date(2026, 6, 1))
    first = estimate(p, contacts=4000, rate_per_minute=60, policy=POLICY, max_per_day=2000)[0]
    assert first.days == 2 and not first.overlaps_next and not first.after_election
    assert estimate(p, contacts=4000, rate_per_minute=60, policy=POLICY)[0].days == 1  # without the cap


def test_a_cap_that_lands_on_a_closed_day_waits_for_the_next_allowed_day():
    start = dt.datetime(2026, 1, 8, 9, tzinfo=AMS)  # a Thursday; Friday to Monday are closed
    moments = list(send_moments(start, 3, rate_per_minute=60, policy=POLICY, max_per_day=2))
    assert moments[2] == dt.datetime(2026, 1, 13, 9, tzinfo=AMS)  # the next Tuesday


def test_the_series_that_no_longer_fits_before_election_day_is_flagged():
    p = plan(election=dt.date(2026, 3, 18))
    estimates = estimate(p, contacts=30, rate_per_minute=60, policy=POLICY, max_per_day=1)
    assert estimates[0].overlaps_next
    assert estimates[-1].after_election


def with_delivery(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text(CONFIGURED_SETTINGS + "\n[delivery]\n" + text, encoding="utf-8")


@pytest.mark.parametrize("preset, rate, cap", [("microsoft365", 30, 10_000), ("google-workspace", 20, 2_000)])
def test_presets_set_the_rate_and_the_daily_cap(home, preset, rate, cap):
    with_delivery(home, f'preset = "{preset}"\n')
    settings = load_deployment_settings(home)
    assert (settings.rate_per_minute, settings.max_per_day) == (rate, cap)
    with_delivery(home, f'preset = "{preset}"\nmax_per_day = 500\n')
    assert load_deployment_settings(home).max_per_day == 500  # an explicit number wins


def test_bad_limits_and_secrets_in_the_settings_are_refused_with_the_key(home):
    with_delivery(home, 'preset = "exchange"\n')
    with pytest.raises(SettingsError, match=r"settings.toml: delivery.preset: 'exchange' is not a preset"):
        load_deployment_settings(home)
    with_delivery(home, "max_per_day = 0\n")
    with pytest.raises(SettingsError, match="delivery.max_per_day: must be a whole number"):
        load_deployment_settings(home)
    with_delivery(home, '[oauth]\ntenant = "t"\nclient_secret = "x"\n')
    with pytest.raises(SettingsError, match="oauth.client_secret: not a setting; secrets never go in a file"):
        load_deployment_settings(home)


def test_plan_says_a_mail_takes_two_days_and_warns_when_the_series_ends_after_election_day(run, home, tmp_path,
                                                                                           project_ahead):
    contacts = tmp_path / "lijst.csv"
    contacts.write_text("email,name,party,municipality\n" + "".join(
        f"p{i}@partij{i}.nl,Persoon {i},Partij,Gemeente\n" for i in range(40)), encoding="utf-8")
    with_delivery(home, "max_per_day = 20\n")
    assert run("contacts", "import", str(contacts), root=project_ahead).exit_code == 0
    result = run("plan", root=project_ahead)
    assert result.exit_code == 0, result.output
    assert "40 active contact(s) at 60/min, at most 20 a day." in result.output
    assert "Mail 1 goes out over 2 days: 40 contacts at most 20 a day" in result.output
    with_delivery(home, "max_per_day = 1\n")
    result = run("plan", root=project_ahead)
    assert "Warning: mail 9 would not reach every contact before election day" in result.output
    assert "raise [delivery] max_per_day" in result.output

