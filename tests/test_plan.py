"""The plan on a fixed clock: holidays, blackouts, window, DST, and the refusals."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from mailer.errors import PlanError
from mailer.plan import estimate, make_plan, send_moments, to_ics
from mailer.settings import Blackout, SchedulePolicy

AMS = ZoneInfo("Europe/Amsterdam")
THEMES = [f"Thema {i}" for i in range(1, 10)]
POLICY = SchedulePolicy(cadence_days=7, weekdays=(1, 2, 3), window_start=dt.time(9), window_end=dt.time(16),
                        public_holidays=True, min_days_before_election=14, blackouts=(), rate_per_minute=60)
EARLY = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)


def plan(policy=POLICY, *, now=EARLY, start=None, election=dt.date(2026, 3, 18), override=None):
    return make_plan(campaign="t", themes=THEMES, policy=policy, election_day=election, now=now, start=start,
                     election_override=override)


def test_counts_back_from_election_day_inside_the_policy():
    p = plan()
    days = [s.at.date() for s in p.sends]
    assert days[-1] <= dt.date(2026, 3, 4)  # at least 14 days before 18 March
    assert days[-1] > dt.date(2026, 3, 4) - dt.timedelta(days=7)  # and not needlessly earlier
    assert all(b - a >= dt.timedelta(days=7) for a, b in zip(days, days[1:]))
    assert all(d.weekday() in (1, 2, 3) for d in days)
    assert all(s.at.timetz().replace(tzinfo=None) == dt.time(9) for s in p.sends)


def test_public_holiday_moves_the_send_to_the_next_allowed_day():
    mondays = replace(POLICY, weekdays=(0,))
    p = plan(mondays, start=dt.date(2026, 4, 20), election=dt.date(2026, 9, 1))
    assert p.sends[1].at.date() == dt.date(2026, 5, 4)  # 27 April is Koningsdag
    assert "Koningsdag" in p.sends[1].moved_because
    assert p.sends[0].moved_because == ""
    without = plan(replace(mondays, public_holidays=False), start=dt.date(2026, 4, 20), election=dt.date(2026, 9, 1))
    assert without.sends[1].at.date() == dt.date(2026, 4, 27)


def test_blackout_moves_the_send_and_the_rest_keeps_the_cadence():
    christmas = replace(POLICY, blackouts=(Blackout(dt.date(2025, 12, 19), dt.date(2026, 1, 4), "kerstvakantie"),))
    p = plan(christmas, start=dt.date(2025, 12, 9))
    days = [s.at.date() for s in p.sends]
    assert days[:3] == [dt.date(2025, 12, 9), dt.date(2025, 12, 16), dt.date(2026, 1, 6)]
    assert p.sends[2].moved_because == "kerstvakantie"
    assert days[3] == dt.date(2026, 1, 13)
    assert not any(dt.date(2025, 12, 19) <= d <= dt.date(2026, 1, 4) for d in days)


def test_window_and_daylight_saving_time():
    p = plan(start=dt.date(2026, 3, 17), election=dt.date(2026, 7, 1))
    before, after = p.sends[1], p.sends[2]  # 24 and 31 March: summer time starts on 29 March
    assert before.at.astimezone(AMS).hour == after.at.astimezone(AMS).hour == 9
    assert before.at_utc.hour == 8 and after.at_utc.hour == 7


def test_refuses_a_past_election_and_names_the_way_out():
    with pytest.raises(PlanError, match="not in the future.*`campaign new NAME --from-campaign t --election-day DATE`"):
        plan(now=dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc))


def test_an_election_date_is_no_override_of_the_campaigns_election():
    # The mails name the campaign's election: planning them for another day would send them
    # naming the wrong one (issue 14).
    with pytest.raises(PlanError, match=r"--election-date 2027-04-14 is not the election of campaign t .*"
                                        r"`campaign new NAME --from-campaign t --election-day 2027-04-14`"):
        plan(now=dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc), override=dt.date(2027, 4, 14))
    same = plan(now=dt.datetime(2025, 11, 25, tzinfo=dt.timezone.utc), override=dt.date(2026, 3, 18))
    assert same.election_day == dt.date(2026, 3, 18) and same.election_override


def test_refuses_sends_in_the_past():
    with pytest.raises(PlanError, match="mail 1 would go out .* in the past"):
        plan(now=dt.datetime(2026, 1, 20, tzinfo=dt.timezone.utc), start=dt.date(2026, 1, 6),
             election=dt.date(2026, 6, 1))


def test_refuses_sends_on_or_after_election_day_or_too_close():
    with pytest.raises(PlanError, match="on or after election day"):
        plan(start=dt.date(2026, 2, 10))
    with pytest.raises(PlanError, match="less than 14 days before election day"):
        plan(start=dt.date(2026, 1, 13))


def test_sending_that_does_not_fit_continues_in_the_next_window():
    start = dt.datetime(2026, 1, 6, 9, tzinfo=AMS)  # a Tuesday
    moments = list(send_moments(start, 500, rate_per_minute=1, policy=POLICY))
    assert moments[0] == start
    assert moments[419].date() == dt.date(2026, 1, 6) and moments[419].hour == 15
    assert moments[420] == dt.datetime(2026, 1, 7, 9, tzinfo=AMS)
    p = plan(start=dt.date(2026, 1, 6), election=dt.date(2026, 6, 1))
    [first, *_] = estimate(p, contacts=500, rate_per_minute=1, policy=POLICY)
    assert not first.fits_window
    [small, *_] = estimate(p, contacts=100, rate_per_minute=60, policy=POLICY)
    assert small.fits_window


def test_ics_has_one_event_per_mail_in_utc():
    p = plan(start=dt.date(2026, 1, 6), election=dt.date(2026, 6, 1))
    ics = to_ics(p, name="Checklist, verkiezingen")
    assert ics.count("BEGIN:VEVENT") == 9
    assert "DTSTART:20260106T080000Z" in ics
    assert "X-WR-CALNAME:Checklist\\, verkiezingen" in ics
    assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))
