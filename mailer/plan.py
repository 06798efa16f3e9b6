"""The election-aware plan: when each of the nine mails goes out.

Pure functions of the campaign's policy and a clock passed in: nothing here reads the time.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from .i18n import _, format_day, format_moment
from .errors import PlanError
from .settings import SchedulePolicy

WEEKDAY_NAMES_NL = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")


@dataclass(frozen=True)
class PlannedSend:
    mail: int
    theme: str
    at: dt.datetime  # aware, in the policy's time zone
    moved_because: str = ""  # why the send is later than the cadence alone would put it

    @property
    def at_utc(self) -> dt.datetime:
        return self.at.astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class SendEstimate:
    mail: int
    contacts: int
    minutes: float
    finishes: dt.datetime
    fits_window: bool
    days: int = 1  # the days (in the policy's zone) on which messages of this send go out
    overlaps_next: bool = False  # still sending when the next mail is due
    after_election: bool = False  # not finished before election day


@dataclass(frozen=True)
class Plan:
    campaign: str
    election_day: dt.date
    sends: tuple[PlannedSend, ...]
    start: dt.date | None
    election_override: bool

    def options(self) -> dict[str, str | None]:
        """What the plan was made from: stored, to recognise the same ``schedule`` call again."""
        return {
            "start": self.start.isoformat() if self.start else None,
            "election_date": self.election_day.isoformat() if self.election_override else None,
        }


@lru_cache(maxsize=8)
def _holidays(years: tuple[int, ...]):
    import holidays

    return holidays.country_holidays("NL", years=list(years), language="nl")


def closed_reason(day: dt.date, policy: SchedulePolicy) -> str:
    """Why nothing may go out on ``day`` ('' when it is an allowed day)."""
    if day.weekday() not in policy.weekdays:
        return f"geen verzenddag ({WEEKDAY_NAMES_NL[day.weekday()]})"
    for b in policy.blackouts:
        if b.covers(day):
            return b.reason or f"blackout {b.start} – {b.end}"
    if policy.public_holidays:
        name = _holidays((day.year,)).get(day)
        if name:
            return f"feestdag ({name})"
    return ""


def next_open_day(day: dt.date, policy: SchedulePolicy) -> tuple[dt.date, str]:
    """The first allowed day on or after ``day``, and why days were skipped (the first reason)."""
    first_reason = ""
    for _attempt in range(400):
        reason = closed_reason(day, policy)
        if not reason:
            return day, first_reason
        if reason and not first_reason and not reason.startswith("geen verzenddag"):
            first_reason = reason
        day += dt.timedelta(days=1)
    raise PlanError(_("no allowed send day within 400 days: check schedule.weekdays and schedule.blackouts"))


def _series(start: dt.date, count: int, policy: SchedulePolicy) -> list[tuple[dt.date, str]]:
    # Each mail follows the previous one by the cadence: a send moved by a holiday or
    # blackout moves the rest with it, so that nobody gets two mails days apart.
    days: list[tuple[dt.date, str]] = []
    nominal = start
    for _step in range(count):
        days.append(next_open_day(nominal, policy))
        nominal = days[-1][0] + dt.timedelta(days=policy.cadence_days)
    return days


def window_open(day: dt.date, policy: SchedulePolicy) -> dt.datetime:
    """The moment the send window opens on ``day``, in the policy's zone (DST-correct)."""
    return dt.datetime.combine(day, policy.window_start, tzinfo=ZoneInfo(policy.timezone))


def window_close(day: dt.date, policy: SchedulePolicy) -> dt.datetime:
    return dt.datetime.combine(day, policy.window_end, tzinfo=ZoneInfo(policy.timezone))


def make_plan(
    *,
    campaign: str,
    themes: Sequence[str],
    policy: SchedulePolicy,
    election_day: dt.date,
    now: dt.datetime,
    start: dt.date | None = None,
    election_override: dt.date | None = None,
) -> Plan:
    """Plan the series: from ``start`` at the cadence, or counted back from election day.

    Refuses a plan with any send in the past, on or after election day, or later than the
    policy's minimum number of days before it.
    """
    if election_override is not None and election_override != election_day:
        raise PlanError(election_mismatch(campaign, election_day=election_day, asked=election_override))
    election = election_day
    latest = election - dt.timedelta(days=policy.min_days_before_election)
    count = len(themes)
    if start is not None:
        days = _series(start, count, policy)
    else:
        first = latest - dt.timedelta(days=policy.cadence_days * (count - 1))
        for _attempt in range(400):
            days = _series(first, count, policy)
            if days[-1][0] <= latest:
                break
            first -= dt.timedelta(days=1)
        else:  # pragma: no cover - the policy check above makes this unreachable in practice
            raise PlanError(_("cannot fit the series before election day with this policy"))
    sends = tuple(
        PlannedSend(mail=i + 1, theme=themes[i], at=window_open(day, policy), moved_because=reason)
        for i, (day, reason) in enumerate(days)
    )
    plan = Plan(campaign=campaign, election_day=election, sends=sends, start=start,
                election_override=election_override is not None)
    check_plan(plan, policy=policy, now=now)
    return plan


def election_mismatch(campaign: str, *, election_day: dt.date, asked: dt.date) -> str:
    """Why ``--election-date`` cannot move a campaign to another election, and what to do instead."""
    return _("--election-date {asked} is not the election of campaign {campaign} ({election_day}, election_day in "
             "its campaign.toml), and its mails name that election; to mail for the election of {asked_day}, make a "
             "campaign for it with `campaign new NAME --from-campaign {campaign} --election-day {asked}` and plan "
             "that one").format(asked=asked.isoformat(), campaign=campaign, election_day=format_day(election_day),
                                asked_day=format_day(asked))


