"""What comes back by mail: bounces, opt-outs, complaints, auto-replies and replies.

Reads the mailbox that receives bounces (the envelope sender, ``[sender] bounce_address``) and
opt-outs (``optout_address``): over IMAP from ``CAMPAIGN_IMAP_URL``, or a Maildir, an mbox file
or a folder of ``.eml`` files. Each message is classified, tied to the exact send it answers by
the Message-ID the tool put in it, and applied: a hard bounce makes the contact bounced, an
opt-out or an abuse report unsubscribes, soft bounces on several mails in a row make a contact
bounced, auto-replies change nothing, replies are listed for staff.

Reading twice changes nothing: each handled message is remembered by a salted hash of its
Message-ID. Each message is applied on its own, so a message that cannot be read is classified
``other`` and never stops the run with some applied and the rest lost.
"""

from __future__ import annotations

import datetime as dt
import email
import email.errors
import email.header
import email.message
import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .i18n import _
from . import contacts, store
from .errors import DeliveryError, InvalidAddress, MailboxError

if TYPE_CHECKING:
    from .project import Project
    from .settings import InboxSettings, Sender

KINDS = ("bounce-hard", "bounce-soft", "delay", "optout", "complaint", "autoreply", "reply", "other")
OPTOUT_REASON = "per mail"
RECORD_BATCH = 200  # handled messages recorded per transaction (after their changes were committed)

# Subjects (after Re:/Fwd: prefixes) that ask to be taken off the list.
_OPTOUT_SUBJECT = re.compile(r"\b(afmelden|afmelding|uitschrijven|uitschrijving|unsubscribe|opt[- ]?out)\b", re.I)
# Out-of-office subjects, Dutch and English (and the German that Dutch border towns receive).
_OOF_SUBJECT = re.compile(
    r"^\s*(automatisch antwoord|automatisch bericht|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"out of (the )?office|afwezig|niet aanwezig|afwezigheidsbericht|afwezigheidsmelding|buiten kantoor|"
    r"abwesenheit(snotiz)?|automatische antwort|away from (the )?office|on vacation|vakantie\b)", re.I)
_REPLY_PREFIX = re.compile(r"^\s*((re|antw|aw|sv|vs|reactie|fw|fwd|doorst|wg|tr)\s*(\[\d+\])?\s*:\s*)+", re.I)
_IS_REPLY = re.compile(r"^\s*(re|antw|aw|sv|reactie)\s*(\[\d+\])?\s*:", re.I)
# Mail-system senders: a message from them that is no recognisable bounce is 'other', never a reply.
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon|bounces?|noreply|no-reply|do-not-reply)"
                     r"([+@.-]|$)", re.I)
_ADDRESS_IN_TEXT = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                              r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_MESSAGE_ID_LINE = re.compile(r"^(?:message-id|in-reply-to|references)[ \t]*:[ \t]*((?:<[^<>\s]+>[ \t]*)+)",
                              re.I | re.M)
_ANGLE = re.compile(r"<([^<>\s]+)>")
# DSN status codes (RFC 3463) that mean "try later, or mailbox full": soft, not hard.
_SOFT_STATUS = re.compile(r"^(4\.\d{1,3}\.\d{1,3}|5\.2\.2)$")
_QUOTA_TEXT = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (system )?storage|"
                         r"mailbox vol|postvak vol|\b[45]\.2\.2\b", re.I)


@dataclass(frozen=True)
class Incoming:
    """One message as read from a mailbox: where it is (for the table) and its bytes."""

    ref: str
    data: bytes
    uid: str = ""  # IMAP UID, to flag or move it once handled
    problem: str = ""  # why it could not be read


@dataclass(frozen=True)
class Classified:
    """What a message is, without looking at the database."""

    kind: str
    addresses: tuple[str, ...] = ()  # normalised addresses it concerns, most likely first
    message_ids: tuple[str, ...] = ()  # Message-IDs it quotes (of our sends, if any)
    status: str = ""  # DSN status code
    subject: str = ""
    sender: str = ""  # the From address, normalised ('' when none or unusable)
    date: dt.datetime | None = None
    fingerprint: str = ""  # the Message-ID, or a digest of the bytes
    note: str = ""  # why a message is 'other' when it could not be read


@dataclass(frozen=True)
class Outcome:
    """What one message was and what it changed (or, in a dry run, would change)."""

    ref: str
    kind: str
    contact: str | None
    party: str = ""
    municipality: str = ""
    campaign: str | None = None
    mail: int | None = None
    action: str = "none"
    status: str = ""
    subject: str = ""  # replies only
    received_at: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return {"source": self.ref, "kind": self.kind, "contact": self.contact, "party": self.party or None,
                "municipality": self.municipality or None, "campaign": self.campaign, "mail": self.mail,
                "action": self.action, "status": self.status or None, "subject": self.subject or None,
                "received_at": self.received_at or None, "note": self.note or None}


@dataclass(frozen=True)
class InboxReport:
    """Every message read, in order, and where they came from."""

    source: str
    dry_run: bool
    outcomes: tuple[Outcome, ...]
    marked: int = 0  # IMAP messages flagged or moved
    mark_error: str = ""

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(KINDS, 0)
        for o in self.outcomes:
            found[o.kind] += 1
        return found


@dataclass(frozen=True)
class OwnAddresses:
    """The organisation's own addresses: never a contact; mail to the opt-out address is an opt-out
    when replies and bounces go elsewhere."""

    optout: str
    replies: frozenset[str]  # From, Reply-To and the bounce address

    @classmethod
    def of(cls, sender: "Sender") -> "OwnAddresses":
        replies = {contacts.email_key(a) for a in (sender.address, sender.reply_to, sender.bounce_address) if a}
        return cls(optout=contacts.email_key(sender.optout_address), replies=frozenset(replies))

    def __contains__(self, key: str) -> bool:
        return key == self.optout or key in self.replies

    @property
    def optout_is_distinct(self) -> bool:
        """Whether mail to the opt-out address can only be an opt-out (no replies or bounces go there)."""
        return self.optout not in self.replies


