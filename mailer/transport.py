"""Where messages go: the outbox folder (default) or an SMTP server from ``CAMPAIGN_SMTP_URL``.

The password only ever comes from ``CAMPAIGN_SMTP_PASSWORD``; it is never stored, printed
or put in a label. With ``?auth=xoauth2`` in the URL (or ``CAMPAIGN_SMTP_AUTH=xoauth2``) the
login is SASL XOAUTH2 with an OAuth2 access token from :mod:`mailer.oauth` instead.

Contact mails never cross the network in plain text: a server that is not on this machine must
offer STARTTLS (or be reached with smtps://); only a loopback relay may stay plain.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import select
import smtplib
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .i18n import _
from .errors import DeliveryError, MailServerConfigError, TokenError
from .message import Envelope

Route = tuple[str, str]  # (envelope sender, recipient)
# A server may drop a client that takes minutes to send the data it announced (RFC 5321
# 4.5.3.2): an envelope opened ahead of time is used only while it is this fresh.
PREPARED_MAX_AGE = 10.0

# RFC 5321 4.5.3.2.6: a client waits 10 minutes for the answer to the final dot, because a
# server may check the whole message (virus and spam scans) before it answers; giving up
# sooner turns an accepted message into an "unknown" one, and then into a second copy.
DATA_TIMEOUT = 600.0
# How often a wait on the network looks up to see whether the worker was told to stop.
WAIT_SLICE = 0.25

# Only "no such mailbox" marks a contact bounced (RFC 3463: X.1.1 bad destination mailbox,
# X.1.10 recipient address has null MX). X.7.x is policy (relay denied, blocked, spam), X.2.x
# a full or disabled mailbox, X.1.0 "other address status": none of them says the address is gone.
USER_UNKNOWN_CODES = {"5.1.1", "5.1.10"}
# Used only when the answer carries no enhanced code. Postfix's "Recipient address rejected"
# and RFC 5321's "mailbox unavailable" front policy refusals as well, so they are not here.
USER_UNKNOWN_WORDS = ("user unknown", "unknown user", "no such user", "no such mailbox", "mailbox not found",
                      "user not found", "recipient not found", "unknown recipient", "recipient unknown",
                      "address unknown", "unknown address", "does not exist", "doesn't exist", "no mailbox here")
ENHANCED_CODE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")

# Answers about the account or the tenant, not about a message (Exchange Online: 5.7.30 "Basic
# authentication is not supported for Client Submission", 5.7.139 "SmtpClientAuthentication is
# disabled for the Tenant", 5.7.57 "Client not authenticated to send mail"; 5.7.0 and 5.7.8 from
# Postfix and Gmail for a login that is missing or refused; 5.7.60 "Client does not have
# permissions to send as this sender"). Every message would get them.
CONFIG_CODES = {"5.7.30", "5.7.139", "5.7.57", "5.7.8", "5.7.3", "5.7.60"}
# Throttling: Exchange's 4.3.2 (STOREDRV.ClientSubmit ... sender thread limit / concurrency) and
# 4.7.x with "too many"; Gmail's 4.7.0 "Try again later" and 4.7.28 rate limits. The daily quota
# answers (Gmail 5.4.5, Exchange 5.2.0 SubmissionQuotaExceeded) mean: nothing more today.
THROTTLE_WORDS = ("too many", "throttl", "rate limit", "rate-limit", "try again later", "exceeded", "quota")
DAILY_QUOTA_WORDS = ("daily user sending quota", "submissionquotaexceeded", "sending limit exceeded",
                     "quota exceeded")


class TemporaryFailure(Exception):
    """A 4xx answer, or a connection that failed before the message was handed over: retry later."""


class ConnectionFailure(TemporaryFailure):
    """The server could not be reached, or the connection failed before a message's final dot
    was written: nothing was handed over, so the message may go later without using an attempt."""


class PermanentFailure(Exception):
    """A 5xx answer: do not retry. ``user_unknown`` marks an address that does not exist."""

    def __init__(self, message: str, *, user_unknown: bool = False) -> None:
        super().__init__(message)
        self.user_unknown = user_unknown


def enhanced_code(text: str) -> str:
    """The RFC 3463 code at the start of a server's answer text (``5.7.1``), or ``""``."""
    found = ENHANCED_CODE.match(text.strip())
    return ".".join(found.groups()) if found else ""


