"""The SMTP transport against a server that gets pipelining after a message wrong."""

from __future__ import annotations

import socketserver
import threading

from mailer.message import Envelope
from mailer.transport import SmtpTransport, TransportConfig


class LineHandler(socketserver.BaseRequestHandler):
    """A hand-written SMTP server's connection: lines read from a buffer it may drop."""

    buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.request.recv(65536)
            if not chunk:
                raise ConnectionError
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out


class ForgetfulHandler(LineHandler):
    """Says PIPELINING, but throws away whatever arrived after a message's final dot."""

    def handle(self) -> None:
        sock, line = self.request, self.line
        self.server.connections += 1
        sock.sendall(b"220 forgetful\r\n")
        try:
            while True:
                command = line().upper()
                if command.startswith(b"EHLO"):
                    sock.sendall(b"250-forgetful\r\n250 PIPELINING\r\n")
                elif command.startswith((b"MAIL", b"RCPT", b"RSET")):
                    sock.sendall(b"250 OK\r\n")
                elif command == b"DATA":
                    sock.sendall(b"354 go on\r\n")
                    body = []
                    while (text := line()) != b".":
                        body.append(text)
                    self.server.messages.append(b"\r\n".join(body))
                    sock.sendall(b"250 stored\r\n")
                    self.buf = b""  # the bug: pipelined commands after the dot are lost
                elif command == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"500 what\r\n")
        except (ConnectionError, OSError):
            return


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



class HoldingHandler(LineHandler):
    """Answers a message's final dot at once, but holds the answers to the envelope pipelined
    after it until the test lets them go (as a server busy checking a recipient would)."""

    def handle(self) -> None:
        sock, line = self.request, self.line
        sock.sendall(b"220 holding\r\n")
        held = False
        try:
            while True:
                command = line().upper()
                if command.startswith(b"EHLO"):
                    sock.sendall(b"250-holding\r\n250 PIPELINING\r\n")
                    continue
                if held and command.startswith(b"MAIL"):
                    self.server.release.wait(10)
                if command.startswith((b"MAIL", b"RCPT", b"RSET")):
                    sock.sendall(b"250 OK\r\n")
                elif command == b"DATA":
                    sock.sendall(b"354 go on\r\n")
                    body = []
                    while (text := line()) != b".":
                        body.append(text)
                    self.server.messages.append(b"\r\n".join(body))
                    sock.sendall(b"250 stored\r\n")
                    held = True
                elif command == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"500 what\r\n")
        except (ConnectionError, OSError):
            return


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