# --- classifying ------------------------------------------------------------------------------------

_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _norm(address: str) -> str:
    """The comparison key of an address found in a message, or '' when it is not usable.

    A plain ASCII address is already in the normal form that import stores (only its case
    differs); anything else goes through ``normalise_address`` (IDNA), which costs far more.
    """
    address = address.strip().strip("<>").strip()
    if address.lower().startswith("mailto:"):
        address = address[7:].split("?", 1)[0]
    if not address or "@" not in address:
        return ""
    if _PLAIN_ADDRESS.fullmatch(address) and ".." not in address and not address.startswith("."):
        return contacts.email_key(address)
    try:
        return contacts.email_key(contacts.normalise_address(address))
    except InvalidAddress:
        return ""


def _header(msg: email.message.Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value)))).strip()
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return str(value).strip()


def _text(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: the part is unreadable, not the run
        return ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _body_text(msg: email.message.Message, *, limit: int = 20_000) -> str:
    """The first text/plain part (or the text of the first text/html one), cut to ``limit``."""
    html = None
    for part in msg.walk():
        if part.get_content_maintype() == "multipart" or part.get_filename():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            return _text(part)[:limit]
        if ctype == "text/html" and html is None:
            html = part
    if html is not None:
        return re.sub(r"<[^>]*>", " ", _text(html))[:limit]
    return ""


def _original_headers(msg: email.message.Message) -> list[email.message.Message]:
    """The original message's headers returned in a report (message/rfc822 or text/rfc822-headers)."""
    found = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, email.message.Message):
                found.append(inner)
        elif ctype in ("text/rfc822-headers", "text/global-headers"):
            found.append(email.message_from_string(_text(part)))
    return found


def _quoted_ids(msg: email.message.Message, raw: bytes) -> tuple[str, ...]:
    """Message-IDs the message quotes: of the returned original, else any Message-ID line in it
    (non-DSN bounces paste the original headers into their text)."""
    ids: list[str] = []
    for head in _original_headers(msg):
        ids += _ANGLE.findall(str(head.get("Message-ID", "")))
    if not ids:
        own = str(msg.get("Message-ID", "")).strip()
        for match in _MESSAGE_ID_LINE.finditer(raw.decode("utf-8", "replace")):
            ids += [i for i in _ANGLE.findall(match.group(1)) if f"<{i}>" != own]
    return tuple(dict.fromkeys(f"<{i}>" for i in ids))


def _delivery_status(msg: email.message.Message) -> list[tuple[str, str, str]]:
    """(action, status, recipient) for each per-recipient block of an RFC 3464 report."""
    blocks = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, str):
            # Some senders encode the part: the email package leaves it as text.
            text = _text(part) if part.get("Content-Transfer-Encoding") else payload
            payload = [email.message_from_string(b) for b in re.split(r"\r?\n[ \t]*\r?\n", text) if b.strip()]
        for block in payload:
            recipient = ""
            for name in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
                value = str(block.get(name, ""))
                if value:
                    recipient = _norm(value.split(";", 1)[-1])
                    if recipient:
                        break
            if not recipient and not block.get("Action"):
                continue  # the per-message block
            action = str(block.get("Action", "")).strip().lower().split()[0:1]
            status = re.findall(r"\d\.\d{1,3}\.\d{1,3}", str(block.get("Status", "")))
            blocks.append((action[0] if action else "", status[0] if status else "", recipient))
    return blocks