def user_unknown(code: int, text: str) -> bool:
    """True only when a 5xx answer says the mailbox does not exist (see USER_UNKNOWN_CODES)."""
    if not 500 <= code < 600:
        return False
    enhanced = enhanced_code(text)
    if enhanced:
        return enhanced in USER_UNKNOWN_CODES
    lowered = text.lower()
    return code in (550, 551, 553) and any(w in lowered for w in USER_UNKNOWN_WORDS)


class Throttled(TemporaryFailure):
    """The server asks us to slow down (``daily``: to stop for today): no message is to blame, so
    the worker puts the message back without using an attempt and sends more slowly."""

    def __init__(self, message: str, *, daily: bool = False) -> None:
        super().__init__(message)
        self.daily = daily


def throttled(code: int, text: str) -> Throttled | None:
    """The Throttled for a provider's slow-down answer, or None for any other answer."""
    enhanced = enhanced_code(text)
    lowered = text.lower()
    message = f"{code} {text}".strip()
    if code >= 500:
        if enhanced in ("5.4.5", "5.2.0") and any(w in lowered for w in DAILY_QUOTA_WORDS):
            return Throttled(message, daily=True)
        return None
    if not 400 <= code < 500:
        return None
    if any(w in lowered for w in DAILY_QUOTA_WORDS):
        return Throttled(message, daily=True)
    if enhanced == "4.3.2" or (enhanced.startswith("4.7.") and any(w in lowered for w in THROTTLE_WORDS)):
        return Throttled(message)
    if code == 421 and any(w in lowered for w in THROTTLE_WORDS):
        return Throttled(message)
    return None


def config_refusal(code: int, text: str, *, label: str, xoauth2: bool) -> MailServerConfigError | None:
    """The sentence for an answer that is about the account or the tenant (see CONFIG_CODES):
    what to change. None for any other answer."""
    enhanced = enhanced_code(text)
    answer = f"{code} {text}".strip()[:200]
    if enhanced == "5.7.30" or "basic authentication is not supported" in text.lower():
        return MailServerConfigError(
            _("{label} no longer accepts a password login ({answer}); switch to OAuth2: add "
               "?auth=xoauth2 to CAMPAIGN_SMTP_URL and give a token source "
               "(CAMPAIGN_OAUTH_TOKEN_COMMAND, or the Microsoft 365 app registration: see the README). "
               "Nothing was sent and nobody was marked bounced.").format(label=label, answer=answer))
    if enhanced == "5.7.139" or "smtpclientauthentication is disabled" in text.lower():
        return MailServerConfigError(
            _("{label} refused the login because SMTP AUTH is switched off ({answer}); an Exchange "
               "administrator must allow it for this mailbox (Set-CASMailbox -Identity MAILBOX "
               "-SmtpClientAuthenticationDisabled $false) or for the tenant (Set-TransportConfig "
               "-SmtpClientAuthenticationDisabled $false). Nothing was sent and nobody was marked "
               "bounced.").format(label=label, answer=answer))
    if enhanced == "5.7.60" or "does not have permissions to send as" in text.lower():
        return MailServerConfigError(
            _("{label} does not let this login send as the From address ({answer}); send from the "
               "mailbox that logs in ([sender] address in settings.toml), or have an Exchange "
               "administrator give it SendAs on that address (Add-RecipientPermission ... -AccessRights "
               "SendAs). Nothing was sent and nobody was marked bounced.").format(label=label, answer=answer))
    if code == 535 or enhanced in CONFIG_CODES or (code == 530 and enhanced.startswith("5.7.")):
        if xoauth2:
            return MailServerConfigError(
                _("{label}: OAuth2 login refused ({answer}); check that the app registration has the "
                   "SMTP.SendAsApp permission with admin consent, that its Exchange service principal has "
                   "SendAs/FullAccess on the mailbox named in CAMPAIGN_SMTP_URL, and that the token is for "
                   "that tenant (see the README). Nothing was sent and nobody was marked bounced.").format(
                       label=label, answer=answer))
        return MailServerConfigError(
            _("{label}: login refused ({answer}); check the user name in CAMPAIGN_SMTP_URL and "
               "CAMPAIGN_SMTP_PASSWORD (or switch to OAuth2 with ?auth=xoauth2, see the README). "
               "Nothing was sent and nobody was marked bounced.").format(label=label, answer=answer))
    return None


