"""Campaign settings (content, in ``campaigns/NAME/campaign.toml``) and deployment settings
(the organisation's, in ``$CAMPAIGN_HOME/settings.toml``), read into frozen dataclasses."""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .i18n import _
from .errors import SettingsError

DEFAULT_HOME = "var"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Addresses on these domains are placeholders (RFC 2606 and the Dutch equivalent used in
# the example contact list): a sender on them is "not configured".
EXAMPLE_DOMAIN = re.compile(r"(^|\.)(example\.(org|com|net|nl)|example|invalid|test)$", re.I)


def campaign_home(root: Path | None = None) -> Path:
    """The folder for local state: ``$CAMPAIGN_HOME``, or ``var/`` under the project root."""
    env = os.environ.get("CAMPAIGN_HOME")
    if env is not None and not env.strip():
        # An EnvironmentFile line `CAMPAIGN_HOME=` must not quietly mean a fresh state in ./var.
        raise SettingsError(_("CAMPAIGN_HOME is set but empty: unset it to use var/ in the project folder, or name a "
                               "folder"))
    if env:
        if Path(env).exists() and not Path(env).is_dir():
            raise SettingsError(_("CAMPAIGN_HOME={env} is not a folder; point it at a folder (one that does not exist "
                                  "yet is created)").format(env=env))
        return Path(env)
    return (root or Path.cwd()) / DEFAULT_HOME


@dataclass(frozen=True)
class Blackout:
    start: dt.date
    end: dt.date
    reason: str = ""

    def covers(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class SchedulePolicy:
    """When mails may go out: read by the planner."""

    timezone: str = "Europe/Amsterdam"
    cadence_days: int = 7
    weekdays: tuple[int, ...] = (1, 2, 3)  # Monday is 0
    window_start: dt.time = dt.time(9, 0)
    window_end: dt.time = dt.time(16, 0)
    public_holidays: bool = True
    min_days_before_election: int = 14
    blackouts: tuple[Blackout, ...] = ()
    rate_per_minute: int = 60


@dataclass(frozen=True)
class LinkPolicy:
    own_domains: tuple[str, ...]
    utm: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CampaignSettings:
    """What ``campaigns/NAME/campaign.toml`` says."""

    slug: str
    folder: Path
    name: str
    election_name: str
    election_day: dt.date
    organisation: str
    website: str
    links: LinkPolicy
    salutation: str
    salutation_fallback: str
    default_basis: str
    schedule: SchedulePolicy
    list_id: str
    # The article the organisation's name takes in a sentence ("het" Leger des Heils); "" for none.
    organisation_article: str = ""
    # Years the mails name as facts (a study, a law), not as the election: `check` refuses any other.
    fact_years: tuple[int, ...] = ()
    # The line that opens every mail after the first: who writes, and why they should be heard.
    follow_up_opening: str = ""

    @property
    def organisation_in_sentence(self) -> str:
        """The organisation's name as it stands inside a sentence: ``het Leger des Heils``."""
        return f"{self.organisation_article} {self.organisation}".strip()


@dataclass(frozen=True)
class Signatory:
    """Who signs the mails: a person, their role and how to reach them. Deployment data."""

    name: str
    role: str
    phone: str
    email: str


@dataclass(frozen=True)
class Sender:
    """Who the mails come from. Deployment data: never part of campaign content."""

    name: str
    address: str
    reply_to: str
    contact: str
    optout_address: str
    optout_url: str = ""
    # MAIL FROM: where bounces go; empty means the From address.
    bounce_address: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()

    @property
    def envelope_sender(self) -> str:
        """The envelope sender (MAIL FROM, Return-Path): the mailbox that ``campaign inbox`` reads."""
        return self.bounce_address or self.address


@dataclass(frozen=True)
class InboxSettings:
    """How ``campaign inbox`` leaves what it handled in an IMAP mailbox, and when soft bounces count."""

    # Empty: handled messages stay where they are, flagged with ``keyword``.
    move_to: str = ""
    keyword: str = "$CampaignHandled"
    # Soft bounces on this many mails in a row make a contact bounced.
    soft_bounce_limit: int = 3


@dataclass(frozen=True)
class DeploymentSettings:
    """What ``$CAMPAIGN_HOME/settings.toml`` says, and whether it is real yet."""

    path: Path
    exists: bool
    sender: Sender
    test_recipients: tuple[str, ...]
    rate_per_minute: int | None = None
    connections: int = 1
    problems: tuple[str, ...] = field(default=())
    signatory: Signatory = field(default_factory=lambda: EXAMPLE_SIGNATORY)
    # This many messages in a row refused with the same answer stop the worker (a relay that
    # refuses everyone must not fail or bounce the whole list).
    failure_threshold: int = 10
    # At most this many messages in any 24 hours (the mailbox's provider limit); None: no cap.
    max_per_day: int | None = None
    preset: str = ""
    oauth: Any = None  # mailer.oauth.OAuthSettings from [oauth]; None without that table
    inbox: InboxSettings = field(default_factory=InboxSettings)

    @property
    def configured(self) -> bool:
        """True when a settings file exists and no sender value is a placeholder."""
        return self.exists and not self.problems


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _get(table: dict[str, Any], key: str, kind: type, path: Path, prefix: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise SettingsError(_("{setting}: missing").format(setting=_where(path, prefix + key)))
        return default
    value = table[key]
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SettingsError(_("{setting}: expected {expected_type}, got {given}").format(
            setting=_where(path, prefix + key), expected_type=kind.__name__, given=repr(value)))
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(_("{path}: no such file").format(path=path)) from None
    except OSError as exc:
        raise SettingsError(_("{path}: cannot be read: {strerror}").format(path=path, strerror=exc.strerror)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SettingsError(_("{path}:{line}: not UTF-8 text (byte 0x{raw}); save the file as UTF-8").format(
            path=path, line=line, raw=format(raw[exc.start], "02x"))) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_("{path}: {exc}").format(path=path, exc=exc)) from None


def _parse_time(text: str, path: Path, key: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise SettingsError(_("{setting}: {text} is not a time like 09:00").format(
            setting=_where(path, key), text=repr(text))) from None


def _schedule(table: dict[str, Any], path: Path) -> SchedulePolicy:
    p = "schedule."
    tz = _get(table, "timezone", str, path, p, "Europe/Amsterdam")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception:
        raise SettingsError(_("{setting}: unknown time zone {tz}").format(
            setting=_where(path, p + 'timezone'), tz=repr(tz))) from None
    days = _get(table, "weekdays", list, path, p, ["tue", "wed", "thu"])
    weekdays = []
    for d in days:
        if not isinstance(d, str) or d.lower()[:3] not in WEEKDAYS:
            raise SettingsError(_("{setting}: {d} is not one of {items}").format(
                setting=_where(path, p + 'weekdays'), d=repr(d), items=', '.join(WEEKDAYS)))
        weekdays.append(WEEKDAYS.index(d.lower()[:3]))
    if not weekdays:
        raise SettingsError(_("{setting}: at least one weekday is needed").format(setting=_where(path, p + 'weekdays')))
    window = _get(table, "window", list, path, p, ["09:00", "16:00"])
    if len(window) != 2 or not all(isinstance(w, str) for w in window):
        raise SettingsError(_('{setting}: expected two times, like ["09:00", "16:00"]').format(setting=_where(path, p + 'window')))
    start, end = (_parse_time(w, path, p + "window") for w in window)
    if end <= start:
        raise SettingsError(_("{setting}: the window must end after it starts").format(
            setting=_where(path, p + 'window')))
    blackouts = []
    for i, b in enumerate(_get(table, "blackouts", list, path, p, [])):
        key = f"{p}blackouts[{i}]"
        if not isinstance(b, dict) or not isinstance(b.get("from"), dt.date) or not isinstance(b.get("to"), dt.date):
            raise SettingsError(_("{setting}: expected {{ from = YYYY-MM-DD, to = YYYY-MM-DD }}").format(
                setting=_where(path, key)))
        if b["to"] < b["from"]:
            raise SettingsError(_("{setting}: 'to' is before 'from'").format(setting=_where(path, key)))
        blackouts.append(Blackout(b["from"], b["to"], str(b.get("reason", ""))))
    cadence = _get(table, "cadence_days", int, path, p, 7)
    if not 1 <= cadence <= 365:
        raise SettingsError(_("{setting}: must be 1 to 365").format(setting=_where(path, p + 'cadence_days')))
    # Beyond a year the planner would count off the end of the calendar.
    if not 0 <= _get(table, "min_days_before_election", int, path, p, 14) <= 365:
        raise SettingsError(_("{setting}: must be 0 to 365").format(
            setting=_where(path, p + 'min_days_before_election')))
    rate = _get(table, "rate_per_minute", int, path, p, 60)
    if rate < 1:
        raise SettingsError(_("{setting}: must be at least 1").format(setting=_where(path, p + 'rate_per_minute')))
    return SchedulePolicy(
        timezone=tz,
        cadence_days=cadence,
        weekdays=tuple(sorted(set(weekdays))),
        window_start=start,
        window_end=end,
        public_holidays=_get(table, "public_holidays", bool, path, p, True),
        min_days_before_election=_get(table, "min_days_before_election", int, path, p, 14),
        blackouts=tuple(blackouts),
        rate_per_minute=rate,
    )


def _check_header_values(path: Path, *, name: str, list_id: str) -> None:
    """The campaign values that reach headers (List-Id, List-Unsubscribe): refused with the key."""
    import urllib.parse

    from .headers import CAMPAIGN_NAME_MAX, LINE_HARD_MAX, check_header_value, list_id_problem

    check_header_value("name", name, where=str(path), max_length=CAMPAIGN_NAME_MAX, error=SettingsError)
    # The name is URL-encoded into the List-Unsubscribe mailto:; non-ASCII triples in length there.
    encoded = len(urllib.parse.quote(name, safe=""))
    if encoded > LINE_HARD_MAX // 2:
        raise SettingsError(_("{setting}: URL-encoded for the List-Unsubscribe header it is {encoded} characters; at "
                               "most {limit} fit, so shorten the name").format(
                                   setting=_where(path, 'name'), encoded=encoded, limit=LINE_HARD_MAX // 2))
    problem = list_id_problem(list_id)
    if problem:
        raise SettingsError(_("{setting}: {problem}").format(setting=_where(path, 'list_id'), problem=problem))


def load_campaign_settings(folder: Path) -> CampaignSettings:
    """Read ``campaign.toml`` from a campaign folder."""
    path = folder / "campaign.toml"
    if not folder.is_dir():
        raise SettingsError(_("{folder}: no such campaign folder").format(folder=folder))
    data = _read_toml(path)
    election = _get(data, "election_day", dt.date, path, "")
    org = _get(data, "organisation", dict, path, "")
    links = _get(data, "links", dict, path, "", {})
    copy = _get(data, "copy", dict, path, "", {})
    contacts = _get(data, "contacts", dict, path, "", {})
    utm = _get(links, "utm", dict, path, "links.", {})
    website = _get(org, "website", str, path, "organisation.")
    name = _get(data, "name", str, path, "")
    list_id = _get(data, "list_id", str, path, "", f"{folder.name}.campaign")
    _check_header_values(path, name=name, list_id=list_id)
    if not website.startswith("https://"):
        raise SettingsError(_("{setting}: must be an https:// address").format(
            setting=_where(path, 'organisation.website')))
    return CampaignSettings(
        slug=folder.name,
        folder=folder,
        name=name,
        election_name=_get(data, "election_name", str, path, "", "gemeenteraadsverkiezingen"),
        election_day=election,
        organisation=_get(org, "name", str, path, "organisation."),
        website=website,
        links=LinkPolicy(
            own_domains=tuple(d.lower() for d in _get(links, "own_domains", list, path, "links.", [])),
            utm=tuple((str(k), str(v)) for k, v in utm.items()),
        ),
        salutation=_salutation(copy, "salutation", path, "Beste {name},"),
        salutation_fallback=_salutation(copy, "salutation_fallback", path, "Geachte heer, mevrouw,"),
        default_basis=_get(contacts, "default_basis", str, path, "contacts.", "published-address"),
        schedule=_schedule(_get(data, "schedule", dict, path, "", {}), path),
        list_id=list_id,
        organisation_article=_get(org, "article", str, path, "organisation.", "").strip(),
        fact_years=_fact_years(copy, path),
        follow_up_opening=_follow_up_opening(copy, path),
    )


# The contact fields a salutation may name: those of the templates' `contact` but the address
# (a test copy stands in the tester's address for the contact's, which a salutation would not).
SALUTATION_FIELDS = ("name", "party", "municipality", "role")


def salutation_problem(template: str) -> str | None:
    """Why ``template`` cannot be a salutation (a phrase to follow it), or None.

    It is filled in with ``str.format``, which would also follow attributes, indexes and format
    specifications (``{name:>999999999}`` takes minutes): only plain ``{field}`` is allowed."""
    import string

    allowed = ", ".join(f"{{{f}}}" for f in SALUTATION_FIELDS[:-1]) + f" and {{{SALUTATION_FIELDS[-1]}}}"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return (f"has a '{{' or '}}' without its pair (write '{{{{' or '}}}}' for a brace in the text); "
                f"only {allowed} are allowed")
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        head = re.split(r"[.\[]", field, maxsplit=1)[0]
        if head == "" or head.isdigit():
            reason = f"'{{{field}}}' is a positional field"
        elif head != field:
            reason = f"'{{{field}}}' reaches into a field (attribute or index)"
        elif conversion:
            reason = f"'{{{field}!{conversion}}}' uses a conversion"
        elif spec:
            reason = f"'{{{field}:{spec}}}' uses a format specification"
        elif field not in SALUTATION_FIELDS:
            reason = f"'{field}' is not a contact field"
        else:
            continue
        return f"{reason}; only {allowed} are allowed"
    return None


def _format_fields(template: str) -> set[str]:
    import string

    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _salutation(copy: dict[str, Any], key: str, path: Path, default: str) -> str:
    """``copy.salutation`` or ``copy.salutation_fallback``, refused at load time when it could not be filled in."""
    from .headers import value_problem

    value = _get(copy, key, str, path, "copy.", default)
    problem = value_problem(value) or salutation_problem(value)
    if problem is None and key == "salutation_fallback" and "name" in _format_fields(value):
        problem = "names {name}, but the fallback is for contacts without a name: leave {name} out"
    if problem:
        raise SettingsError(_("{setting}: {given} {problem}").format(
            setting=_where(path, 'copy.' + key), given=repr(value), problem=problem))
    return value


# '{name}' with single braces: a salutation's field, which Jinja leaves in the text as it is.
_SINGLE_BRACE_FIELD = re.compile(r"(?<!\{)\{\s*[A-Za-z_][\w.]*\s*\}(?!\})")


def _follow_up_opening(copy: dict[str, Any], path: Path) -> str:
    """``copy.follow_up_opening``: Jinja content, so a salutation-style ``{name}`` would be sent as written."""
    value = _get(copy, "follow_up_opening", str, path, "copy.", "").strip()
    m = _SINGLE_BRACE_FIELD.search(value)
    if m:
        raise SettingsError(_("{setting}: {given} would be sent as written: this line is the same for every contact "
                              "and may use {{{{ election.name }}}} and the like; contact fields belong in "
                              "copy.salutation").format(
                                   setting=_where(path, 'copy.follow_up_opening'), given=repr(m.group())))
    return value


def _fact_years(copy: dict[str, Any], path: Path) -> tuple[int, ...]:
    years = _get(copy, "fact_years", list, path, "copy.", [])
    for year in years:
        if not isinstance(year, int) or isinstance(year, bool) or not 1000 <= year <= 2999:
            raise SettingsError(_("{setting}: expected a list of years like [2000, 2022], got {year}").format(
                setting=_where(path, 'copy.fact_years'), year=repr(year)))
    return tuple(years)


SETTINGS_TEMPLATE = """\
# Deployment settings for `campaign`: the organisation's, not the campaign's.
# Written by `campaign init`. Every value below is an EXAMPLE on example.org:
# replace them before sending anything beyond the outbox folder.
# Secrets never go here: the SMTP server comes from CAMPAIGN_SMTP_URL and its
# password from CAMPAIGN_SMTP_PASSWORD.

[sender]
# Display name and mailbox in the From header.
name = "Leger des Heils"
address = "campagne@example.org"
# Where replies go.
reply_to = "campagne@example.org"
# Postal address or other contact details, shown after the organisation name in
# every footer (Telecommunicatiewet art. 11.7).
contact = "Voorbeeldstraat 1, 1234 AB Voorbeeldstad"
# The mailbox that receives opt-outs (mailto: in the footer and List-Unsubscribe).
optout_address = "afmelden@example.org"
# The envelope sender (MAIL FROM): where mail servers send bounces. Point it, like
# optout_address, at the mailbox that `campaign inbox` reads. Default: address.
# bounce_address = "bounces@example.org"
# Optional: an https endpoint that accepts a one-click POST (RFC 8058). Leave empty
# when there is none; the header then offers the mailto: opt-out only.
optout_url = ""

[signatory]
# The person who signs every mail, with their role and how to reach them
# (shown under "Met vriendelijke groet,").
name = "Voornaam Achternaam"
role = "functie"
phone = "+31 00 000 00 00"
email = "beleid@example.org"

[test]
# Who gets `campaign send-test` mails when --to is not given.
recipients = ["uzelf@example.org"]

[delivery]
# Messages per minute; overrides the campaign's schedule.rate_per_minute.
# rate_per_minute = 60
# SMTP connections used side by side (each has at most one message in flight).
# connections = 1
# This many messages in a row refused with the same answer (a relay that refuses everyone)
# stop the worker; those messages go back in the queue without using an attempt.
# failure_threshold = 10
# The provider's limits: "microsoft365" (30 a minute, 10,000 a day) or "google-workspace"
# (20 a minute, 2,000 a day). rate_per_minute and max_per_day above or below override it.
# preset = "microsoft365"
# At most this many messages in any 24 hours; the rest waits (the plan shows the extra days).
# max_per_day = 10000

# [oauth]
# For CAMPAIGN_SMTP_URL with ?auth=xoauth2 through a Microsoft 365 app registration. The client
# secret is never written here: it comes from CAMPAIGN_OAUTH_CLIENT_SECRET.
# tenant = "00000000-0000-0000-0000-000000000000"
# client_id = "00000000-0000-0000-0000-000000000000"

[inbox]
# `campaign inbox` reads CAMPAIGN_IMAP_URL (password in CAMPAIGN_IMAP_PASSWORD).
# IMAP folder to move handled bounces, opt-outs and auto-replies to; empty: leave
# them in place, marked read and flagged with the keyword. Replies stay unread.
# move_to = "Verwerkt"
# keyword = "$CampaignHandled"
# Soft bounces (mailbox full, ...) on this many mails in a row make a contact bounced.
# soft_bounce_limit = 3
"""

SETTINGS_TEMPLATE_NL = """\
# Instellingen van `campaign` voor deze organisatie (niet voor één campagne).
# Geschreven door `campaign init`. Elke waarde hieronder is een VOORBEELD op example.org:
# vervang ze voordat u iets verzendt dat verder gaat dan de map van het postvak uit.
# Geheimen horen hier nooit: de SMTP-server komt uit CAMPAIGN_SMTP_URL en het
# wachtwoord uit CAMPAIGN_SMTP_PASSWORD.

[sender]
# Weergavenaam en mailbox in de kopregel From.
name = "Leger des Heils"
address = "campagne@example.org"
# Waar antwoorden heen gaan.
reply_to = "campagne@example.org"
# Postadres of andere contactgegevens, getoond na de naam van de organisatie onder
# elke mail (Telecommunicatiewet art. 11.7).
contact = "Voorbeeldstraat 1, 1234 AB Voorbeeldstad"
# De mailbox die afmeldingen ontvangt (mailto: onder de mail en in List-Unsubscribe).
optout_address = "afmelden@example.org"
# De afzender van de envelop (MAIL FROM): hierheen sturen mailservers onbestelbare
# berichten. Laat hem, net als optout_address, wijzen naar de mailbox die
# `campaign inbox` leest. Standaard: address.
# bounce_address = "bounces@example.org"
# Niet verplicht: een https-adres dat afmelden met één klik (een POST, RFC 8058)
# aanneemt. Laat het leeg als dat er niet is; de kopregel biedt dan alleen de
# afmelding via mailto: aan.
optout_url = ""

[signatory]
# De persoon die elke mail ondertekent, met functie en hoe u die bereikt
# (getoond onder "Met vriendelijke groet,").
name = "Voornaam Achternaam"
role = "functie"
phone = "+31 00 000 00 00"
email = "beleid@example.org"

[test]
# Wie de testmails van `campaign send-test` krijgt als --to ontbreekt.
recipients = ["uzelf@example.org"]

[delivery]
# Berichten per minuut; gaat voor op schedule.rate_per_minute van de campagne.
# rate_per_minute = 60
# Zoveel SMTP-verbindingen naast elkaar (elk met hoogstens één bericht onderweg).
# connections = 1
# Weigert de server zoveel berichten achter elkaar met hetzelfde antwoord (een relay
# die iedereen weigert), dan stopt de worker; die berichten gaan terug in de
# wachtrij zonder dat het een poging kost.
# failure_threshold = 10
# De grenzen van de provider: "microsoft365" (30 per minuut, 10.000 per dag) of
# "google-workspace" (20 per minuut, 2.000 per dag). rate_per_minute en max_per_day
# hierboven of hieronder gaan daarvoor.
# preset = "microsoft365"
# Hoogstens zoveel berichten in elke 24 uur; de rest wacht (de planning toont de extra dagen).
# max_per_day = 10000

# [oauth]
# Voor CAMPAIGN_SMTP_URL met ?auth=xoauth2 via een app-registratie in Microsoft 365. Het
# clientgeheim staat hier nooit: dat komt uit CAMPAIGN_OAUTH_CLIENT_SECRET.
# tenant = "00000000-0000-0000-0000-000000000000"
# client_id = "00000000-0000-0000-0000-000000000000"

[inbox]
# `campaign inbox` leest CAMPAIGN_IMAP_URL (wachtwoord in CAMPAIGN_IMAP_PASSWORD).
# De IMAP-map waar verwerkte onbestelbare berichten, afmeldingen en automatische
# antwoorden heen gaan; leeg: ze blijven staan, gelezen en gemarkeerd met het
# trefwoord. Antwoorden blijven ongelezen.
# move_to = "Verwerkt"
# keyword = "$CampaignHandled"
# Is een contactpersoon bij zoveel mails achter elkaar tijdelijk onbestelbaar (mailbox
# vol, ...), dan wordt hij onbestelbaar.
# soft_bounce_limit = 3
"""


def settings_template(language: str) -> str:
    """The settings file ``campaign init`` writes: comments in ``language``, keys and values the same."""
    return SETTINGS_TEMPLATE_NL if language == "nl" else SETTINGS_TEMPLATE


# What each provider allows one mailbox (Exchange Online: 30 messages a minute, 10,000
# recipients a day; Google Workspace: about 2,000 a day, sent a little more slowly).
PRESETS = {"microsoft365": (30, 10_000), "google-workspace": (20, 2_000)}


def _sender_problems(sender: Sender, recipients: tuple[str, ...]) -> list[str]:
    problems = []
    for key in ("address", "reply_to", "optout_address"):
        value = getattr(sender, key)
        domain = value.rpartition("@")[2]
        if "@" not in value or EXAMPLE_DOMAIN.search(domain):
            problems.append(_("{setting} is {given}, an example value").format(setting=f"sender.{key}",
                                                                               given=repr(value)))
    if "Voorbeeld" in sender.contact or "example" in sender.contact.lower():
        problems.append(_("sender.contact still holds the example address"))
    return problems


EXAMPLE_SIGNATORY = Signatory(name="Voornaam Achternaam", role="functie", phone="+31 00 000 00 00",
                              email="beleid@example.org")


def _signatory(data: dict[str, Any], path: Path) -> Signatory:
    """The ``[signatory]`` table; without one, the example values (flagged by :func:`_signatory_problems`)."""
    from .headers import TEXT_MAX, check_header_value

    if "signatory" not in data:
        return EXAMPLE_SIGNATORY
    table = _get(data, "signatory", dict, path, "")
    p = "signatory."
    signatory = Signatory(name=_get(table, "name", str, path, p).strip(), role=_get(table, "role", str, path, p).strip(),
                          phone=_get(table, "phone", str, path, p, "").strip(),
                          email=_get(table, "email", str, path, p, "").strip())
    for key in ("name", "role", "phone", "email"):
        # One line each: a line break would break the signature in both parts of the mail.
        check_header_value(p + key, getattr(signatory, key), where=str(path), max_length=TEXT_MAX,
                           error=SettingsError)
    if not signatory.name or not signatory.role:
        raise SettingsError(_("{setting}: must not be empty").format(
            setting=_where(path, p + ('name' if not signatory.name else 'role'))))
    if signatory.email:
        from .contacts import normalise_address
        from .errors import InvalidAddress

        try:
            signatory = replace(signatory, email=normalise_address(signatory.email))
        except InvalidAddress as exc:
            reason = str(exc).partition(": ")[2] or str(exc)
            raise SettingsError(_("{setting}: {email} is not a usable mail address: {reason}").format(
                setting=_where(path, p + 'email'), email=repr(signatory.email), reason=reason)) from None
    return signatory


def _signatory_problems(signatory: Signatory) -> list[str]:
    problems = [_("{setting} is {given}, an example value").format(setting=f"signatory.{key}",
                                                                   given=repr(getattr(signatory, key)))
                for key in ("name", "role", "phone")
                if getattr(signatory, key) and getattr(signatory, key) == getattr(EXAMPLE_SIGNATORY, key)]
    if signatory.email and EXAMPLE_DOMAIN.search(signatory.email.rpartition("@")[2]):
        problems.append(_("{setting} is {given}, an example value").format(setting="signatory.email",
                                                                           given=repr(signatory.email)))
    return problems


def _checked_sender(sender: Sender, path: Path) -> Sender:
    """The sender with its addresses in their normal form; every value that reaches a header
    checked (errors name the file and the key)."""
    from .contacts import normalise_address
    from .errors import InvalidAddress
    from .headers import TEXT_MAX, check_header_value, url_problem

    check_header_value("sender.name", sender.name, where=str(path), max_length=TEXT_MAX, error=SettingsError)
    # Not a header, but in every footer: the same refusals (a bidi control would reorder the address).
    check_header_value("sender.contact", sender.contact, where=str(path), error=SettingsError)
    addresses = {}
    for key in ("address", "reply_to", "optout_address", "bounce_address"):
        value = getattr(sender, key)
        if key == "bounce_address" and not value:
            continue
        try:
            addresses[key] = normalise_address(value)
        except InvalidAddress as exc:
            # normalise_address says "<masked> is not a usable address: <reason>"; the sender's
            # own address is no personal data, so it is shown in full.
            reason = str(exc).partition(": ")[2] or str(exc)
            raise SettingsError(_("{setting}: {given} is not a usable mail address: {reason}").format(
                setting=_where(path, 'sender.' + key), given=repr(value), reason=reason)) from None
    if sender.optout_url:
        problem = url_problem(sender.optout_url)
        if problem:
            raise SettingsError(_("{setting}: {problem}").format(
                setting=_where(path, 'sender.optout_url'), problem=problem))
    return replace(sender, **addresses)


def load_deployment_settings(home: Path) -> DeploymentSettings:
    """Read ``settings.toml`` under the home folder; without one, the example values, flagged."""
    path = home / "settings.toml"
    exists = path.is_file()
    data = _read_toml(path) if exists else tomllib.loads(SETTINGS_TEMPLATE)
    s = _get(data, "sender", dict, path, "")
    p = "sender."
    sender = Sender(
        name=_get(s, "name", str, path, p),
        address=_get(s, "address", str, path, p),
        reply_to=_get(s, "reply_to", str, path, p, s.get("address", "")),
        contact=_get(s, "contact", str, path, p),
        optout_address=_get(s, "optout_address", str, path, p),
        optout_url=_get(s, "optout_url", str, path, p, ""),
        bounce_address=_get(s, "bounce_address", str, path, p, ""),
    )
    sender = _checked_sender(sender, path)
    test = _get(data, "test", dict, path, "", {})
    recipients = tuple(_get(test, "recipients", list, path, "test.", []))
    for value in recipients:
        if not isinstance(value, str):
            raise SettingsError(_("{setting}: expected a list of addresses in quotes, got {given}").format(
                setting=_where(path, 'test.recipients'), given=repr(value)))
    delivery = _get(data, "delivery", dict, path, "", {})
    rate = _get(delivery, "rate_per_minute", int, path, "delivery.", None)
    if rate is not None and rate < 1:
        raise SettingsError(_("{setting}: must be at least 1 (leave it out to use the campaign's rate)").format(
            setting=_where(path, 'delivery.rate_per_minute')))
    connections = _get(delivery, "connections", int, path, "delivery.", 1)
    if not 1 <= connections <= 20:
        raise SettingsError(_("{setting}: must be 1 to 20").format(setting=_where(path, 'delivery.connections')))
    threshold = _get(delivery, "failure_threshold", int, path, "delivery.", 10)
    if not 1 <= threshold <= 100_000:
        raise SettingsError(_("{setting}: must be a whole number from 1 to 100000 (how many messages in a row refused "
                               "with the same answer stop the worker)").format(
                                   setting=_where(path, 'delivery.failure_threshold')))
    preset = _get(delivery, "preset", str, path, "delivery.", "").strip().lower()
    if preset and preset not in PRESETS:
        raise SettingsError(_("{setting}: {preset} is not a preset; use one of {items} (or set rate_per_minute and "
                               "max_per_day yourself)").format(
                                   setting=_where(path, 'delivery.preset'), preset=repr(preset),
                                   items=', '.join(PRESETS)))
    cap = _get(delivery, "max_per_day", int, path, "delivery.", None)
    if cap is not None and not 1 <= cap <= 10_000_000:
        raise SettingsError(_("{setting}: must be a whole number from 1 to 10000000 (leave it out for no daily "
                              "cap)").format(
            setting=_where(path, 'delivery.max_per_day')))
    if preset:
        rate = rate if rate is not None else PRESETS[preset][0]
        cap = cap if cap is not None else PRESETS[preset][1]
    oauth = _oauth(data, path)
    signatory = _signatory(data, path)
    inbox = _inbox_settings(_get(data, "inbox", dict, path, "", {}), path)
    problems = _sender_problems(sender, recipients) + _signatory_problems(signatory)
    if not exists:
        problems.insert(0, _("{path} does not exist (run `campaign init`)").format(path=path))
    return DeploymentSettings(
        path=path,
        exists=exists,
        sender=sender,
        test_recipients=recipients,
        rate_per_minute=rate,
        connections=connections,
        problems=tuple(problems),
        signatory=signatory,
        failure_threshold=threshold,
        max_per_day=cap,
        preset=preset,
        oauth=oauth,
        inbox=inbox,
    )


def _oauth(data: dict[str, Any], path: Path):  # type: ignore[no-untyped-def]
    """``[oauth]``: where XOAUTH2 tokens come from. Never a secret: one here is refused."""
    if "oauth" not in data:
        return None
    from .oauth import EXCHANGE_SCOPE, OAuthSettings

    table = _get(data, "oauth", dict, path, "")
    p = "oauth."
    for key in table:
        if key not in ("tenant", "client_id", "authority", "scope"):
            hint = (" secrets never go in a file: set CAMPAIGN_OAUTH_CLIENT_SECRET in the environment instead"
                    if "secret" in key.lower() or "password" in key.lower() or "token" in key.lower()
                    else " the keys are tenant, client_id, authority and scope")
            raise SettingsError(_("{setting}: not a setting;{hint}").format(setting=_where(path, p + key), hint=hint))
    authority = _get(table, "authority", str, path, p, "").strip()
    if authority and not authority.startswith("https://"):
        raise SettingsError(_("{setting}: must be an https:// address (or left out for Microsoft's "
                               "login.microsoftonline.com)").format(setting=_where(path, p + 'authority')))
    return OAuthSettings(tenant=_get(table, "tenant", str, path, p, "").strip(),
                         client_id=_get(table, "client_id", str, path, p, "").strip(),
                         authority=authority, scope=_get(table, "scope", str, path, p, EXCHANGE_SCOPE).strip())



def _inbox_settings(table: dict[str, Any], path: Path) -> InboxSettings:
    p = "inbox."
    move_to = _get(table, "move_to", str, path, p, "")
    keyword = _get(table, "keyword", str, path, p, InboxSettings.keyword)
    # IMAP atoms (RFC 3501): no spaces, brackets, quotes or wildcards; a folder name in quotes.
    if not re.fullmatch(r"\$?[A-Za-z0-9_.-]{1,64}", keyword):
        raise SettingsError(_("{setting}: {keyword} is not an IMAP keyword (letters, digits, '_', '.', '-', optionally "
                               "starting with '$')").format(setting=_where(path, p + 'keyword'), keyword=repr(keyword)))
    if move_to and (not move_to.isascii() or any(c in move_to for c in '"\\*%\r\n') or len(move_to) > 200):
        raise SettingsError(_("{setting}: {move_to} is not a folder name this tool can use (ASCII, without quotes, "
                               "backslashes, '*' or '%')").format(
                                   setting=_where(path, p + 'move_to'), move_to=repr(move_to)))
    limit = _get(table, "soft_bounce_limit", int, path, p, InboxSettings.soft_bounce_limit)
    if not 1 <= limit <= 100:
        raise SettingsError(_("{setting}: must be 1 to 100").format(setting=_where(path, p + 'soft_bounce_limit')))
    return InboxSettings(move_to=move_to, keyword=keyword, soft_bounce_limit=limit)


def write_settings_template(home: Path, *, force: bool = False) -> tuple[Path, bool]:
    """Write the example settings file; returns (path, written). Never overwrites unless forced."""
    from . import files

    files.private_dir(home)
    path = home / "settings.toml"
    if path.exists() and not force:
        files.tighten(path, files.FILE_MODE)
        return path, False
    from .i18n import language

    files.write_private(path, settings_template(language()))
    return path, True