def _is_auto_submitted(msg: email.message.Message) -> tuple[bool, bool]:
    """(strong, weak) signs of an automatic message: RFC 3834 and its common predecessors."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    strong = ((bool(auto) and not auto.startswith("no")) or precedence.startswith("auto_reply")
              or any(msg.get(h) is not None for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder",
                                                      "X-Auto-Reply")))
    weak = msg.get("X-Auto-Response-Suppress") is not None
    return strong, weak


def fingerprint_of(msg: email.message.Message, raw: bytes) -> str:
    """What recognises a message read again: its Message-ID, or a digest of its bytes without one."""
    mid = _ANGLE.findall(str(msg.get("Message-ID", "")))
    if mid:
        return "mid:" + mid[0]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def classify(raw: bytes, *, own: OwnAddresses) -> Classified:
    """What a message is, from its bytes alone (no database): see the module docstring."""
    try:
        msg = email.message_from_bytes(raw)
        return _classify(msg, raw, own)
    except Exception as exc:  # the email package and the detectors raise many kinds on broken input
        return Classified(kind="other", fingerprint="sha256:" + hashlib.sha256(raw).hexdigest(),
                          note=f"the message could not be read ({type(exc).__name__}); left for staff")


def _classify(msg: email.message.Message, raw: bytes, own: OwnAddresses) -> Classified:
    subject = _header(msg, "Subject")
    sender = _from_address(str(msg.get("From", "")))
    date = None
    try:
        date = parsedate_to_datetime(str(msg.get("Date", "")))
        if date is not None and date.tzinfo is None:
            date = date.replace(tzinfo=dt.timezone.utc)
    except (TypeError, ValueError, IndexError):
        date = None
    base = dict(subject=subject, sender=sender, date=date, fingerprint=fingerprint_of(msg, raw))
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower()

    if ctype == "multipart/report" and report_type == "feedback-report":
        return _complaint(msg, raw, base)

    blocks = _delivery_status(msg)
    if blocks:
        return _from_dsn(msg, raw, blocks, base)
    found = _detected_failures(msg)
    if found is not None:
        temporary, permanent = found
        ids = _quoted_ids(msg, raw)
        if permanent:
            text = _body_text(msg)
            kind = "bounce-soft" if _QUOTA_TEXT.search(text) else "bounce-hard"
            return Classified(kind=kind, addresses=permanent, message_ids=ids, **base)
        return Classified(kind="delay", addresses=temporary, message_ids=ids, **base)

    strong, weak = _is_auto_submitted(msg)
    bare = _REPLY_PREFIX.sub("", subject)
    optout_subject = bool(_OPTOUT_SUBJECT.search(bare))
    if strong or _OOF_SUBJECT.search(bare) or _OOF_SUBJECT.search(subject) or (weak and not optout_subject):
        return Classified(kind="autoreply", addresses=(sender,) if sender else (), **base)
    if str(msg.get("Precedence", "")).strip().lower() in ("bulk", "junk", "list"):
        return Classified(kind="other", note="a mailing (Precedence: bulk), not a person", **base)
    if sender and sender in own:
        return Classified(kind="other", note="sent from the organisation's own address", **base)
    local = sender.partition("@")[0]
    if _DAEMON.match(local) or not sender:
        return Classified(kind="other", note="from a mail system, and no bounce could be read from it", **base)

    to_optout = own.optout_is_distinct and _addressed_to(msg, own.optout)
    if optout_subject or to_optout:
        return Classified(kind="optout", addresses=_optout_addresses(msg, sender, own),
                          message_ids=_reply_ids(msg), **base)
    ids = _reply_ids(msg)
    if ids or _IS_REPLY.match(subject):
        return Classified(kind="reply", addresses=(sender,), message_ids=ids, **base)
    # A person writing without replying: a reply if they are a contact (decided with the database).
    return Classified(kind="other", addresses=(sender,), **base)


def _addressed_to(msg: email.message.Message, key: str) -> bool:
    """Whether ``key`` is among the message's recipients (To, Cc and what the server added)."""
    values = []
    for name in ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"):
        values += [str(v) for v in msg.get_all(name, [])]
    # Parsing address lists is slow; most messages do not name the address at all.
    if key not in " ".join(values).casefold():
        return False
    return any(_norm(addr) == key for _, addr in getaddresses(values))


_SIMPLE_FROM = re.compile(r'(?:[^<>",;@]*|"[^"\\]*")\s*<([^<>\s]+)>\s*|\s*([^<>\s",;]+@[^<>\s",;]+)\s*')


def _from_address(value: str) -> str:
    """The address of a From header: the usual forms by a pattern, the rest by the email package."""
    match = _SIMPLE_FROM.fullmatch(value) if "=?" not in value and "(" not in value else None
    return _norm(match[1] or match[2]) if match else _norm(parseaddr(value)[1])


def _reply_ids(msg: email.message.Message) -> tuple[str, ...]:
    ids = _ANGLE.findall(str(msg.get("In-Reply-To", "")) + " " + str(msg.get("References", "")))
    return tuple(dict.fromkeys(f"<{i}>" for i in ids))


def _optout_addresses(msg: email.message.Message, sender: str, own: OwnAddresses) -> tuple[str, ...]:
    """Who asks to be taken off: the sender, and any address the body names (the mailto: link puts
    the recipient's address in the body; a forwarded mail names the address it was sent to)."""
    body = _body_text(msg)
    named = []
    for found in _ADDRESS_IN_TEXT.findall(body):
        key = _norm(found.strip("."))
        if key and key not in own and key not in named:
            named.append(key)
    # A body that is just an address is the mailto: link's: that address asks. Otherwise the
    # sender asks, and an address the text names counts when it is a contact (a forwarded mail).
    first = next((line.strip() for line in body.splitlines() if line.strip()), "")
    if named and _norm(first.strip(".")) == named[0] and len(first.split()) == 1:
        ordered = named + [sender]
    else:
        ordered = [sender] + named
    return tuple(dict.fromkeys(a for a in ordered if a))


def _detected_failures(msg: email.message.Message) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """flufl.bounce's (temporary, permanent) addresses for a bounce in a non-DSN format; None if none."""
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)
    if not temporary and not permanent:
        return None
    norm = lambda found: tuple(a for a in dict.fromkeys(_norm(b.decode("ascii", "replace")) for b in found) if a)
    return norm(temporary), norm(permanent)


def _from_dsn(msg: email.message.Message, raw: bytes, blocks: list[tuple[str, str, str]], base: dict) -> Classified:
    hard, soft, delayed = [], [], []
    status = ""
    for action, code, recipient in blocks:
        if action.startswith(("fail", "error")):
            if code and not _SOFT_STATUS.match(code):
                hard.append(recipient)
                status = status or code
            elif code:
                soft.append(recipient)
            else:
                # No status: fall back on what the text says.
                (soft if _QUOTA_TEXT.search(_body_text(msg)) else hard).append(recipient)
        elif action.startswith("delayed"):
            delayed.append(recipient)
    ids = _quoted_ids(msg, raw)
    pick = lambda found: tuple(a for a in dict.fromkeys(found) if a)
    if hard:
        return Classified(kind="bounce-hard", addresses=pick(hard), message_ids=ids, status=status, **base)
    codes = [c for a, c, _ in blocks if a.startswith(("fail", "error")) and c]
    if soft:
        return Classified(kind="bounce-soft", addresses=pick(soft), message_ids=ids, status=codes[0] if codes else "",
                          **base)
    if delayed:
        codes = [c for a, c, _ in blocks if a.startswith("delayed") and c]
        return Classified(kind="delay", addresses=pick(delayed), message_ids=ids, status=codes[0] if codes else "",
                          **base)
    # Delivered, relayed or expanded: a success notice changes nothing.
    return Classified(kind="other", addresses=pick(r for _, _, r in blocks), message_ids=ids,
                      note="a delivery report that is no failure", **base)


