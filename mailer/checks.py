"""Pre-send checks: what would clip, break, or leave a mail without its opt-out or sender."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

from .i18n import N_, _, format_day
from .contacts import Contact
from .message import Envelope
from .personalise import PersonalMail
from .render import PLACEHOLDER, RenderedMail
from .settings import CampaignSettings

GMAIL_CLIP_BYTES = 102 * 1024
WARN_BYTES = 80 * 1024
SUBJECT_MAX = 50
PREHEADER_RANGE = (40, 100)
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|%%[cu]\.|<mj-|</mj-")
_PLACEHOLDER_LINK = re.compile(r"example\.(com|org|net)|^#|\bTODO\b|\bXXX\b|lorem|localhost|127\.0\.0\.1", re.I)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    mail: int | None
    message: str

    def as_dict(self) -> dict:
        return {"level": self.level, "mail": self.mail, "message": self.message}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.links.append(a["href"] or "")
        elif tag == "img":
            self.images.append(a)


def check_mail(mail: RenderedMail, personal: PersonalMail, envelope: Envelope, *, campaign: CampaignSettings) -> list[Finding]:
    """Every check of one mail as a contact receives it."""
    n = mail.number
    found: list[Finding] = []

    def error(msg: str) -> None:
        found.append(Finding("error", n, msg))

    def warning(msg: str) -> None:
        found.append(Finding("warning", n, msg))

    size = len(personal.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        error(_("HTML is {size} KB; Gmail clips mails over 102 KB, footer and opt-out included").format(
            size=f"{size / 1024:.0f}"))
    elif size > WARN_BYTES:
        warning(_("HTML is {size} KB, close to Gmail's 102 KB clipping limit").format(size=f"{size / 1024:.0f}"))

    parser = _Collector()
    parser.feed(personal.html)
    for img in parser.images:
        if img.get("alt") is None or not (img.get("alt") or "").strip():
            error(_("image {src} has no alt text").format(src=img.get('src') or _("(no src)")))
    optout_seen = False
    for href in parser.links:
        if href.startswith("mailto:"):
            optout_seen = optout_seen or href.lower().startswith("mailto:" + _sender_optout(envelope).lower())
            continue
        parts = urllib.parse.urlsplit(href)
        if parts.scheme != "https" or not parts.netloc:
            error(_("link {href} is not an absolute https:// address").format(href=repr(href)))
            continue
        if _PLACEHOLDER_LINK.search(href):
            error(_("link {href} points at a placeholder").format(href=repr(href)))
        host = (parts.hostname or "").lower()
        if any(host == d or host.endswith("." + d) for d in campaign.links.own_domains):
            query = dict(urllib.parse.parse_qsl(parts.query))
            missing = [k for k, v in campaign.links.utm if query.get(k) != v]
            if missing:
                error(_("link {href} to the organisation's site lacks {missing}").format(href=repr(href),
                                                                                       missing=", ".join(missing)))

    headers = envelope.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    if not optout_seen:
        error(_("no opt-out link in the HTML"))
    if _sender_optout(envelope) not in personal.text:
        error(_("no opt-out in the text part"))
    if "List-Unsubscribe:" not in headers:
        error(_("no List-Unsubscribe header"))
    if campaign.organisation not in personal.text or campaign.organisation not in personal.html:
        error(_("the sender ({organisation}) is not named in the mail").format(organisation=campaign.organisation))

    for where, body in (("HTML", mail.html), ("text part", mail.text), ("subject", mail.subject)):
        # The mail before contact values are filled in: a name like '{{ 7*7 }}' is data, sent as
        # written, and never an error here; a placeholder is no leftover, a malformed one is.
        m = _LEFTOVER.search(PLACEHOLDER.sub("", body))
        if m:
            error(_(_LEFT_IN[where]).format(syntax=repr(m.group(0))))
    if len(mail.subject) > SUBJECT_MAX:
        warning(_("subject is {length} characters; phones show about {max}").format(length=len(mail.subject),
                                                                                     max=SUBJECT_MAX))
    low, high = PREHEADER_RANGE
    if not mail.preheader.strip():
        error(_("no preheader"))
    elif not low <= len(mail.preheader) <= high:
        warning(_("preheader is {length} characters; {low} to {high} shows best in inboxes").format(
            length=len(mail.preheader), low=low, high=high))
    if re.search(r"fonts\.googleapis|@import|<link\b", personal.html, re.I):
        error(_("the HTML loads a remote stylesheet or font"))
    found += check_election(mail, campaign=campaign)
    return found


# One whole sentence per part of the mail, so that a translation can give each its own article.
_LEFT_IN = {"HTML": N_("template syntax {syntax} left in the HTML"),
            "text part": N_("template syntax {syntax} left in the text part"),
            "subject": N_("template syntax {syntax} left in the subject")}
_NAMES_DATE = {"subject": N_("the subject names the date {date} (in “{sentence}”)"),
               "preheader": N_("the preheader names the date {date} (in “{sentence}”)"),
               "text part": N_("the text part names the date {date} (in “{sentence}”)"),
               "HTML": N_("the HTML names the date {date} (in “{sentence}”)")}
_NAMES_YEAR = {"subject": N_("the subject names the year {year} (in “{sentence}”)"),
               "preheader": N_("the preheader names the year {year} (in “{sentence}”)"),
               "text part": N_("the text part names the year {year} (in “{sentence}”)"),
               "HTML": N_("the HTML names the year {year} (in “{sentence}”)")}


def check_drafts(mails: Iterable) -> list[Finding]:
    """A mail written by `campaign new` stays a draft until a person has edited it: an error, so that
    `schedule` (which refuses on check errors) refuses it."""
    return [Finding("error", m.number, _("draft: {file} still says draft = true; edit the mail, then delete that "
                                         "line from its front matter").format(file=m.path.name))
            for m in mails if getattr(m, "draft", False)]


_MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
           "november", "december")
_DATE = re.compile(r"\b(\d{1,2})\s+(" + "|".join(_MONTHS) + r")\b(?:\s+(\d{4})\b)?", re.I)
_YEAR = re.compile(r"(?<![\d.,/-])(1[89]\d\d|2[01]\d\d)(?![\d])")
# Numbers that are no year: links, addresses, postcodes, PO boxes and phone numbers.
_NOT_PROSE = re.compile(r"(?:https?://|mailto:|www\.)\S+|\S+@\S+|\b\d{4}\s?[A-Z]{2}\b|\bPostbus\s+\d+"
                        r"|\+?\d[\d\s().-]{7,}\d")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\s*\n\s*\n\s*|\s*·\s*")
_MARKUP = re.compile(r"<(style|title|head)\b.*?</\1>|<[^>]+>", re.I | re.S)


def check_election(mail: RenderedMail, *, campaign: CampaignSettings) -> list[Finding]:
    """Errors for every year or date in the mail that is not the campaign's election.

    A mail may name one election: its campaign's (``election_day`` in campaign.toml). A date
    must be election day; a year must be the election's, or, outside a sentence about the
    election, one of ``copy.fact_years`` (a study, a law). So a text copied from another
    campaign that still names its election is caught before anything is scheduled.
    """
    import html as html_module

    day = campaign.election_day
    election = _("{name} of {day}").format(name=campaign.election_name, day=format_day(day))
    visible = html_module.unescape(_MARKUP.sub(" ", mail.html))
    problems: dict[str, str] = {}
    for where, text in (("subject", mail.subject), ("preheader", mail.preheader), ("text part", mail.text),
                        ("HTML", visible)):
        for sentence in _SENTENCE_END.split(_NOT_PROSE.sub(" ", text)):
            sentence = " ".join(sentence.split())
            about_election = "verkiezing" in sentence.lower()
            taken: list[tuple[int, int]] = []
            for m in _DATE.finditer(sentence):
                taken.append(m.span())
                year = int(m.group(3)) if m.group(3) else None
                same_day = int(m.group(1)) == day.day and _MONTHS.index(m.group(2).lower()) + 1 == day.month
                if same_day and year in (None, day.year):
                    continue
                if year in campaign.fact_years and not about_election:
                    continue
                problems.setdefault(m.group(0), _(_NAMES_DATE[where]).format(date=repr(m.group(0)),
                                                                              sentence=sentence))
            for m in _YEAR.finditer(sentence):
                year = int(m.group(1))
                if year == day.year or any(a <= m.start() < b for a, b in taken):
                    continue
                if year in campaign.fact_years and not about_election:
                    continue
                problems.setdefault(m.group(1), _(_NAMES_YEAR[where]).format(year=year, sentence=sentence))
    return [Finding("error", mail.number,
                    _("{problem}, which is not this campaign's election ({election}): name the election with "
                      "{{{{ election.year }}}} or {{{{ election.day_long }}}}, make a campaign for the other election, "
                      "or, for a year that is a fact and not an election, add it to copy.fact_years in {path}").format(
                          problem=problem, election=election, path=campaign.folder / 'campaign.toml'))
            for problem in problems.values()]


def _sender_optout(envelope: Envelope) -> str:
    m = re.search(rb"List-Unsubscribe:.*?<mailto:([^?>]+)", envelope.data, re.S)
    return m.group(1).decode() if m else "\0"


CONTACTS_LISTED = 20  # more unsendable contacts than this are counted, not listed


def check_contacts(contacts: Iterable[Contact]) -> list[Finding]:
    """The contacts whose stored values could not be imported today (they came in before the
    rules did): named by masked address and reason; the worker skips them."""
    from .headers import contact_problems

    found: list[Finding] = []
    more = 0
    for contact in contacts:
        problems = contact_problems(contact)
        if not problems:
            continue
        if len(found) == CONTACTS_LISTED:
            more += 1
            continue
        found.append(Finding("error", None, _("contact {address}: {problems}; it cannot be sent: correct it and "
                                              "import the list again, or remove it").format(
                                                  address=contact.masked, problems="; ".join(problems))))
    if more:
        found.append(Finding("error", None, _("{count} more contacts cannot be sent for the same kind of reasons; "
                                              "correct the list and import it again").format(count=more)))
    return found


def check_schedule(rows: list[dict], *, policy, election_day) -> list[Finding]:
    """When scheduled: every send moment before election day and inside the policy.

    ``rows`` are the stored schedule rows (mail, due_at as aware datetime, outside_window).
    """
    from zoneinfo import ZoneInfo

    from .plan import closed_reason

    zone = ZoneInfo(policy.timezone)
    found = []
    for row in rows:
        local = row["due_at"].astimezone(zone)
        n = row["mail"]
        if local.date() >= election_day:
            found.append(Finding("error", n, _("planned for {day}, on or after election day {election}").format(
                day=format_day(local), election=format_day(election_day))))
        if row["outside_window"]:
            continue  # staff chose this moment with reschedule
        reason = closed_reason(local.date(), policy)
        if reason:
            found.append(Finding("warning", n, _("planned for {day}: {reason}").format(day=format_day(local),
                                                                                        reason=reason)))
        if not policy.window_start <= local.time() < policy.window_end:
            found.append(Finding("warning", n, _("planned at {time}, outside the send window {start}-{end}").format(
                time=f"{local:%H:%M}", start=f"{policy.window_start:%H:%M}", end=f"{policy.window_end:%H:%M}")))
    return found