class UnknownOutcome(Exception):
    """The connection was lost after the message was handed over: it may or may not have arrived."""


@dataclass(frozen=True)
class TransportConfig:
    kind: str  # "outbox" or "smtp"
    host: str = ""
    port: int = 0
    implicit_tls: bool = False
    username: str = ""
    auth: str = "password"  # or "xoauth2"; not part of the label, so a schedule survives the switch
    # The token source, made on first use and kept as long as this config: its cache outlives
    # the connections (a worker reconnects for every mail).
    _tokens: list = field(default_factory=list, compare=False, repr=False)

    def token_source(self, env: Mapping[str, str], settings=None):  # type: ignore[no-untyped-def]
        """The token provider for XOAUTH2 (see :func:`mailer.oauth.token_provider`)."""
        if not self._tokens:
            from .oauth import token_provider

            self._tokens.append(token_provider(env, settings))
        return self._tokens[0]

    @property
    def label(self) -> str:
        """How the transport is named in the schedule and in status: never with a password."""
        if self.kind == "outbox":
            return "outbox"
        user = f"{urllib.parse.quote(self.username)}@" if self.username else ""
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{user}{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(socket.gethostbyname(self.host)).is_loopback
        except (OSError, ValueError):
            return False


def transport_config(env: Mapping[str, str] | None = None) -> TransportConfig:
    """Read ``CAMPAIGN_SMTP_URL``; without it, the outbox."""
    env = os.environ if env is None else env
    url = env.get("CAMPAIGN_SMTP_URL", "").strip()
    if not url:
        return TransportConfig(kind="outbox")
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:
        # The URL is not repeated: it may hold a password.
        raise DeliveryError(_("CAMPAIGN_SMTP_URL is not a valid URL ({exc}); expected smtp://[user@]host[:port] or "
                               "smtps://[user@]host[:port]").format(exc=exc)) from None
    if parts.scheme not in ("smtp", "smtps"):
        raise DeliveryError(_("CAMPAIGN_SMTP_URL: expected smtp://[user@]host[:port] or smtps://..., got scheme "
                               "{scheme}").format(scheme=repr(parts.scheme)))
    if not hostname:
        raise DeliveryError(_("CAMPAIGN_SMTP_URL names no host; expected smtp://[user@]host[:port] or smtps://..."))
    if parts.password:
        raise DeliveryError(_("CAMPAIGN_SMTP_URL holds a password; put it in CAMPAIGN_SMTP_PASSWORD instead"))
    implicit = parts.scheme == "smtps"
    auth = _auth_mechanism(parts.query, env)
    if auth == "xoauth2" and not parts.username:
        raise DeliveryError(_("CAMPAIGN_SMTP_URL: XOAUTH2 logs in as a mailbox; name it in the URL, e.g. "
                               "smtp://campagne%40example.org@smtp.office365.com:587?auth=xoauth2"))
    try:
        port = parts.port or (465 if implicit else 587)
    except ValueError:
        raise DeliveryError(_("CAMPAIGN_SMTP_URL: the port must be a number from 0-65535 (e.g. 587 or 465)")) from None
    # A bad CA file shows now, in any command, rather than when the first message is due.
    _ssl_context(env)
    return TransportConfig(kind="smtp", host=hostname, port=port, implicit_tls=implicit,
                           username=urllib.parse.unquote(parts.username or ""), auth=auth)


def _auth_mechanism(query: str, env: Mapping[str, str]) -> str:
    """``?auth=`` in the URL, else ``CAMPAIGN_SMTP_AUTH``, else a password login."""
    asked = ""
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key.lower() != "auth":
            raise DeliveryError(_("CAMPAIGN_SMTP_URL: unknown option {key}; the only option is ?auth=xoauth2 (or "
                                   "?auth=password)").format(key=repr(key)))
        asked = value
    asked = (asked or env.get("CAMPAIGN_SMTP_AUTH", "") or "password").strip().lower()
    if asked not in ("password", "xoauth2"):
        raise DeliveryError(_("the SMTP login {asked} (CAMPAIGN_SMTP_URL ?auth= or CAMPAIGN_SMTP_AUTH) is not known; "
                               "use password or xoauth2").format(asked=repr(asked)))
    return asked


def outbox_path(folder: Path, message_id: str, *, group: str = "") -> Path:
    """Where the outbox keeps a message: named by its Message-ID, so that a resend overwrites it
    and erasure finds a contact's messages from the ledger's Message-IDs."""
    name = hashlib.sha256(message_id.encode()).hexdigest()[:24] + ".eml"
    return (folder / group if group else folder) / name


class OutboxTransport:
    """One ``.eml`` per message; the name comes from the Message-ID, so a resend overwrites."""

    label = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made: set[Path] = set()

    def send(self, envelope: Envelope, *, group: str = "") -> str:
        from . import files

        path = outbox_path(self.folder, envelope.message_id, group=group)
        try:
            if path.parent not in self._made:
                files.private_dir(self.folder)
                files.private_dir(path.parent)
                self._made.add(path.parent)
            # Atomic (a crash never leaves half a message) and owner-only: it holds a contact's data.
            files.write_private(path, envelope.data)
        except OSError as exc:
            # A DeliveryError, not a failure of this message: the next one would fail the same
            # way, so the worker puts it back in the queue and stops instead of failing everyone.
            raise DeliveryError(_("could not write {path}: {strerror}; the message was not written to the "
                                  "outbox").format(
                path=exc.filename or path, strerror=exc.strerror)) from None
        return str(path)

    # The worker's interface (see SmtpTransport): a file is written at once, so it is always ready.
    def start(self, envelope: Envelope, *, group: str = "", then: Route | None = None) -> None:
        self._result = self.send(envelope, group=group)

    def commit(self, *, then: Route | None = None) -> None:
        pass

    def finish(self) -> str:
        return self._result

    def ready(self) -> bool:
        return True

    def overdue(self) -> bool:
        return False

    def abandon(self) -> None:
        pass

    def close(self) -> None:
        pass


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca = env.get("CAMPAIGN_SMTP_CA_FILE")
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:  # before OSError, of which it is a kind
            raise DeliveryError(_("CAMPAIGN_SMTP_CA_FILE={ca}: no certificate could be read from it ({reason}); it "
                                  "must hold PEM certificates").format(ca=ca, reason=exc.reason or exc)) from None
        except OSError as exc:
            raise DeliveryError(_("CAMPAIGN_SMTP_CA_FILE={ca}: {strerror}; point it at a PEM file of CA certificates, "
                                  "or unset it to trust the system's").format(ca=ca, strerror=exc.strerror)) from None
    return ctx


def _wait_readable(sock: socket.socket, timeout: float, interrupted: Callable[[], bool]) -> None:
    """Wait until ``sock`` has something to read, looking up every WAIT_SLICE seconds whether
    to stop. OSError (TimeoutError, InterruptedError) when nothing comes or the wait is called off."""
    deadline = time.monotonic() + timeout
    while True:
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(_("no answer within {timeout} s").format(timeout=format(timeout, ".0f")))
        if select.select([sock], [], [], min(WAIT_SLICE, remaining))[0]:
            return
        if interrupted():
            raise InterruptedError(_("the worker was told to stop while it waited for the server"))


class _Greeted:
    """smtplib waits for a server's greeting in one blocking read; a server that accepts the
    connection and never greets would hold a stop request (SIGTERM) for the whole timeout."""

    interrupted: Callable[[], bool] = staticmethod(lambda: False)

    def _get_socket(self, host, port, timeout):  # type: ignore[no-untyped-def]
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        try:
            _wait_readable(sock, timeout if timeout is not None else 300.0, self.interrupted)
        except OSError:
            sock.close()
            raise
        return sock


class _SMTP(_Greeted, smtplib.SMTP):
    pass


class _SMTP_SSL(_Greeted, smtplib.SMTP_SSL):
    pass


class SmtpTransport:
    """One connection reused for many messages, reopened when it drops.

    A message is handed over in three steps, so that a worker can keep several connections
    busy from one thread and a kill rarely duplicates: :meth:`start` writes the message
    without its final dot, :meth:`commit` writes the dot, :meth:`finish` reads the server's
    answer. Until the dot, the server holds no message (RFC 5321 4.1.1.4): a worker killed
    then duplicates nothing, so it builds the next message there, and only the dot, the
    answer and the ledger's commit remain in the window where a kill leaves an accepted
    message recorded as ``sending``. With PIPELINING (RFC 2920) the MAIL, RCPT and DATA
    commands of the message expected next on this connection (``then``) follow the dot in the
    same write, so a message costs one round trip instead of two. Only the data of one
    message is ever in flight: the next one's data is written only after its own ``start``.
    When that next message does not come after all, the connection is closed without a
    final dot, which the server takes as no message.

    ``timeout`` bounds connecting and each command's answer; ``data_timeout`` the answer to
    the final dot (RFC 5321 4.5.3.2.6). ``interrupted`` is asked while waiting for a greeting.
    """

    def __init__(self, config: TransportConfig, *, env: Mapping[str, str] | None = None, timeout: float = 30,
                 data_timeout: float = DATA_TIMEOUT, interrupted: Callable[[], bool] | None = None,
                 oauth=None) -> None:  # type: ignore[no-untyped-def]
        self.config = config
        self.env = os.environ if env is None else env
        self.password = self.env.get("CAMPAIGN_SMTP_PASSWORD", "")
        self.oauth_settings = oauth
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.interrupted = interrupted or (lambda: False)
        self._handed_at = 0.0  # when the final dot of the message in flight was written
        self._body = False  # a message's data is written, its final dot not yet
        self._then: Route | None = None
        self.conn: smtplib.SMTP | None = None
        self.sock: socket.socket | None = None
        self.label = config.label
        self._buf = b""
        self._pipelining = False
        self._utf8 = False
        self._inflight = False
        self._ahead = True  # envelopes may go ahead (turned off for a server that mishandles it)
        self._next: Route | None = None  # envelope written after the data in flight
        # (route, replies to its MAIL/RCPT/DATA, when they came): a message the server awaits.
        self._prepared: tuple[Route, list[tuple[int, bytes]], float] | None = None
        # (route, when its commands went): an envelope sent ahead whose answers are not read yet.
        self._unread: tuple[Route, float] | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        ctx = _ssl_context(self.env)
        try:
            if c.implicit_tls:
                conn: smtplib.SMTP = _SMTP_SSL(timeout=self.timeout, context=ctx)
            else:
                conn = _SMTP(timeout=self.timeout)
            conn.interrupted = self.interrupted  # type: ignore[attr-defined]
            conn._host = c.host  # what STARTTLS checks the certificate against (set by __init__ only)
            code, greeting = conn.connect(c.host, c.port)
            if code != 220:
                conn.close()
                raise smtplib.SMTPConnectError(code, greeting)
            conn.ehlo()
            tls = c.implicit_tls
            if not tls and conn.has_extn("starttls"):
                conn.starttls(context=ctx)
                conn.ehlo()
                tls = True
            if not tls and not c.loopback:
                conn.close()
                if c.username:
                    raise DeliveryError(
                        _("{label} offers no TLS; refusing to send the password unencrypted and the contact mails "
                           "in plain text (someone between here and the server may have removed the STARTTLS "
                           "offer); nothing was sent. Use smtps://HOST:465 when the server offers implicit TLS, or "
                           "switch on STARTTLS on the server.").format(label=c.label))
                raise DeliveryError(
                    _("{label} does not offer STARTTLS, so the contact mails would cross the network in plain "
                       "text (or someone between here and the server removed the offer); nothing was sent. Use "
                       "smtps://HOST:465 when the server offers implicit TLS, or switch on STARTTLS on the "
                       "relay; only a relay on this machine (127.0.0.1) may be used without TLS.").format(
                           label=c.label))
            if c.auth == "xoauth2":
                self._xoauth2(conn)
            elif c.username:
                if not self.password:
                    conn.close()
                    raise DeliveryError(_("{label} needs a password: set CAMPAIGN_SMTP_PASSWORD").format(label=c.label))
                conn.login(c.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            refusal = config_refusal(exc.smtp_code, text, label=c.label, xoauth2=c.auth == "xoauth2")
            raise refusal or MailServerConfigError(_("{label}: login refused ({smtp_code} {text})").format(
                label=c.label, smtp_code=exc.smtp_code, text=text[:200])) from None
        except TokenError as exc:
            conn.close()
            if exc.temporary:
                raise ConnectionFailure(f"{c.label}: no OAuth2 token: {exc}") from None
            raise
        except ssl.SSLError as exc:
            raise DeliveryError(_("{label}: TLS failed: {reason}").format(
                label=c.label, reason=exc.reason or exc)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectionFailure(f"{c.label}: cannot connect: {exc or type(exc).__name__}") from None
        return conn

    def _xoauth2(self, conn: smtplib.SMTP) -> None:
        """SASL XOAUTH2 with a token from the config's source; a refused token is renewed once (it
        may have been revoked or have expired early) before the refusal counts."""
        from .oauth import xoauth2_string

        tokens = self.config.token_source(self.env, self.oauth_settings)
        for attempt in (1, 2):
            token = tokens.token()
            first = xoauth2_string(self.config.username, token)
            try:
                # After a refusal the server sends a JSON challenge; an empty line ends the exchange.
                conn.auth("XOAUTH2", lambda challenge=None: first if challenge is None else "",
                          initial_response_ok=True)
                return
            except smtplib.SMTPAuthenticationError as exc:
                if attempt == 2 or exc.smtp_code not in (535, 334):
                    raise
                tokens.invalidate()

    def open(self) -> None:
        """Connect now, so that a wrong setting shows before any message is claimed."""
        if self.conn is None:
            self.conn = self._connect()
            # smtplib has read every answer it asked for; from here the transport reads the
            # socket itself, which lets a worker wait on several connections at once.
            self.sock = self.conn.sock
            # The final dot is a small write after the message's data: Nagle's algorithm would
            # hold it until the server acknowledges that data (a delayed ACK: up to 40 ms).
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buf = b""
            self._pipelining = self.conn.has_extn("pipelining")
            self._utf8 = self.conn.has_extn("smtputf8")

    # --- reading answers ---------------------------------------------------------------

    def ready(self) -> bool:
        """An answer can be read without waiting for the network (select() cannot see these)."""
        if b"\n" in self._buf:
            return True
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    def fileno(self) -> int:
        return self.sock.fileno()

    def _reply(self) -> tuple[int, bytes]:
        """One (multi-line) answer: its code and text. OSError when the connection is gone. Its
        texts are English: the ledger stores them in an unknown outcome's error, and a person
        reads them translated (mailer/i18n_stored.py)."""
        lines = []
        while True:
            end = self._buf.find(b"\n")
            while end < 0:
                if len(self._buf) > 8192:
                    raise OSError("the server's answer is too long")
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise OSError("the server closed the connection")
                self._buf += chunk
                end = self._buf.find(b"\n")
            line, self._buf = self._buf[:end + 1], self._buf[end + 1:]
            lines.append(line[4:].strip())
            if line[3:4] != b"-":
                break
        try:
            return int(line[:3]), b"\n".join(lines)
        except ValueError:
            raise OSError(f"not an SMTP answer: {line[:40]!r}") from None

    # --- sending -------------------------------------------------------------------------

    def _commands(self, route: Route) -> bytes:
        sender, recipient = route
        options = " SMTPUTF8" if not (sender.isascii() and recipient.isascii()) else ""
        return f"MAIL FROM:<{sender}>{options}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("utf-8")

    def _open_envelope(self, route: Route) -> list[tuple[int, bytes]]:
        """MAIL, RCPT and DATA for ``route``, with their answers (fewer when one was refused)."""
        if self._pipelining:
            # RFC 2920: MAIL, RCPT and DATA in one write, their answers read in order.
            self.sock.sendall(self._commands(route))
            return [self._reply() for _ in range(3)]
        replies = []
        for command in self._commands(route).split(b"\r\n")[:3]:
            self.sock.sendall(command + b"\r\n")
            replies.append(self._reply())
            if replies[-1][0] not in (250, 251, 354):
                break
        return replies

    def start(self, envelope: Envelope, *, group: str = "", then: Route | None = None, retried: bool = False) -> None:
        """Open the envelope (unless it went ahead) and write ``envelope`` without its final dot;
        :meth:`commit` writes the dot, :meth:`finish` reads the answer. Raises TemporaryFailure or
        PermanentFailure when the server refuses the envelope, ConnectionFailure when no
        connection works: in all three cases nothing was handed over."""
        route = (envelope.sender, envelope.recipient)
        self._read_ahead()
        prepared, self._prepared = self._prepared, None
        if prepared is not None and (prepared[0] != route or time.monotonic() - prepared[2] > PREPARED_MAX_AGE):
            # The server awaits another message's data (or has waited too long for this one):
            # only a new connection ends that without sending anything.
            self._drop()
            prepared = None
        if self.conn is None:
            self.open()
        try:
            replies = prepared[1] if prepared is not None else self._open_envelope(route)
        except OSError as exc:
            self._drop()
            # Nothing was handed over yet, so trying again is safe: at once on a fresh connection
            # when this one had gone stale, else later.
            if not retried:
                return self.start(envelope, group=group, then=then, retried=True)
            raise ConnectionFailure(f"{self.label}: connection lost before the message was sent: {exc}") from None
        for (code, resp), ok in zip(replies, ((250,), (250, 251), (354,))):
            if code not in ok:
                if replies[-1][0] == 354:
                    self._drop()  # the server awaits data for a half-refused envelope: end it unsent
                else:
                    self._reset()
                self._fail(code, resp)
        try:
            self.sock.sendall(envelope.payload())
        except OSError as exc:
            self._drop()
            # Without its final dot the server holds no message: as safe to repeat as above.
            if not retried:
                return self.start(envelope, group=group, then=then, retried=True)
            raise ConnectionFailure(f"{self.label}: connection lost before the message was sent: {exc}") from None
        self._body = True
        self._then = then

    def commit(self, *, then: Route | None = None) -> None:
        """Write the final dot of the message :meth:`start` wrote: from here on the server may
        take it. With PIPELINING, ``then`` (or the route given to start) goes along. Raises
        UnknownOutcome when the connection fails while the dot is written."""
        then = then if then is not None else self._then
        self._then = None
        self._body = False
        payload = b".\r\n"
        self._next = then if (then is not None and self._pipelining and self._ahead
                              and (self._utf8 or all(map(str.isascii, then)))) else None
        if self._next is not None:
            payload += self._commands(self._next)
        self._handed_at = time.monotonic()
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            self._drop()
            raise UnknownOutcome(f"connection lost while the message was handed over: {exc}") from None
        self._inflight = True

    def overdue(self) -> bool:
        """The answer to the final dot has not come within ``data_timeout``."""
        return self._inflight and time.monotonic() - self._handed_at > self.data_timeout

    def abandon(self) -> None:
        """Stop waiting for the answer (the worker is stopping): close the connection. The
        server may still take the message, so the caller records it as unknown."""
        self._drop()

    def finish(self) -> str:
        """The answer to the message :meth:`commit` completed; raises as :meth:`start` does, or
        UnknownOutcome when the connection was lost, or no answer came within ``data_timeout``."""
        self._inflight = False
        following, self._next = self._next, None
        try:
            self.sock.settimeout(max(0.001, self._handed_at + self.data_timeout - time.monotonic()))
            try:
                code, resp = self._reply()
            finally:
                if self.sock is not None:
                    self.sock.settimeout(self.timeout)
        except TimeoutError:
            self._drop()
            raise UnknownOutcome(f"no answer within {self.data_timeout:.0f} s after the message was handed over; "
                                 "the server may have taken it") from None
        except OSError as exc:
            self._drop()
            raise UnknownOutcome(f"connection lost while the message was handed over: {exc}") from None
        # The answers to the envelope that went along with the dot are read when the next
        # message starts, not here: the caller journals this answer first, and a kill in
        # between must not find an accepted message unrecorded while a server checks a recipient.
        self._unread = (following, self._handed_at) if following is not None else None
        if code != 250:
            self._fail(code, resp)
        return f"{self.label} ({code} {resp.decode('utf-8', 'replace')[:80]})"

    def _read_ahead(self) -> None:
        """Read the answers to the envelope that went ahead with the last final dot."""
        if self._unread is None:
            return
        (route, sent_at), self._unread = self._unread, None
        try:
            self._prepared = (route, [self._reply() for _ in range(3)], sent_at)
        except TimeoutError:
            # A server that says PIPELINING but drops what follows a message's final dot:
            # never again ahead on this transport, or every message would wait this long.
            self._ahead = False
            self._drop()
        except OSError:
            self._drop()  # the last message has its answer; the next one starts on a new connection

    def send(self, envelope: Envelope, *, group: str = "", then: Route | None = None) -> str:
        """Hand one message over and wait for the answer."""
        self.start(envelope, group=group, then=then)
        self.commit()
        return self.finish()

    def _reset(self) -> None:
        try:
            self.sock.sendall(b"RSET\r\n")
            self._reply()
        except OSError:
            self._drop()

    def _fail(self, code: int, resp: bytes | str) -> None:
        text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
        message = f"{code} {text}".strip()
        slow = throttled(code, text)
        if slow is not None:
            raise slow
        refusal = config_refusal(code, text, label=self.label, xoauth2=self.config.auth == "xoauth2")
        if refusal is not None:
            raise refusal
        if 400 <= code < 500:
            raise TemporaryFailure(message)
        raise PermanentFailure(message, user_unknown=user_unknown(code, text))

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # the socket is gone already
                pass
        self.conn = self.sock = None
        self._buf = b""
        self._prepared = self._next = self._then = self._unread = None
        self._inflight = self._body = False

    def close(self) -> None:
        if (self.conn is not None and self._prepared is None and self._unread is None and not self._inflight
                and not self._body):
            try:
                self.sock.sendall(b"QUIT\r\n")
                self._reply()
            except OSError:
                pass
        # With a message awaited, QUIT would be read as its data: closing ends it unsent.
        self._drop()


def open_transport(config: TransportConfig, *, outbox: Path, env: Mapping[str, str] | None = None,
                   interrupted: Callable[[], bool] | None = None, oauth=None):  # type: ignore[no-untyped-def]
    """The transport object for ``config``; ``interrupted`` says when to stop waiting for a server;
    ``oauth`` is ``[oauth]`` from settings.toml (tenant, client id) for XOAUTH2."""
    if config.kind == "outbox":
        return OutboxTransport(outbox)
    return SmtpTransport(config, env=env, interrupted=interrupted, oauth=oauth)