def _complaint(msg: email.message.Message, raw: bytes, base: dict) -> Classified:
    """An ARF report (RFC 5965): who complained, from its fields or the returned original."""
    addresses = []
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = part.get_payload(0) if part.is_multipart() else email.message_from_string(_text(part))
        for name in ("Original-Rcpt-To", "Removal-Recipient"):
            addresses += [_norm(v) for v in fields.get_all(name, [])]
    for head in _original_headers(msg):
        addresses += [_norm(a) for _, a in getaddresses([str(v) for v in head.get_all("To", [])])]
    return Classified(kind="complaint", addresses=tuple(a for a in dict.fromkeys(addresses) if a),
                      message_ids=_quoted_ids(msg, raw), **base)


# --- reading mailboxes --------------------------------------------------------------------------------

def local_messages(path: Path) -> tuple[str, Iterator[Incoming]]:
    """A description and the messages of a Maildir, an mbox file, a folder of .eml files or one .eml.

    Raises :class:`MailboxError` when the path is none of these; a file that cannot be read later
    becomes an ``other`` message named by its path, never a stopped run.
    """
    import mailbox

    if path.is_dir():
        if all((path / sub).is_dir() for sub in ("cur", "new")):
            try:
                box = mailbox.Maildir(path, factory=None, create=False)
                keys = sorted(box.iterkeys())
            except OSError as exc:
                raise MailboxError(_("{path}: the Maildir cannot be read: {strerror}").format(
                    path=path, strerror=exc.strerror)) from None
            return _("Maildir {path}").format(path=path), _maildir(box, keys, path)
        try:
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".eml" and p.is_file())
        except OSError as exc:
            raise MailboxError(_("{path}: the folder cannot be read: {strerror}").format(
                path=path, strerror=exc.strerror)) from None
        if not found:
            raise MailboxError(_("{path} is no Maildir (no cur/ and new/ folders) and holds no .eml files; export the "
                                  "messages as .eml files or as an mbox file and give that").format(path=path))
        return _("{count} .eml file(s) in {path}").format(count=len(found), path=path), _eml_files(found)
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise MailboxError(_("{path}: cannot be read: {strerror}").format(path=path, strerror=exc.strerror)) from None
    if head.startswith(b"From "):
        return _("mbox file {path}").format(path=path), _mbox(path)
    if re.match(rb"(?:[!-9;-~]+:[^\n]*\r?\n(?:[ \t][^\n]*\r?\n)*)+", head):
        return _("message file {path}").format(path=path), _eml_files([path])
    raise MailboxError(_("{path} is no mbox file (which starts with a 'From ' line), no Maildir and no .eml "
                          "message; give a Maildir folder, an mbox file or a folder of .eml files").format(path=path))


def _maildir(box, keys: list[str], path: Path) -> Iterator[Incoming]:
    for key in keys:
        try:
            yield Incoming(ref=f"{path.name}/{key}", data=box.get_bytes(key))
        except (OSError, KeyError) as exc:
            yield Incoming(ref=f"{path.name}/{key}", data=b"", problem=str(exc))


def _eml_files(found: list[Path]) -> Iterator[Incoming]:
    for p in found:
        try:
            yield Incoming(ref=str(p), data=p.read_bytes())
        except OSError as exc:
            yield Incoming(ref=str(p), data=b"", problem=str(exc.strerror))


def _mbox(path: Path) -> Iterator[Incoming]:
    import mailbox

    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for n, key in enumerate(box.iterkeys(), start=1):
            yield Incoming(ref=f"{path.name}#{n}", data=box.get_bytes(key))
    finally:
        box.close()


# --- IMAP -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImapConfig:
    """Where ``CAMPAIGN_IMAP_URL`` points; the password is read when connecting."""

    tls: str  # 'imaps' (TLS from the start) or 'starttls'
    host: str
    port: int
    user: str
    folder: str
    auth: str = "password"  # or "xoauth2" (Exchange Online allows nothing else)

    @property
    def label(self) -> str:
        return f"{'imaps' if self.tls == 'imaps' else 'imap'}://{self.host}:{self.port}/{self.folder}"


