"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives.

Its answers can be scripted per recipient: a 4xx first, a 5xx, a dropped connection after
the message was handed over, or a slow answer to the final dot (``delay-dot:SECONDS``);
``refuse_all`` answers every recipient the same way (a relay that refuses everyone).
:class:`SilentServer` accepts connections and never greets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import socket
import ssl
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from email import policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Recorder:
    """The handler: keeps every accepted message; ``script`` maps a recipient to answers to give first."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)  # every recipient the server accepted, message or not
    script: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    pipelining: bool = True
    refuse_all: str | None = None  # an answer to every RCPT, e.g. "550 5.7.1 ... Access denied"
    # A delayed answer waits for this (or its delay): set at the end of a test to free the server.
    release: threading.Event = field(default_factory=threading.Event)
    data_started: threading.Event = field(default_factory=threading.Event)  # a DATA has been received

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads commands line by line, so pipelined commands work; it just does not say so.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_all:
            return self.refuse_all.replace("{rcpt}", address)
        answers = self.script.get(address.lower())
        if answers and answers[0].startswith(("4", "5")):
            return answers.pop(0)
        envelope.rcpt_tos.append(address)
        with self.lock:
            self.rcpts.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_started.set()
        for rcpt in envelope.rcpt_tos:
            answers = self.script.get(rcpt.lower())
            if answers and answers[0].startswith("delay-dot:"):
                delay = float(answers.pop(0).partition(":")[2])
                # The server takes the message (a real one queues it first), and answers the
                # final dot only after the delay (a slow content scan).
                with self.lock:
                    self.raw.append(envelope.content)
                    self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
                await asyncio.get_running_loop().run_in_executor(None, self.release.wait, delay)
                return "250 Message accepted after a while"
            if answers and answers[0] == "drop-after-data":
                answers.pop(0)
                # The message arrived; the answer never does.
                with self.lock:
                    self.raw.append(envelope.content)
                    self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
                server.transport.close()
                return "250 never seen"
        with self.lock:
            self.raw.append(envelope.content)
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


@dataclass
class OAuthRecorder(Recorder):
    """A Recorder whose server takes SASL XOAUTH2 (the only login it offers): ``check(token)``
    says whether a bearer token is good. A refused token gets Gmail's JSON challenge, then
    Exchange's ``535 5.7.3``, as those servers answer."""

    check: object = None  # Callable[[str], bool]
    logins: list[str] = field(default_factory=list)  # the users whose token was accepted
    refused: int = 0

    async def auth_XOAUTH2(self, server, args):
        import base64
        import json

        if len(args) != 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 XOAUTH2 wants an initial response")
        fields = dict(part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        good = await asyncio.get_running_loop().run_in_executor(None, self.check, token)
        if good:
            with self.lock:
                self.logins.append(user)
            return AuthResult(success=True, handled=False)
        with self.lock:
            self.refused += 1
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")


class Server:
    def __init__(self, *, tls_context: ssl.SSLContext | None = None, users: dict[str, str] | None = None,
                 pipelining: bool = True, port: int | None = None, recorder: Recorder | None = None,
                 oauth=None, auth_refusal: str | None = None, host: str = "127.0.0.1") -> None:  # noqa: ANN001
        """``oauth``: a check(token) -> bool; the server then offers XOAUTH2 only and requires it.
        ``auth_refusal``: every password login gets this answer (e.g. Exchange's 5.7.30)."""
        if oauth is not None:
            self.recorder = recorder or OAuthRecorder(pipelining=pipelining, check=oauth)
        else:
            self.recorder = recorder or Recorder(pipelining=pipelining)
        self.port = port or free_port()
        self.host = host
        kwargs = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if users is not None or auth_refusal is not None:
            def authenticator(server, session, envelope, mechanism, auth_data):
                if auth_refusal is not None:
                    return AuthResult(success=False, handled=False, message=auth_refusal)
                ok = isinstance(auth_data, LoginPassword) and users.get(auth_data.login.decode()) == auth_data.password.decode()
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_required=True)
        if oauth is not None:
            kwargs.update(auth_required=True, auth_exclude_mechanism=["LOGIN", "PLAIN"])
        self.controller = Controller(self.recorder, hostname=host, port=self.port, **kwargs)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def __enter__(self) -> "Server":
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.release.set()
        self.controller.stop()


class SilentServer:
    """Accepts TCP connections and never says a word (no greeting): a hung mail server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            self.accepted.set()

    def __enter__(self) -> "SilentServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.sock.close()
        for client in self.clients:
            client.close()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
