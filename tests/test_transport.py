"""The SMTP transport against a server that gets pipelining after a message wrong."""

from __future__ import annotations

import socketserver
import threading

from mailer.message import Envelope
from mailer.transport import SmtpTransport, TransportConfig


class PipeliningHandler(socketserver.BaseRequestHandler):
    """A minimal hand-written SMTP server that says PIPELINING; subclasses misbehave in the
    two hooks."""

    name = b"pipelining"
    buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.request.recv(65536)
            if not chunk:
                raise ConnectionError
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def stored(self) -> None:
        """A message's final dot was answered."""

    def before(self, command: bytes) -> None:
        """A command is about to be answered."""

    def handle(self) -> None:
        sock = self.request
        sock.sendall(b"220 " + self.name + b"\r\n")
        try:
            while True:
                command = self.line().upper()
                if command.startswith(b"EHLO"):
                    sock.sendall(b"250-" + self.name + b"\r\n250 PIPELINING\r\n")
                    continue
                self.before(command)
                if command.startswith((b"MAIL", b"RCPT", b"RSET")):
                    sock.sendall(b"250 OK\r\n")
                elif command == b"DATA":
                    sock.sendall(b"354 go on\r\n")
                    body = []
                    while (text := self.line()) != b".":
                        body.append(text)
                    self.server.messages.append(b"\r\n".join(body))
                    sock.sendall(b"250 stored\r\n")
                    self.stored()
                elif command == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"500 what\r\n")
        except (ConnectionError, OSError):
            return


class ForgetfulHandler(PipeliningHandler):
    """Says PIPELINING, but throws away whatever arrived after a message's final dot."""

    name = b"forgetful"

    def handle(self) -> None:
        self.server.connections += 1
        super().handle()

    def stored(self) -> None:
        self.buf = b""  # the bug: pipelined commands after the dot are lost


def test_a_server_that_loses_commands_after_the_dot_gets_no_more_envelopes_ahead():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), ForgetfulHandler)
    server.daemon_threads = True
    server.messages = []
    server.connections = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = TransportConfig(kind="smtp", host="127.0.0.1", port=server.server_address[1])
        transport = SmtpTransport(config, env={}, timeout=1)
        envelopes = [Envelope(sender="z@example.org", recipient=f"r{i}@example.nl", message_id=f"<{i}@x>",
                              data=f"Subject: {i}\r\n\r\nbericht {i}\r\n".encode()) for i in range(4)]
        routes = [(e.sender, e.recipient) for e in envelopes]
        # The first message's answer comes; the envelope sent ahead with it is never answered.
        transport.send(envelopes[0], then=routes[1])
        for k in (1, 2, 3):
            transport.send(envelopes[k], then=routes[k + 1] if k < 3 else None)
        transport.close()
        # The lost envelope cost one connection (closed after the timeout); without the
        # fallback every later envelope sent ahead would be lost too, each with its connection.
        assert server.connections == 2
        assert [m.split(b"\r\n\r\n")[1] for m in server.messages] == [f"bericht {i}".encode() for i in range(4)]
    finally:
        server.shutdown()
        server.server_close()



class HoldingHandler(PipeliningHandler):
    """Answers a message's final dot at once, but holds the answers to the envelope pipelined
    after it until the test lets them go (as a server busy checking a recipient would)."""

    name = b"holding"
    held = False

    def stored(self) -> None:
        self.held = True

    def before(self, command: bytes) -> None:
        if self.held and command.startswith(b"MAIL"):
            self.server.release.wait(10)


def test_the_answer_to_the_dot_is_had_without_waiting_for_the_envelope_sent_ahead():
    """A kill between the server's 250 and the journal sends that message again on the next
    start: the answer must reach the worker (which journals it at once) without first waiting
    for the answers to the next message's MAIL, RCPT and DATA, however long those take."""
    import time

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), HoldingHandler)
    server.daemon_threads = True
    server.messages = []
    server.release = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = TransportConfig(kind="smtp", host="127.0.0.1", port=server.server_address[1])
        transport = SmtpTransport(config, env={}, timeout=5)
        envelopes = [Envelope(sender="z@example.org", recipient=f"r{i}@example.nl", message_id=f"<{i}@x>",
                              data=f"Subject: {i}\r\n\r\nbericht {i}\r\n".encode()) for i in range(2)]
        transport.start(envelopes[0])
        transport.commit(then=(envelopes[1].sender, envelopes[1].recipient))
        began = time.monotonic()
        answer = transport.finish()
        waited = time.monotonic() - began
        assert "250" in answer
        assert waited < 2, f"the answer to the dot waited {waited:.1f} s for the next envelope's answers"
        server.release.set()
        transport.start(envelopes[1])
        transport.commit()
        transport.finish()
        transport.close()
        assert [m.split(b"\r\n\r\n")[1] for m in server.messages] == [b"bericht 0", b"bericht 1"]
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