def check_plan(plan: Plan, *, policy: SchedulePolicy, now: dt.datetime) -> None:
    """Raise :class:`PlanError` when the plan breaks the calendar."""
    election = plan.election_day
    tz = policy.timezone
    if election <= now.astimezone(ZoneInfo(tz)).date():
        raise PlanError(_(
            "election day {day} is not in the future, so campaign {campaign} can no longer be planned; to mail for a "
            "later election, make a campaign for it with `campaign new NAME --from-campaign {campaign} "
            "--election-day DATE`").format(day=format_day(election), campaign=plan.campaign))
    for s in plan.sends:
        if s.at <= now:
            raise PlanError(_("mail {mail} would go out on {moment}, which is in the past; choose a later "
                              "--start").format(mail=s.mail, moment=format_moment(s.at, tz)))
        if s.at.date() >= election:
            raise PlanError(_("mail {mail} would go out on {day}, on or after election day ({election}); choose an "
                              "earlier --start").format(mail=s.mail, day=format_day(s.at),
                                                        election=format_day(election)))
    latest = election - dt.timedelta(days=policy.min_days_before_election)
    last = plan.sends[-1]
    if last.at.date() > latest:
        raise PlanError(_("mail {mail} would go out on {day}, less than {days} days before election day ({election}); "
                          "choose an earlier --start").format(mail=last.mail, day=format_day(last.at),
                                                              days=policy.min_days_before_election,
                                                              election=format_day(election)))


def send_moments(due: dt.datetime, count: int, *, rate_per_minute: int, policy: SchedulePolicy,
                 max_per_day: int | None = None) -> Iterator[dt.datetime]:
    """When each of ``count`` messages goes out from ``due`` at the rate, inside the daily window;
    what does not fit continues when the next allowed window opens. With ``max_per_day``, at most
    that many in any 24 hours (as providers count, and as the worker holds to)."""
    zone = ZoneInfo(policy.timezone)
    step = dt.timedelta(seconds=60 / rate_per_minute)
    t = due.astimezone(zone)
    close = window_close(t.date(), policy)
    recent: deque[dt.datetime] = deque()
    for _step in range(count):
        if max_per_day and len(recent) >= max_per_day:
            free = recent.popleft() + dt.timedelta(hours=24)
            if free > t:
                # The cap: the next message goes when the oldest of the last 24 hours falls out,
                # or when the first allowed window after that opens.
                t = free.astimezone(zone)
                day = t.date() + dt.timedelta(days=1 if t >= window_close(t.date(), policy) else 0)
                day, _reason = next_open_day(day, policy)
                t = max(t, window_open(day, policy))
                close = window_close(day, policy)
        if t >= close:
            day, _reason = next_open_day(t.date() + dt.timedelta(days=1), policy)
            t = window_open(day, policy)
            close = window_close(day, policy)
        if max_per_day:
            recent.append(t)
        yield t
        t += step


def estimate(plan: Plan, *, contacts: int, rate_per_minute: int, policy: SchedulePolicy,
             max_per_day: int | None = None) -> list[SendEstimate]:
    """How long each send takes at the rate (and the daily cap), whether it fits in its day's
    window, and whether it is done before the next mail and before election day."""
    out = []
    for i, s in enumerate(plan.sends):
        last, send_days, day = s.at, 0, None
        for last in send_moments(s.at, contacts, rate_per_minute=rate_per_minute, policy=policy,
                                 max_per_day=max_per_day):
            if last.date() != day:
                day, send_days = last.date(), send_days + 1
        finishes = last + dt.timedelta(seconds=60 / rate_per_minute) if contacts else s.at
        following = plan.sends[i + 1].at if i + 1 < len(plan.sends) else None
        out.append(SendEstimate(
            mail=s.mail, contacts=contacts, minutes=contacts / rate_per_minute, finishes=finishes,
            fits_window=finishes.date() == s.at.date() and finishes <= window_close(s.at.date(), policy),
            days=max(send_days, 1),
            overlaps_next=following is not None and last >= following,
            after_election=last.date() >= plan.election_day,
        ))
    return out


def to_ics(plan: Plan, *, name: str, estimates: Sequence[SendEstimate] | None = None,
           now: dt.datetime | None = None) -> str:
    """The plan as an iCalendar file that staff can add to their calendar.

    ``now`` is the moment the file is made: RFC 5545's DTSTAMP (not the event's start).
    """
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")

    def stamp(moment: dt.datetime) -> str:
        return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    made = stamp(now or dt.datetime.now(dt.timezone.utc))
    by_mail = {e.mail: e for e in estimates or ()}
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//campaign//send plan//NL", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", f"X-WR-CALNAME:{esc(name)}"]
    for s in plan.sends:
        end = by_mail[s.mail].finishes if s.mail in by_mail and by_mail[s.mail].finishes > s.at else s.at + dt.timedelta(hours=1)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{plan.campaign}-mail-{s.mail}@campaign",
            f"DTSTAMP:{made}",
            f"DTSTART:{stamp(s.at)}",
            f"DTEND:{stamp(end)}",
            "SUMMARY:" + esc(_("Mail {number} of {count}: {theme}").format(number=s.mail, count=len(plan.sends),
                                                                            theme=s.theme)),
            "DESCRIPTION:" + esc(_("{name}: mail {number} goes out.").format(name=name, number=s.mail)),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


def _fold(line: str) -> str:
    # RFC 5545: lines longer than 75 octets continue on the next line after a space.
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts, current = [], b""
    for ch in line:
        b = ch.encode("utf-8")
        if len(current) + len(b) > (75 if not parts else 74):
            parts.append(current.decode("utf-8"))
            current = b""
        current += b
    parts.append(current.decode("utf-8"))
    return "\r\n ".join(parts)