def imap_config(env: Mapping[str, str]) -> ImapConfig | None:
    """Read ``CAMPAIGN_IMAP_URL`` (``imaps://user@host[:port]/FOLDER``); None when it is not set."""
    import urllib.parse

    url = env.get("CAMPAIGN_IMAP_URL", "").strip()
    if not url:
        return None
    expected = "expected imaps://user@host[:port]/FOLDER (or imap://... for STARTTLS)"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise MailboxError(_("CAMPAIGN_IMAP_URL is not a valid URL ({exc}); {expected}").format(
            exc=exc, expected=expected)) from None
    if parts.scheme not in ("imap", "imaps"):
        raise MailboxError(_("CAMPAIGN_IMAP_URL: {expected}, got scheme {scheme}").format(
            expected=expected, scheme=repr(parts.scheme)))
    if not parts.hostname:
        raise MailboxError(_("CAMPAIGN_IMAP_URL names no host; {expected}").format(expected=expected))
    if parts.password is not None:
        raise MailboxError(_("CAMPAIGN_IMAP_URL holds a password; put it in CAMPAIGN_IMAP_PASSWORD instead"))
    if not parts.username:
        raise MailboxError(_("CAMPAIGN_IMAP_URL names no user; {expected}").format(expected=expected))
    username, _sep, mechanism = parts.username.partition(";")  # RFC 5092: imap://user;AUTH=XOAUTH2@host/
    asked = ""
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() != "auth":
            raise MailboxError(_("CAMPAIGN_IMAP_URL: unknown option {key}; the only option is ?auth=xoauth2 (or "
                                  "?auth=password)").format(key=repr(key)))
        asked = value
    if mechanism.lower().startswith("auth="):
        asked = asked or mechanism[5:]
    auth = (asked or env.get("CAMPAIGN_IMAP_AUTH", "") or "password").strip().lower()
    if auth not in ("password", "xoauth2"):
        raise MailboxError(_("the IMAP login {auth} (CAMPAIGN_IMAP_URL ?auth= or CAMPAIGN_IMAP_AUTH) is not known; "
                              "use password or xoauth2").format(auth=repr(auth)))
    folder = urllib.parse.unquote(parts.path.lstrip("/")) or "INBOX"
    if not folder.isascii() or any(c in folder for c in '"\\\r\n*%'):
        raise MailboxError(_("CAMPAIGN_IMAP_URL: the folder must be an ASCII name without quotes, backslashes, '*' or "
                              "'%'"))
    return ImapConfig(tls="imaps" if parts.scheme == "imaps" else "starttls", host=parts.hostname,
                      port=port or (993 if parts.scheme == "imaps" else 143),
                      user=urllib.parse.unquote(username), folder=folder, auth=auth)


def _imap_ssl_context(env: Mapping[str, str]):
    import ssl

    ctx = ssl.create_default_context()
    ca = env.get("CAMPAIGN_IMAP_CA_FILE")
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except ssl.SSLError:
            raise MailboxError(_("CAMPAIGN_IMAP_CA_FILE={ca}: no certificate could be read from it; point it at a PEM "
                                  "file of the CA that signed the IMAP server's certificate").format(ca=ca)) from None
        except OSError as exc:
            raise MailboxError(_("CAMPAIGN_IMAP_CA_FILE={ca}: {strerror}; point it at a PEM file of the CA that signed "
                                  "the IMAP server's certificate").format(ca=ca, strerror=exc.strerror)) from None
    return ctx


class ImapMailbox:
    """One IMAP folder: the messages not yet handled, read without marking them read, and marked once handled."""

    def __init__(self, config: ImapConfig, env: Mapping[str, str], settings: "InboxSettings", *,
                 tokens=None) -> None:  # type: ignore[no-untyped-def]
        """``tokens``: the mailer.oauth.TokenProvider for XOAUTH2 (kept by a long-running caller,
        so that its tokens are reused until they are due for renewal)."""
        self.config = config
        self.env = env
        self.settings = settings
        self.tokens = tokens
        self.conn = None
        self.can_move = False

    def _check(self, what: str, answer: tuple) -> list:
        typ, data = answer
        if typ != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise MailboxError(_("{label}: {what} failed: {detail}").format(
                label=self.config.label, what=what, detail=detail or typ))
        return data

    def open(self) -> None:
        import imaplib
        import socket
        import ssl

        c = self.config
        password = self.env.get("CAMPAIGN_IMAP_PASSWORD", "")
        if c.auth == "xoauth2":
            if self.tokens is None:
                from .oauth import token_provider

                self.tokens = token_provider(self.env)
        elif not password:
            raise MailboxError(_("{label} needs a password: set CAMPAIGN_IMAP_PASSWORD (or log in with OAuth2: add "
                                  "?auth=xoauth2 to CAMPAIGN_IMAP_URL, see the README)").format(label=c.label))
        ctx = _imap_ssl_context(self.env)
        try:
            if c.tls == "imaps":
                self.conn = imaplib.IMAP4_SSL(c.host, c.port, ssl_context=ctx, timeout=60)
            else:
                self.conn = imaplib.IMAP4(c.host, c.port, timeout=60)
                if "STARTTLS" not in self.conn.capabilities:
                    raise MailboxError(_("{label} offers no STARTTLS, and the password is never sent unencrypted; use "
                                         "imaps:// or a server that offers STARTTLS").format(label=c.label))
                self.conn.starttls(ssl_context=ctx)
            if c.auth == "xoauth2":
                from .oauth import imap_authenticate

                imap_authenticate(self.conn, c.user, self.tokens)
            else:
                self.conn.login(c.user, password)
            # What a server offers after login (MOVE among it) is more than it said before.
            typ, data = self.conn.capability()
            self.can_move = typ == "OK" and b"MOVE" in b" ".join(d for d in data if isinstance(d, bytes)).upper().split()
            self._check(f"opening the folder {c.folder!r}", self.conn.select(f'"{c.folder}"'))
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise MailboxError(_("{label}: the server's certificate cannot be verified ({verify_message}); nothing was "
                                  "read. Use the server's real name, or point CAMPAIGN_IMAP_CA_FILE at its CA").format(
                                      label=c.label, verify_message=exc.verify_message)) from None
        except (MailboxError, DeliveryError):  # DeliveryError: the OAuth2 token or login (mailer.oauth)
            self.close()
            raise
        except imaplib.IMAP4.error as exc:
            self.close()
            detail = exc.args[0] if exc.args else exc
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise MailboxError(_("{label}: the server refused: {detail}; nothing was read").format(
                label=c.label, detail=detail)) from None
        except (OSError, socket.timeout) as exc:
            self.close()
            raise MailboxError(_("{label} cannot be reached: {exc}; nothing was read").format(
                label=c.label, exc=exc)) from None

    def messages(self) -> Iterator[Incoming]:
        import imaplib

        assert self.conn is not None
        try:
            data = self._check("searching", self.conn.uid("SEARCH", None, "UNKEYWORD", self.settings.keyword))
            uids = [u.decode() for u in (data[0] or b"").split()]
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(_("{label}: searching the folder failed: {exc}; nothing was read").format(
                label=self.config.label, exc=exc)) from None
        for uid in uids:
            try:
                # BODY.PEEK: reading does not mark it read; only a handled message is marked.
                data = self._check(f"reading message {uid}", self.conn.uid("FETCH", uid, "(BODY.PEEK[])"))
            except (imaplib.IMAP4.error, OSError) as exc:
                raise MailboxError(_("{label}: the connection failed while reading message {uid}: {exc}; what was read "
                                     "before it is handled, the rest is read next time").format(
                                          label=self.config.label, uid=uid, exc=exc)) from None
            raw = next((d[1] for d in data if isinstance(d, tuple) and len(d) > 1), b"")
            yield Incoming(ref=f"IMAP {self.config.folder} UID {uid}", data=raw, uid=uid)

    def mark(self, uids: list[str], *, seen: bool) -> None:
        """Flag handled messages with the keyword (and \\Seen), or move them; never delete."""
        if not uids or self.conn is None:
            return
        ids = ",".join(uids)
        flags = ("(\\Seen " if seen else "(") + self.settings.keyword + ")"
        self._check("flagging handled messages", self.conn.uid("STORE", ids, "+FLAGS.SILENT", flags))
        if seen and self.settings.move_to:
            target = f'"{self.settings.move_to}"'
            self.conn.create(target)  # 'already exists' is fine
            if self.can_move:
                self._check(f"moving handled messages to {self.settings.move_to!r}", self.conn.uid("MOVE", ids, target))
            else:
                # Without MOVE: a copy, and the original stays flagged (never expunged by this tool).
                self._check(f"copying handled messages to {self.settings.move_to!r}", self.conn.uid("COPY", ids, target))

    def close(self) -> None:
        if self.conn is not None:
            try:
                if self.conn.state == "SELECTED":
                    self.conn.close()
                self.conn.logout()
            except Exception:  # closing a broken connection: nothing left to do
                pass
            self.conn = None


