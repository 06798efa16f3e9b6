"""A real OAuth2 token service on 127.0.0.1 over HTTPS (a test certificate), shaped like
Microsoft's: ``/{tenant}/v2.0/.well-known/openid-configuration`` and the client-credentials grant
at ``/{tenant}/oauth2/v2.0/token``, answering with short-lived opaque tokens. ``/introspect``
(RFC 7662, form POST ``token=...``) tells a mail server whether a token is good: the SMTP test
server and Dovecot's oauth2 passdb both ask it. Tokens can be revoked, the client disabled.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .smtp_server import make_certificate

TENANT = "contoso-test-tenant"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "s3cret-Client-Value~never-to-be-shown"
MAILBOX = "campagne@zender.test-org.nl"


class TokenService:
    def __init__(self, folder: Path, *, lifetime: int = 3600) -> None:
        self.cert, self.key = make_certificate(folder)
        self.lifetime = lifetime
        self.tokens: dict[str, float] = {}  # token -> when it expires (time.time)
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.disabled = False  # the app's secret was withdrawn: the grant is refused
        self.introspections = 0
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                base = f"https://127.0.0.1:{service.port}/{TENANT}"
                if self.path.startswith(f"/{TENANT}/v2.0/.well-known/openid-configuration"):
                    self._json(200, {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path == f"/{TENANT}/oauth2/v2.0/token":
                    if (form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT_ID
                            or form.get("client_secret") != CLIENT_SECRET or service.disabled):
                        self._json(401, {"error": "invalid_client",
                                         "error_description": "AADSTS7000215: Invalid client secret provided."})
                        return
                    token = "tok-" + secrets.token_urlsafe(24)
                    with service.lock:
                        service.tokens[token] = time.time() + service.lifetime
                        service.issued.append(token)
                    self._json(200, {"token_type": "Bearer", "expires_in": service.lifetime, "access_token": token})
                elif self.path == "/introspect":
                    self._json(200, service.introspect(form.get("token", "")))
                else:
                    self._json(404, {"error": "not_found"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def introspection_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/introspect"

    def introspect(self, token: str) -> dict:
        with self.lock:
            self.introspections += 1
            good = token in self.tokens and token not in self.revoked and time.time() < self.tokens[token]
        return {"active": True, "username": MAILBOX, "scope": "https://outlook.office365.com/.default"} if good \
            else {"active": False}

    def check_over_https(self, token: str) -> bool:
        """What a mail server does: ask /introspect over HTTPS, verifying the certificate."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        data = urllib.parse.urlencode({"token": token}).encode()
        with urllib.request.urlopen(self.introspection_url, data=data, context=ctx, timeout=10) as answer:
            return json.loads(answer.read()).get("active") is True

    def revoke_all(self) -> None:
        with self.lock:
            self.revoked.update(self.tokens)

    def env(self) -> dict[str, str]:
        """The environment a staff member sets for the built-in Microsoft 365 provider."""
        return {"CAMPAIGN_OAUTH_TENANT": TENANT, "CAMPAIGN_OAUTH_CLIENT_ID": CLIENT_ID,
                "CAMPAIGN_OAUTH_CLIENT_SECRET": CLIENT_SECRET, "CAMPAIGN_OAUTH_AUTHORITY": self.authority,
                "CAMPAIGN_OAUTH_CA_FILE": str(self.cert)}

    def __enter__(self) -> "TokenService":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
