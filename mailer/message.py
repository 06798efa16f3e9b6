"""Stage 4: the MIME message for one personalised mail.

multipart/alternative (text first, HTML last, as RFC 2046 orders preference), UTF-8, with the
headers that bulk-sender rules and the Telecommunicatiewet ask for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from .errors import HeaderError
from .personalise import PersonalMail
from .settings import CampaignSettings, Sender

TEST_PREFIX = "[TEST] "
# Header lines may run to RFC 5322's hard limit of 998: with the default 78, the email package
# turns a long List-Unsubscribe URL into RFC 2047 encoded-words, which no client understands.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)
_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


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


def _address(name: str, display: str, addr: str) -> Address:
    _checked(name, display)
    _checked(name, addr)
    local, _, domain = addr.rpartition("@")
    if not local or not domain:
        raise HeaderError(f"header {name}: {addr!r} is not a mail address")
    try:
        return Address(display_name=display, username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise HeaderError(f"header {name}: {exc}") from None


def list_unsubscribe(sender: Sender, campaign: CampaignSettings, recipient: str) -> tuple[str, str | None]:
    """The List-Unsubscribe value, and List-Unsubscribe-Post when a one-click https endpoint exists."""
    subject = urllib.parse.quote(f"Afmelden: {campaign.name}", safe="")
    body = urllib.parse.quote(recipient, safe="@")
    mailto = f"<mailto:{sender.optout_address}?subject={subject}&body={body}>"
    if sender.optout_url:
        sep = "&" if "?" in sender.optout_url else "?"
        https = f"<{sender.optout_url}{sep}list={urllib.parse.quote(campaign.list_id)}&email={urllib.parse.quote(recipient, safe='')}>"
        return f"{https}, {mailto}", "List-Unsubscribe=One-Click"
    return mailto, None


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
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = _address("From", sender.name, sender.address)
    msg["To"] = _address("To", "" if to else contact.name, recipient)
    if sender.reply_to and sender.reply_to != sender.address:
        msg["Reply-To"] = _address("Reply-To", sender.name, sender.reply_to)
    msg["Subject"] = _checked("Subject", subject)
    msg["Date"] = format_datetime(now.astimezone(dt.timezone.utc))
    mid = message_id(campaign.slug + ("-test" if test else ""), personal.mail.number, contact.email, sender.domain)
    msg["Message-ID"] = mid
    unsubscribe, post = list_unsubscribe(sender, campaign, contact.email)
    msg["List-Unsubscribe"] = unsubscribe
    if post:
        msg["List-Unsubscribe-Post"] = post
    msg["List-Id"] = f"{_checked('List-Id', campaign.name)} <{campaign.list_id}>"
    msg["Content-Language"] = "nl"
    if test:
        msg["X-Campaign-Test"] = "yes"
    msg.set_content(personal.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(personal.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return Envelope(sender=sender.address, recipient=recipient, message_id=mid, data=msg.as_bytes())