# --- applying -----------------------------------------------------------------------------------------

@dataclass
class _Context:
    conn: sqlite3.Connection
    now: dt.datetime
    dry_run: bool
    soft_limit: int
    salt: str
    # fingerprints seen in this run (a dry run records nothing, yet a message twice is still one)
    seen_now: set[str] = field(default_factory=set)
    # Handled messages not yet recorded as handled (see ``flush``).
    pending: list[tuple[tuple | None, str]] = field(default_factory=list)


def _fp_hash(ctx: _Context, fingerprint: str) -> str:
    return hashlib.sha256((ctx.salt + "\0" + fingerprint).encode()).hexdigest()


def _ledger_rows(ctx: _Context, ids: tuple[str, ...]) -> list[sqlite3.Row]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return ctx.conn.execute(f"SELECT id, campaign, mail, contact_id FROM ledger WHERE message_id IN ({marks})",
                            ids).fetchall()


def _contact_row(ctx: _Context, *, key: str | None = None, contact_id: int | None = None) -> sqlite3.Row | None:
    if contact_id is not None:
        return ctx.conn.execute("SELECT * FROM contacts WHERE id = ?", (contact_id,)).fetchone()
    return ctx.conn.execute("SELECT * FROM contacts WHERE email_key = ?", (key,)).fetchone()


def _latest_send(ctx: _Context, contact_id: int) -> sqlite3.Row | None:
    """The contact's most recent send: what an opt-out or a bounce without a Message-ID answers."""
    return ctx.conn.execute(
        "SELECT id, campaign, mail, contact_id FROM ledger WHERE contact_id = ? AND state IN ('sent', 'unknown')"
        " ORDER BY COALESCE(sent_at, updated_at) DESC, mail DESC LIMIT 1", (contact_id,)).fetchone()


def handle(ctx: _Context, item: Incoming, own: OwnAddresses) -> tuple[Outcome, bool]:
    """Classify and apply one message; returns its outcome and whether it was handled (to flag it)."""
    if item.problem:
        return Outcome(ref=item.ref, kind="other", contact=None, note=f"the file could not be read ({item.problem})"), False
    c = classify(item.data, own=own)
    received = store.iso(c.date.astimezone(dt.timezone.utc)) if c.date else store.iso(ctx.now)
    fp = _fp_hash(ctx, c.fingerprint)
    already = fp in ctx.seen_now or ctx.conn.execute("SELECT 1 FROM inbox_seen WHERE fingerprint = ?",
                                                     (fp,)).fetchone() is not None
    ctx.seen_now.add(fp)

    # Which send it answers: the exact one by Message-ID, else the latest to the contact it names.
    sends = _ledger_rows(ctx, c.message_ids)
    send = sends[0] if sends else None
    contact = _contact_row(ctx, contact_id=send["contact_id"]) if send else None
    address = contact["email_key"] if contact is not None else None
    if contact is None:
        for candidate in c.addresses:
            row = _contact_row(ctx, key=candidate)
            if row is not None:
                contact, address = row, candidate
                break
    if address is None and c.addresses:
        address = c.addresses[0]
    kind = c.kind
    if kind == "other" and contact is not None and c.sender and c.sender == contact["email_key"] and not c.note:
        kind = "reply"  # a contact writing to us, not replying to a mail: still a person waiting for an answer
    if send is None and contact is not None and kind in ("bounce-hard", "bounce-soft", "optout", "complaint", "reply"):
        send = _latest_send(ctx, contact["id"])
    base = dict(ref=item.ref, kind=kind, contact=contact["email"] if contact is not None else address,
                party=contact["party"] if contact is not None else "",
                municipality=contact["municipality"] if contact is not None else "",
                campaign=send["campaign"] if send else None, mail=send["mail"] if send else None,
                status=c.status, subject=c.subject if kind == "reply" else "", received_at=received, note=c.note)
    if already:
        return Outcome(action="already handled", **base), True

    effect, action = _decide(ctx, kind, contact, address, send)
    if not ctx.dry_run:
        # The change first (contacts.* commit it, and doing it again changes nothing), then the
        # record that the message was handled, in batches: a crash in between means it is read
        # again, which finds the change made and leaves it.
        _apply(ctx, kind, contact, address, effect, c)
        event = None
        if kind in ("bounce-hard", "bounce-soft", "optout", "complaint", "reply") and address:
            event = (contact["id"] if contact is not None else None,
                     None if contact is not None else contacts.suppression_hash(ctx.conn, address),
                     kind, base["campaign"], base["mail"], received, store.iso(ctx.now), c.status,
                     c.subject[:300] if kind == "reply" else "", effect)
        ctx.pending.append((event, fp))
        if len(ctx.pending) >= RECORD_BATCH:
            flush(ctx)
    return Outcome(action=action, **base), True


