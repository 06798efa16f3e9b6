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
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import DeliveryError
from .message import Envelope

Route = tuple[str, str]  # (envelope sender, recipient)
# A server may drop a client that takes minutes to send the data it announced (RFC 5321
# 4.5.3.2): an envelope opened ahead of time is used only while it is this fresh.
PREPARED_MAX_AGE = 10.0

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
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:
        # The URL is not repeated: it may hold a password.
        raise DeliveryError(f"CAMPAIGN_SMTP_URL is not a valid URL ({exc}); expected smtp://[user@]host[:port] "
                            "or smtps://[user@]host[:port]") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise DeliveryError(f"CAMPAIGN_SMTP_URL: expected smtp://[user@]host[:port] or smtps://..., got scheme {parts.scheme!r}")
    if not hostname:
        raise DeliveryError("CAMPAIGN_SMTP_URL names no host; expected smtp://[user@]host[:port] or smtps://...")
    if parts.password:
        raise DeliveryError("CAMPAIGN_SMTP_URL holds a password; put it in CAMPAIGN_SMTP_PASSWORD instead")
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 587)
    except ValueError:
        raise DeliveryError("CAMPAIGN_SMTP_URL: the port must be a number from 0-65535 (e.g. 587 or 465)") from None
    # A bad CA file shows now, in any command, rather than when the first message is due.
    _ssl_context(env)
    return TransportConfig(kind="smtp", host=hostname, port=port, implicit_tls=implicit,
                           username=urllib.parse.unquote(parts.username or ""))


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
            raise DeliveryError(f"could not write {exc.filename or path}: {exc.strerror}; the message was not "
                                "written to the outbox") from None
        return str(path)

    # The worker's two-phase interface: a file is written at once, so it is always ready.
    def start(self, envelope: Envelope, *, group: str = "", then: Route | None = None) -> None:
        self._result = self.send(envelope, group=group)

    def finish(self) -> str:
        return self._result

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca = env.get("CAMPAIGN_SMTP_CA_FILE")
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:  # before OSError, of which it is a kind
            raise DeliveryError(f"CAMPAIGN_SMTP_CA_FILE={ca}: no certificate could be read from it "
                                f"({exc.reason or exc}); it must hold PEM certificates") from None
        except OSError as exc:
            raise DeliveryError(f"CAMPAIGN_SMTP_CA_FILE={ca}: {exc.strerror}; point it at a PEM file of "
                                "CA certificates, or unset it to trust the system's") from None
    return ctx


class SmtpTransport:
    """One connection reused for many messages, reopened when it drops.

    A message is handed over in two steps, so that a worker can keep several connections busy
    from one thread: :meth:`start` writes it, :meth:`finish` reads the server's answer. With
    PIPELINING (RFC 2920) the MAIL, RCPT and DATA commands of the message expected next on
    this connection (``then``) follow the end of this message's data in the same write, so a
    message costs one round trip instead of two. Only the data of one message is ever in
    flight: the next one's data is written only after its own ``start``. When that next
    message does not come after all, the connection is closed without a final dot, which the
    server takes as no message (RFC 5321 4.1.1.4).
    """

    def __init__(self, config: TransportConfig, *, env: Mapping[str, str] | None = None, timeout: float = 30) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self.password = self.env.get("CAMPAIGN_SMTP_PASSWORD", "")
        self.timeout = timeout
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
            # smtplib has read every answer it asked for; from here the transport reads the
            # socket itself, which lets a worker wait on several connections at once.
            self.sock = self.conn.sock
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
        """One (multi-line) answer: its code and text. OSError when the connection is gone."""
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
        """Write ``envelope``; its answer comes from :meth:`finish`. Raises TemporaryFailure or
        PermanentFailure when the server refuses it before any of its data was written."""
        route = (envelope.sender, envelope.recipient)
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
            raise TemporaryFailure(f"connection lost before the message was sent: {exc}") from None
        for (code, resp), ok in zip(replies, ((250,), (250, 251), (354,))):
            if code not in ok:
                if replies[-1][0] == 354:
                    self._drop()  # the server awaits data for a half-refused envelope: end it unsent
                else:
                    self._reset()
                self._fail(code, resp)
        payload = envelope.payload() + b".\r\n"
        self._next = then if (then is not None and self._pipelining and self._ahead
                              and (self._utf8 or all(map(str.isascii, then)))) else None
        if self._next is not None:
            payload += self._commands(self._next)
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            self._drop()
            raise UnknownOutcome(f"connection lost while the message was handed over: {exc}") from None
        self._inflight = True

    def finish(self) -> str:
        """The answer to the message :meth:`start` wrote; raises as :meth:`start` does, or
        UnknownOutcome when the connection was lost before the answer came."""
        self._inflight = False
        following, self._next = self._next, None
        try:
            code, resp = self._reply()
        except OSError as exc:
            self._drop()
            raise UnknownOutcome(f"connection lost while the message was handed over: {exc}") from None
        if following is not None:
            try:
                self._prepared = (following, [self._reply() for _ in range(3)], time.monotonic())
            except TimeoutError:
                # A server that says PIPELINING but drops what follows a message's final dot:
                # never again ahead on this transport, or every message would wait this long.
                self._ahead = False
                self._drop()
            except OSError:
                self._drop()  # this message has its answer; the next one starts on a new connection
        if code != 250:
            self._fail(code, resp)
        return f"{self.label} ({code} {resp.decode('utf-8', 'replace')[:80]})"

    def send(self, envelope: Envelope, *, group: str = "", then: Route | None = None) -> str:
        """Hand one message over and wait for the answer."""
        self.start(envelope, group=group, then=then)
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
        self.conn = self.sock = None
        self._buf = b""
        self._prepared = self._next = None
        self._inflight = False

    def close(self) -> None:
        if self.conn is not None and self._prepared is None and not self._inflight:
            try:
                self.sock.sendall(b"QUIT\r\n")
                self._reply()
            except OSError:
                pass
        # With a message awaited, QUIT would be read as its data: closing ends it unsent.
        self._drop()


def open_transport(config: TransportConfig, *, outbox: Path, env: Mapping[str, str] | None = None):
    """The transport object for ``config``."""
    if config.kind == "outbox":
        return OutboxTransport(outbox)
    return SmtpTransport(config, env=env)
