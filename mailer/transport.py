"""Where messages go: the outbox folder (default) or an SMTP server from ``CAMPAIGN_SMTP_URL``.

The password only ever comes from ``CAMPAIGN_SMTP_PASSWORD``; it is never stored, printed
or put in a label.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import smtplib
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import DeliveryError
from .message import Envelope

USER_UNKNOWN_CODES = {"5.1.1", "5.1.0", "5.1.10"}
USER_UNKNOWN_WORDS = ("user unknown", "unknown user", "no such user", "does not exist", "mailbox unavailable",
                      "recipient address rejected", "not found")


class TemporaryFailure(Exception):
    """A 4xx answer, or a connection that failed before the message was handed over: retry later."""


class PermanentFailure(Exception):
    """A 5xx answer: do not retry. ``user_unknown`` marks an address that does not exist."""

    def __init__(self, message: str, *, user_unknown: bool = False) -> None:
        super().__init__(message)
        self.user_unknown = user_unknown


class UnknownOutcome(Exception):
    """The connection was lost after the message was handed over: it may or may not have arrived."""


@dataclass(frozen=True)
class TransportConfig:
    kind: str  # "outbox" or "smtp"
    host: str = ""
    port: int = 0
    implicit_tls: bool = False
    username: str = ""

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
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise DeliveryError(f"CAMPAIGN_SMTP_URL: expected smtp://[user@]host[:port] or smtps://..., got scheme {parts.scheme!r}")
    if parts.password:
        raise DeliveryError("CAMPAIGN_SMTP_URL holds a password; put it in CAMPAIGN_SMTP_PASSWORD instead")
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 587)
    except ValueError:
        raise DeliveryError("CAMPAIGN_SMTP_URL: the port is not a number") from None
    return TransportConfig(kind="smtp", host=parts.hostname, port=port, implicit_tls=implicit,
                           username=urllib.parse.unquote(parts.username or ""))


class OutboxTransport:
    """One ``.eml`` per message; the name comes from the Message-ID, so a resend overwrites."""

    label = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, envelope: Envelope, *, group: str = "") -> str:
        target = self.folder / group if group else self.folder
        target.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(envelope.message_id.encode()).hexdigest()[:24] + ".eml"
        path = target / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.data)
        os.replace(tmp, path)  # atomic: a crash never leaves half a message
        return str(path)

    def close(self) -> None:
        pass


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca = env.get("CAMPAIGN_SMTP_CA_FILE")
    if ca:
        ctx.load_verify_locations(cafile=ca)
    return ctx


class SmtpTransport:
    """One connection reused for many messages, reopened when it drops."""

    def __init__(self, config: TransportConfig, *, env: Mapping[str, str] | None = None, timeout: float = 30) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self.password = self.env.get("CAMPAIGN_SMTP_PASSWORD", "")
        self.timeout = timeout
        self.conn: smtplib.SMTP | None = None
        self.label = config.label

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        ctx = _ssl_context(self.env)
        try:
            if c.implicit_tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=self.timeout, context=ctx)
            else:
                conn = smtplib.SMTP(c.host, c.port, timeout=self.timeout)
            conn.ehlo()
            tls = c.implicit_tls
            if not tls and conn.has_extn("starttls"):
                conn.starttls(context=ctx)
                conn.ehlo()
                tls = True
            if c.username:
                if not tls and not c.loopback:
                    conn.close()
                    raise DeliveryError(f"{c.label} offers no TLS; refusing to send the password unencrypted")
                if not self.password:
                    conn.close()
                    raise DeliveryError(f"{c.label} needs a password: set CAMPAIGN_SMTP_PASSWORD")
                conn.login(c.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{c.label}: login refused ({exc.smtp_code})") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"{c.label}: TLS failed: {exc.reason or exc}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"{c.label}: cannot connect: {exc}") from None
        return conn

    def open(self) -> None:
        """Connect now, so that a wrong setting shows before any message is claimed."""
        if self.conn is None:
            self.conn = self._connect()

    def send(self, envelope: Envelope, *, group: str = "", retried: bool = False) -> str:
        if self.conn is None:
            self.conn = self._connect()
        conn = self.conn
        options = " SMTPUTF8" if _needs_utf8(envelope) else ""
        commands = [f"MAIL FROM:<{envelope.sender}>{options}", f"RCPT TO:<{envelope.recipient}>"]
        try:
            if conn.has_extn("pipelining"):
                # RFC 2920: MAIL, RCPT and DATA in one write, their answers read in order.
                conn.send("".join(c + "\r\n" for c in commands + ["DATA"]))
                replies = [conn.getreply() for _ in range(3)]
            else:
                replies = []
                for c in commands:
                    conn.putcmd(c)
                    replies.append(conn.getreply())
                    if replies[-1][0] not in (250, 251):
                        break
                else:
                    conn.putcmd("DATA")
                    replies.append(conn.getreply())
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            # Nothing was handed over yet, so trying again is safe: at once on a fresh connection
            # when this one had gone stale, else later.
            if not retried:
                return self.send(envelope, group=group, retried=True)
            raise TemporaryFailure(f"connection lost before the message was sent: {exc}") from None
        for (code, resp), ok in zip(replies, ((250,), (250, 251), (354,))):
            if code not in ok:
                if code == 354:  # the server awaits data we will not send: end it empty, then reset
                    self._abort_data()
                else:
                    self._reset()
                self._fail(code, resp)
        # RFC 5321 4.5.2: a line that starts with a dot gets another one.
        data = envelope.data
        if data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        try:
            conn.send(data + b".\r\n")
            code, resp = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise UnknownOutcome(f"connection lost while the message was handed over: {exc}") from None
        if code != 250:
            self._fail(code, resp)
        return f"{self.config.label} ({code} {resp.decode('utf-8', 'replace')[:80]})"

    def _reset(self) -> None:
        try:
            self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _abort_data(self) -> None:
        # A server that said 354 must get a message; an empty one after a failed RCPT is refused
        # by it (no valid recipients), which is what we want.
        try:
            self.conn.send(b".\r\n")
            self.conn.getreply()
        except (smtplib.SMTPException, OSError):
            self._drop()
            return
        self._reset()

    def _fail(self, code: int, resp: bytes | str) -> None:
        text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
        message = f"{code} {text}".strip()
        if 400 <= code < 500:
            raise TemporaryFailure(message)
        lowered = text.lower()
        unknown = code in (550, 551, 553) and (any(c in text for c in USER_UNKNOWN_CODES) or any(w in lowered for w in USER_UNKNOWN_WORDS))
        raise PermanentFailure(message, user_unknown=unknown)

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # the socket is gone already
                pass
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()


def _needs_utf8(envelope: Envelope) -> bool:
    return not (envelope.sender.isascii() and envelope.recipient.isascii())


def open_transport(config: TransportConfig, *, outbox: Path, env: Mapping[str, str] | None = None):
    """The transport object for ``config``."""
    if config.kind == "outbox":
        return OutboxTransport(outbox)
    return SmtpTransport(config, env=env)
