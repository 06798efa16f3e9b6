"""Stage 4: the MIME message for one personalised mail.

multipart/alternative (text first, HTML last, as RFC 2046 orders preference), UTF-8 in
quoted-printable, with the headers that bulk-sender rules and the Telecommunicatiewet ask for.

The message is written directly as bytes: the email package's header objects cost about ten
milliseconds a message, which at 50,000 contacts is most of a send. Headers are encoded per
RFC 2047/5322 here and the tests parse every message back with the email package.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from email.utils import format_datetime
from functools import lru_cache

from .i18n import _
from . import headers as _headers
from .errors import HeaderError
from .personalise import PersonalMail, literals, text_literals
from .settings import CampaignSettings, Sender

TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class Envelope:
    """What the transport needs: who from, who to, the message id and the bytes."""

    sender: str
    recipient: str
    message_id: str
    data: bytes
    # ``data`` as SMTP's DATA carries it, when the builder made it along the way.
    stuffed: bytes | None = None

    def payload(self) -> bytes:
        """The message dot-stuffed (RFC 5321 4.5.2), ending in CRLF, without the final dot."""
        if self.stuffed is not None:
            return self.stuffed
        data = _stuff(self.data)
        return data if data.endswith(b"\r\n") else data + b"\r\n"


def _stuff(piece: bytes) -> bytes:
    # Only for bytes that start a line: a leading dot is doubled as well.
    if b"." not in piece:
        return piece
    piece = piece.replace(b"\r\n.", b"\r\n..")
    return b"." + piece if piece.startswith(b".") else piece


def message_id(campaign: str, mail: int, address: str, domain: str) -> str:
    """The same id for the same (campaign, mail, contact) every time: a resend is recognisable."""
    digest = hashlib.sha256(f"{campaign}\0{mail}\0{address.strip().casefold()}".encode()).hexdigest()[:32]
    return f"<{campaign}.{mail}.{digest}@{domain}>"


def _checked(name: str, value: str, where: str = "header") -> str:
    return _headers.check_header_value(name, value, where=where)


def format_address(name: str, display: str, addr: str) -> str:
    """``display <addr>`` for header ``name``: the display name quoted or encoded, folded."""
    where = f"header {name}"
    _checked(name, display, where)
    local, at, domain = addr.rpartition("@")
    if (not local or not at or not domain or not addr.isascii() or _headers.value_problem(addr)
            or any(c in addr for c in " <>\"(),;:\\[]")):
        shown = f"{addr[:1]}***@{domain}" if at else repr(addr)
        raise HeaderError(_("{where}: {shown} is not a mail address this sender can use").format(
            where=where, shown=shown))
    return _headers.named(name, display, addr) if display else addr


@lru_cache(maxsize=8)
def _optout_subject(name: str) -> str:
    return urllib.parse.quote(f"Afmelden: {name}", safe="")


@lru_cache(maxsize=4)
def _date_header(second: int, timezone: str = "UTC") -> str:
    """The Date header in the campaign's time zone with its offset (``+0100`` in winter, ``+0200``
    in summer), as a mail program shows it to the reader; cached per second and zone."""
    from zoneinfo import ZoneInfo

    return format_datetime(dt.datetime.fromtimestamp(second, ZoneInfo(timezone)))


@lru_cache(maxsize=8)
def _fixed_headers(sender: Sender, campaign: CampaignSettings) -> tuple[str, str, str]:
    """From, Reply-To ('' when the same) and List-Id: the same for every contact of a campaign."""
    # Settings are checked when read; this also covers values made in code (tests, tools).
    _checked("sender.name", sender.name, "settings")
    _checked("name", campaign.name, "campaign")
    problem = _headers.list_id_problem(campaign.list_id)
    if problem:
        raise HeaderError(_("campaign: list_id: {problem}").format(problem=problem))
    if sender.optout_url and (problem := _headers.url_problem(sender.optout_url)):
        raise HeaderError(_("settings: sender.optout_url: {problem}").format(problem=problem))
    reply_to = ""
    if sender.reply_to and sender.reply_to != sender.address:
        reply_to = format_address("Reply-To", sender.name, sender.reply_to)
    format_address("List-Unsubscribe", "", sender.optout_address)
    return (format_address("From", sender.name, sender.address), reply_to,
            _headers.named("List-Id", campaign.name, campaign.list_id))


def list_unsubscribe(sender: Sender, campaign: CampaignSettings, recipient: str) -> tuple[str, str | None]:
    """The List-Unsubscribe value, and List-Unsubscribe-Post when a one-click https endpoint exists."""
    body = urllib.parse.quote(recipient, safe="@")
    mailto = f"<mailto:{sender.optout_address}?subject={_optout_subject(campaign.name)}&body={body}>"
    if sender.optout_url:
        sep = "&" if "?" in sender.optout_url else "?"
        https = f"<{sender.optout_url}{sep}list={urllib.parse.quote(campaign.list_id)}&email={urllib.parse.quote(recipient, safe='')}>"
        return f"{https}, {mailto}", "List-Unsubscribe=One-Click"
    return mailto, None


def _qp(text: str, *, open_end: bool = False) -> bytes:
    """Quoted-printable with CRLF line ends and lines within 76 characters; ``open_end``: a
    soft line break will follow, so the last line leaves room for its '='."""
    # binascii's C encoder; lines end in CRLF as SMTP wants.
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), quotetabs=False, istext=True)
    lines = encoded.split(b"\n")
    if max(map(len, lines)) > 76 or (open_end and len(lines[-1]) > 75):
        last = lines.pop()
        lines = [piece for line in lines for piece in _soft_break(line, 76)]
        lines += _soft_break(last, 75 if open_end else 76)
    return b"\r\n".join(lines)


def _soft_break(line: bytes, width: int) -> list[bytes]:
    """b2a_qp can leave 77 characters when a line ends in an encoded space; RFC 2045 allows 76."""
    out = []
    while len(line) > width:
        cut = width - 1
        # Never split an =XX escape.
        if line[cut - 1:cut] == b"=":
            cut -= 1
        elif line[cut - 2:cut - 1] == b"=":
            cut -= 2
        out.append(line[:cut] + b"=")
        line = line[cut:]
    out.append(line)
    return out


_SOFT_BREAK = b"=\r\n"
# Most contact values: quoted-printable and dot-stuffing leave them as they are (printable
# ASCII without '=', not starting with a dot, not ending in a space, on one short line).
_VERBATIM = re.compile(r"[\x21-\x2d\x2f-\x3c\x3e-\x7e](?:[\x20-\x3c\x3e-\x7e]{0,73}[\x21-\x3c\x3e-\x7e])?")


@lru_cache(maxsize=64)
def _encoded_literals(literals: tuple[str, ...]) -> tuple[tuple[bytes, bytes], ...]:
    """Each fixed piece of a part encoded once per mail, as written and dot-stuffed."""
    out = []
    for k, piece in enumerate(literals):
        encoded = _qp(piece, open_end=k < len(literals) - 1)
        out.append((encoded, _stuff(encoded)))
    return tuple(out)


def _encode_part(literals: tuple[str, ...], values: tuple[str, ...], plain: list[bytes], stuffed: list[bytes]) -> None:
    """Append a part's quoted-printable body to both lists.

    A soft line break ('=' at the end of a line) may stand anywhere in quoted-printable, so
    each fixed piece and each contact value is encoded on lines of its own and the pieces are
    joined with soft breaks: decoded, it is exactly the personalised part. Every piece starts
    a line, which is what lets each be dot-stuffed on its own.
    """
    fixed = _encoded_literals(literals)
    plain.append(fixed[0][0])
    stuffed.append(fixed[0][1])
    for value, (lit_plain, lit_stuffed) in zip(values, fixed[1:], strict=True):
        if _VERBATIM.fullmatch(value):
            encoded = stuffed_value = value.encode("ascii")
        else:
            encoded = _qp(value, open_end=True)
            stuffed_value = _stuff(encoded)
        plain += (_SOFT_BREAK, encoded, _SOFT_BREAK, lit_plain)
        stuffed += (_SOFT_BREAK, stuffed_value, _SOFT_BREAK, lit_stuffed)


def build_message(
    personal: PersonalMail,
    *,
    sender: Sender,
    campaign: CampaignSettings,
    now: dt.datetime,
    test: bool = False,
    to: str | None = None,
    mid: str | None = None,
) -> Envelope:
    """The complete message for ``personal``; ``test`` marks the subject and ``to`` redirects it.
    ``mid``: the Message-ID the ledger holds for it (else computed, the same way)."""
    contact = personal.contact
    problem = _headers.contact_problem(contact)
    if problem:
        # A contact imported before the import refused such values: never sent, recorded.
        raise HeaderError(_("contact {masked}: {problem}; correct it and import the list again").format(
            masked=contact.masked, problem=problem))
    recipient = to or contact.email
    subject = (TEST_PREFIX if test else "") + personal.subject
    # A test copy's opt-out names its own recipient, never the contact it was personalised as;
    # its id differs per recipient, so that two test recipients never share one outbox file.
    optout = recipient if test else contact.email
    if mid is None or test:
        mid = message_id(campaign.slug + ("-test" if test else ""), personal.mail.number, optout, sender.domain)
    unsubscribe, post = list_unsubscribe(sender, campaign, optout)
    # The boundary cannot occur in quoted-printable text, which always writes '=' as '=3D'.
    boundary = "=_" + mid[1:-1].split("@")[0].rsplit(".", 1)[-1][:24]
    from_header, reply_to, list_id = _fixed_headers(sender, campaign)
    headers = [
        ("From", from_header),
        ("To", format_address("To", "" if to else contact.name, recipient)),
    ]
    if reply_to:
        headers.append(("Reply-To", reply_to))
    headers += [
        ("Subject", _headers.unstructured("Subject", _checked("Subject", subject))),
        ("Date", _date_header(int(now.timestamp()), campaign.schedule.timezone)),
        ("Message-ID", mid),
        ("List-Unsubscribe", _headers.fold_list("List-Unsubscribe", _checked("List-Unsubscribe", unsubscribe))),
    ]
    if post:
        headers.append(("List-Unsubscribe-Post", post))
    headers += [
        ("List-Id", list_id),
        ("Content-Language", "nl"),
    ]
    if test:
        headers.append(("X-Campaign-Test", "yes"))
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("ascii")
    if len(head) > _HEAD_CHECK and _headers.longest_line(head) > _headers.LINE_HARD_MAX:
        raise HeaderError(_("contact {masked}: a header line of the message would exceed {LINE_HARD_MAX} characters; "
                             "shorten the value that fills it").format(
                                 masked=contact.masked, LINE_HARD_MAX=_headers.LINE_HARD_MAX))
    b = f"--{boundary}\r\n".encode("ascii")
    plain = [head, b"\r\n", b, _PART_HEAD_TEXT]
    stuffed = [_stuff(head), b"\r\n", b, _PART_HEAD_TEXT]
    mail = personal.mail
    _encode_part(text_literals(mail.text), personal.text_values, plain, stuffed)
    tail = (b"\r\n", b, _PART_HEAD_HTML)
    plain += tail
    stuffed += tail
    _encode_part(literals(mail.html), personal.html_values, plain, stuffed)
    tail = (b"\r\n", f"--{boundary}--\r\n".encode("ascii"))
    plain += tail
    stuffed += tail
    return Envelope(sender=sender.envelope_sender, recipient=recipient, message_id=mid, data=b"".join(plain),
                    stuffed=b"".join(stuffed))


# Most header blocks are shorter than one line may be: only longer ones are measured.
_HEAD_CHECK = 998
_PART_HEAD = "Content-Type: text/{}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
_PART_HEAD_TEXT = _PART_HEAD.format("plain").encode("ascii")
_PART_HEAD_HTML = _PART_HEAD.format("html").encode("ascii")
