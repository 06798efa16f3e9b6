"""Stage 4: the MIME message for one personalised mail.

multipart/alternative (text first, HTML last, as RFC 2046 orders preference), UTF-8 in
quoted-printable, with the headers that bulk-sender rules and the Telecommunicatiewet ask for.

The message is written directly as bytes: the email package's header objects cost about ten
milliseconds a message, which at 50,000 contacts is most of a send. Headers are encoded per
RFC 2047/5322 here and the tests parse every message back with the email package.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from email.utils import format_datetime
from functools import lru_cache

from .errors import HeaderError
from .personalise import PersonalMail
from .settings import CampaignSettings, Sender

TEST_PREFIX = "[TEST] "
_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
# RFC 5322 atext plus space: a display name of only these needs no quoting.
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")
_WORD_BYTES = 45  # 45 bytes -> 60 base64 characters: an encoded-word stays within 75


@dataclass(frozen=True)
class Envelope:
    """What the transport needs: who from, who to, the message id and the bytes."""

    sender: str
    recipient: str
    message_id: str
    data: bytes


def message_id(campaign: str, mail: int, address: str, domain: str) -> str:
    """The same id for the same (campaign, mail, contact) every time: a resend is recognisable."""
    digest = hashlib.sha256(f"{campaign}\0{mail}\0{address.strip().casefold()}".encode()).hexdigest()[:32]
    return f"<{campaign}.{mail}.{digest}@{domain}>"


def _checked(name: str, value: str) -> str:
    if _UNSAFE_HEADER.search(value):
        raise HeaderError(f"header {name}: the value holds a line break or control character; refused")
    return value


def encode_words(text: str) -> str:
    """RFC 2047: ASCII stays as it is; anything else becomes UTF-8 base64 encoded-words, folded."""
    if text.isascii() and "=?" not in text:
        return text
    words, chunk = [], b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > _WORD_BYTES:  # never split a character across two words
            words.append(chunk)
            chunk = b""
        chunk += b
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


def format_address(name: str, display: str, addr: str) -> str:
    _checked(name, display)
    _checked(name, addr)
    local, at, domain = addr.rpartition("@")
    if not local or not at or not domain or not addr.isascii() or any(c in addr for c in " <>\"(),;:\\[]"):
        raise HeaderError(f"header {name}: {addr!r} is not a mail address this sender can use")
    if not display:
        return addr
    if not display.isascii():
        phrase = encode_words(display)
    elif _PLAIN_PHRASE.fullmatch(display):
        phrase = display
    else:
        phrase = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{phrase} <{addr}>"


@lru_cache(maxsize=8)
def _optout_subject(name: str) -> str:
    return urllib.parse.quote(f"Afmelden: {name}", safe="")


@lru_cache(maxsize=4)
def _date_header(second: int) -> str:
    return format_datetime(dt.datetime.fromtimestamp(second, dt.timezone.utc))


@lru_cache(maxsize=8)
def _fixed_headers(sender: Sender, campaign: CampaignSettings) -> tuple[str, str, str]:
    """From, Reply-To ('' when the same) and List-Id: the same for every contact of a campaign."""
    reply_to = ""
    if sender.reply_to and sender.reply_to != sender.address:
        reply_to = format_address("Reply-To", sender.name, sender.reply_to)
    return (format_address("From", sender.name, sender.address), reply_to,
            f"{encode_words(_checked('List-Id', campaign.name))} <{campaign.list_id}>")


def list_unsubscribe(sender: Sender, campaign: CampaignSettings, recipient: str) -> tuple[str, str | None]:
    """The List-Unsubscribe value, and List-Unsubscribe-Post when a one-click https endpoint exists."""
    body = urllib.parse.quote(recipient, safe="@")
    mailto = f"<mailto:{sender.optout_address}?subject={_optout_subject(campaign.name)}&body={body}>"
    if sender.optout_url:
        sep = "&" if "?" in sender.optout_url else "?"
        https = f"<{sender.optout_url}{sep}list={urllib.parse.quote(campaign.list_id)}&email={urllib.parse.quote(recipient, safe='')}>"
        return f"{https}, {mailto}", "List-Unsubscribe=One-Click"
    return mailto, None


def _qp(text: str) -> bytes:
    # binascii's C encoder; lines end in CRLF as SMTP wants, soft breaks keep lines within 76.
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), quotetabs=False, istext=True)
    lines = encoded.split(b"\n")
    if max(map(len, lines)) > 76:
        lines = [piece for line in lines for piece in _soft_break(line)]
    return b"\r\n".join(lines)


@lru_cache(maxsize=32)
def _qp_literals(document: str) -> tuple[bytes, ...]:
    from .personalise import literals

    return tuple(_qp(piece) for piece in literals(document))


def _qp_personal(personal: PersonalMail) -> bytes:
    """The HTML part's quoted-printable body, with the mail's fixed parts encoded once.

    A soft line break ('=' at the end of a line) may stand anywhere in quoted-printable, so
    each fixed part and each contact value is encoded on lines of its own and the pieces are
    joined with soft breaks: decoded, it is exactly the personalised HTML.
    """
    fixed = _qp_literals(personal.mail.html)
    if len(fixed) != len(personal.html_values) + 1:
        return _qp(personal.html)
    out = [fixed[0]]
    for value, literal in zip(personal.html_values, fixed[1:]):
        out += [b"=\r\n", _qp(value), b"=\r\n", literal]
    return b"".join(out)


def _soft_break(line: bytes) -> list[bytes]:
    """b2a_qp can leave 77 characters when a line ends in an encoded space; RFC 2045 allows 76."""
    out = []
    while len(line) > 76:
        cut = 75
        # Never split an =XX escape.
        if line[cut - 1:cut] == b"=":
            cut -= 1
        elif line[cut - 2:cut - 1] == b"=":
            cut -= 2
        out.append(line[:cut] + b"=")
        line = line[cut:]
    out.append(line)
    return out


def build_message(
    personal: PersonalMail,
    *,
    sender: Sender,
    campaign: CampaignSettings,
    now: dt.datetime,
    test: bool = False,
    to: str | None = None,
) -> Envelope:
    """The complete message for ``personal``; ``test`` marks the subject and ``to`` redirects it."""
    contact = personal.contact
    recipient = to or contact.email
    subject = (TEST_PREFIX if test else "") + personal.subject
    mid = message_id(campaign.slug + ("-test" if test else ""), personal.mail.number, contact.email, sender.domain)
    unsubscribe, post = list_unsubscribe(sender, campaign, contact.email)
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
        ("Subject", encode_words(_checked("Subject", subject))),
        ("Date", _date_header(int(now.timestamp()))),
        ("Message-ID", mid),
        ("List-Unsubscribe", _checked("List-Unsubscribe", unsubscribe)),
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
    part_head = "Content-Type: text/{}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b = f"--{boundary}\r\n".encode("ascii")
    data = b"".join((
        head, b"\r\n",
        b, part_head.format("plain").encode("ascii"), _qp(personal.text), b"\r\n",
        b, part_head.format("html").encode("ascii"), _qp_personal(personal), b"\r\n",
        f"--{boundary}--\r\n".encode("ascii"),
    ))
    return Envelope(sender=sender.address, recipient=recipient, message_id=mid, data=data)