def flush(ctx: _Context) -> None:
    """Record the handled messages noted since the last flush, in one transaction."""
    if not ctx.pending:
        return
    moment = store.iso(ctx.now)
    with store.transaction(ctx.conn):
        ctx.conn.executemany(
            "INSERT INTO inbox_events (contact_id, hash, kind, campaign, mail, received_at, handled_at,"
            " status, subject, effect) VALUES (?,?,?,?,?,?,?,?,?,?)", [e for e, _ in ctx.pending if e is not None])
        ctx.conn.executemany("INSERT OR IGNORE INTO inbox_seen (fingerprint, handled_at) VALUES (?, ?)",
                             [(fp, moment) for _, fp in ctx.pending])
    ctx.pending.clear()


def _soft_streak(ctx: _Context, contact_id: int, send: sqlite3.Row | None) -> int:
    """How many of the contact's sends in a row bounced (softly or hard), in the run that holds this one.

    Bounces arrive late and out of order, so the run is counted both ways from the send this
    bounce answers; without a tied send, from the latest send.
    """
    sends = [(r["campaign"], r["mail"]) for r in ctx.conn.execute(
        "SELECT campaign, mail FROM ledger WHERE contact_id = ? AND state IN ('sent', 'unknown')"
        " ORDER BY COALESCE(sent_at, updated_at), mail", (contact_id,))]
    bounced = {(r["campaign"], r["mail"]) for r in ctx.conn.execute(
        "SELECT campaign, mail FROM inbox_events WHERE contact_id = ? AND kind IN ('bounce-soft', 'bounce-hard')",
        (contact_id,))}
    this = (send["campaign"], send["mail"]) if send is not None else (sends[-1] if sends else None)
    if this is None or this not in sends:
        return 1
    bounced.add(this)
    at = sends.index(this)
    before = at
    while before > 0 and sends[before - 1] in bounced:
        before -= 1
    after = at
    while after + 1 < len(sends) and sends[after + 1] in bounced:
        after += 1
    return after - before + 1


def _decide(ctx: _Context, kind: str, contact: sqlite3.Row | None, address: str | None,
            send: sqlite3.Row | None) -> tuple[str, str]:
    """(effect stored with the event, action shown) for a message not handled before."""
    would = "would be " if ctx.dry_run else ""
    if kind == "bounce-hard":
        if contact is None:
            return "", "none: not a contact"
        if contact["status"] in ("active", "removed"):
            return "bounced", f"{would}marked bounced; no further mail"
        return "", f"none: already {contact['status']}"
    if kind == "bounce-soft":
        if contact is None:
            return "", "none: not a contact"
        if contact["status"] not in ("active", "removed"):
            return "", f"none: already {contact['status']}"
        flush(ctx)  # the streak counts the soft bounces read before this one
        streak = _soft_streak(ctx, contact["id"], send)
        if streak >= ctx.soft_limit:
            return "bounced", f"{would}marked bounced: soft bounces on {streak} mails in a row"
        return "", f"counted: {streak} of {ctx.soft_limit} soft bounces in a row"
    if kind in ("optout", "complaint"):
        if not address:
            return "", "none: no address found; check it by hand"
        if contact is None:
            hashed = contacts.suppression_hash(ctx.conn, address)
            if ctx.conn.execute("SELECT 1 FROM suppressions WHERE hash = ?", (hashed,)).fetchone():
                return "", "none: already on the suppression list"
            return "suppressed", f"{would}put on the suppression list (not imported)"
        if contact["status"] == "unsubscribed":
            return "", "none: already unsubscribed"
        return "unsubscribed", f"{would}unsubscribed"
    if kind == "reply":
        return "", "listed for staff"
    return "", "none"


def _apply(ctx: _Context, kind: str, contact: sqlite3.Row | None, address: str | None, effect: str,
           c: Classified) -> None:
    if effect == "bounced" and contact is not None:
        reason = f"bounced ({c.status})" if c.status else "bounced"
        if kind == "bounce-soft":
            reason = f"soft bounces on {ctx.soft_limit} mails in a row"
        contacts.set_status(ctx.conn, [contact["email_key"]], status="bounced", reason=f"{reason}, per mail",
                            now=ctx.now)
    elif effect in ("unsubscribed", "suppressed") and address:
        why = OPTOUT_REASON if kind == "optout" else "abuse report (per mail)"
        contacts.unsubscribe(ctx.conn, [contact["email"] if contact is not None else address], reason=why, now=ctx.now)


def read_inbox(
    project: "Project",
    *,
    source: Path | None = None,
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    now: dt.datetime,
    on_message: Callable[[Outcome], None] | None = None,
    tokens=None,  # type: ignore[no-untyped-def]
) -> InboxReport:
    """Read the mailbox (``source``, else ``CAMPAIGN_IMAP_URL``), classify and apply every message.

    Raises :class:`MailboxError` when the mailbox cannot be opened (nothing is changed then), or
    when an IMAP connection fails part-way: what was handled before it stays handled and flagged,
    and the rest is read on the next run.
    """
    import os

    env = dict(os.environ) if env is None else env
    deployment = project.deployment()
    own = OwnAddresses.of(deployment.sender)
    imap = None
    if source is not None:
        label, items = local_messages(source)
    else:
        config = imap_config(env)
        if config is None:
            raise MailboxError(_("no mailbox to read: set CAMPAIGN_IMAP_URL (and CAMPAIGN_IMAP_PASSWORD), or give a "
                                  "Maildir, mbox file or folder of .eml files with --from"))
        if config.auth == "xoauth2" and tokens is None:
            from .oauth import token_provider

            tokens = token_provider(env, deployment.oauth)
        imap = ImapMailbox(config, env, deployment.inbox, tokens=tokens)
        imap.open()
        label, items = config.label, imap.messages()
    outcomes: list[Outcome] = []
    seen_uids: list[str] = []
    kept_uids: list[str] = []
    marked = 0
    mark_error = ""
    try:
        with project.db() as conn:
            ctx = _Context(conn=conn, now=now, dry_run=dry_run, soft_limit=deployment.inbox.soft_bounce_limit,
                           salt=store.salt(conn))
            try:
                for item in items:
                    outcome, handled = handle(ctx, item, own)
                    outcomes.append(outcome)
                    if on_message:
                        on_message(outcome)
                    if handled and item.uid:
                        # Replies (and what nobody could classify) stay unread, for staff to read.
                        (kept_uids if outcome.kind in ("reply", "other") else seen_uids).append(item.uid)
            finally:
                flush(ctx)
                if imap is not None and not dry_run:
                    try:
                        imap.mark(seen_uids, seen=True)
                        imap.mark(kept_uids, seen=False)
                        marked = len(seen_uids) + len(kept_uids)
                    except Exception as exc:  # imaplib.IMAP4.error, OSError or MailboxError
                        # Recorded as handled already: the next run skips them, so nothing is applied twice.
                        mark_error = str(exc)
    finally:
        if imap is not None:
            imap.close()
    return InboxReport(source=label, dry_run=dry_run, outcomes=tuple(outcomes), marked=marked, mark_error=mark_error)


def counts_per_mail(conn: sqlite3.Connection, campaign: str) -> dict[int, dict[str, int]]:
    """Per mail of a campaign: contacts now bounced whose last bounce answered it, and people now
    opted out (contacts, or addresses kept as a hash) whose first opt-out or abuse report answered it.

    Counted from the current state rather than from what each message changed, so that a
    message handled again after a crash, or a contact reactivated since, is counted right.
    """
    out: dict[int, dict[str, int]] = {}

    def add(key: str, query: str) -> None:
        for mail, n in conn.execute(query, (campaign,)):
            out.setdefault(mail, {"bounced": 0, "opted_out": 0})[key] += n

    add("bounced", "SELECT e.mail, COUNT(DISTINCT e.contact_id) FROM inbox_events e JOIN contacts c ON c.id = e.contact_id"
                   " WHERE e.campaign = ? AND e.mail IS NOT NULL AND c.status = 'bounced' AND e.id = (SELECT MAX(x.id)"
                   " FROM inbox_events x WHERE x.contact_id = e.contact_id AND x.kind IN ('bounce-hard', 'bounce-soft'))"
                   " GROUP BY e.mail")
    add("opted_out", "SELECT e.mail, COUNT(DISTINCT e.contact_id) FROM inbox_events e JOIN contacts c ON c.id = e.contact_id"
                     " WHERE e.campaign = ? AND e.mail IS NOT NULL AND c.status = 'unsubscribed' AND e.id = (SELECT MIN(x.id)"
                     " FROM inbox_events x WHERE x.contact_id = e.contact_id AND x.kind IN ('optout', 'complaint'))"
                     " GROUP BY e.mail")
    add("opted_out", "SELECT e.mail, COUNT(DISTINCT e.hash) FROM inbox_events e WHERE e.campaign = ? AND e.mail IS NOT NULL"
                     " AND e.hash IS NOT NULL AND e.id = (SELECT MIN(x.id) FROM inbox_events x WHERE x.hash = e.hash"
                     " AND x.kind IN ('optout', 'complaint')) GROUP BY e.mail")
    return out


def events_for(conn: sqlite3.Connection, contact_id: int) -> list[dict]:
    """What came back from one contact, oldest first: for ``contacts show``."""
    return [dict(r) for r in conn.execute(
        "SELECT received_at, kind, campaign, mail, status, subject, effect FROM inbox_events WHERE contact_id = ?"
        " ORDER BY received_at, id", (contact_id,))]


def forget(conn: sqlite3.Connection, *, contact_id: int | None, hashed: str) -> None:
    """Delete what the inbox stored about a person (inside the caller's transaction)."""
    if contact_id is not None:
        conn.execute("DELETE FROM inbox_events WHERE contact_id = ?", (contact_id,))
    conn.execute("DELETE FROM inbox_events WHERE hash = ?", (hashed,))
