"""OAuth2 access tokens for SMTP and IMAP (SASL XOAUTH2), as Exchange Online and Gmail want them.

Two sources, both configured without a secret in any file:

* a token command (``CAMPAIGN_OAUTH_TOKEN_COMMAND``), run without a shell, whose standard
  output is the access token: it works with any provider and any helper (msmtp's
  ``passwordeval``, mbsync's ``PassCmd``);
* Microsoft 365's client-credentials grant for an app registration (tenant and client id from
  ``[oauth]`` in settings.toml or the environment, the secret from ``CAMPAIGN_OAUTH_CLIENT_SECRET``),
  through msal. Tokens are kept in memory and renewed before they expire, so a worker that runs
  for weeks keeps connecting.

A token or secret never appears in a message, a log line, ``repr()`` or an exception.
"""

from __future__ import annotations

import abc
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .i18n import _
from .errors import SettingsError, TokenError

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# The scope that carries SMTP.SendAsApp and IMAP.AccessAsApp for Exchange Online.
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
# Renew a token when less than this part of its life is left (and never later than 5 minutes
# before it ends): a connection made with an almost expired token may be refused half-way.
RENEW_FRACTION = 0.25
RENEW_MAX_SECONDS = 300.0
COMMAND_TIMEOUT = 60.0
MECHANISMS = ("password", "xoauth2")


@dataclass(frozen=True)
class OAuthSettings:
    """What ``[oauth]`` in settings.toml says: no secrets, only where the token comes from."""

    tenant: str = ""
    client_id: str = ""
    authority: str = ""  # the token service's base URL; Microsoft's unless told otherwise
    scope: str = EXCHANGE_SCOPE


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft document it."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


class TokenProvider(abc.ABC):
    """Gives an access token, from memory while it is fresh; ``invalidate`` forgets it (after a
    server refused it). ``source`` names where tokens come from, for messages."""

    source = ""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._token = ""
        self._expires = 0.0
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        return f"<{type(self).__name__} from {self.source}>"

    def token(self) -> str:
        with self._lock:
            if not self._token or self.clock() >= self._renew_at:
                token, lifetime = self._fetch()
                now = self.clock()
                self._token = token
                self._expires = now + lifetime if lifetime else 0.0
                margin = min(RENEW_MAX_SECONDS, lifetime * RENEW_FRACTION)
                # Without a known lifetime, a token is fetched for every connection.
                self._renew_at = now + lifetime - margin if lifetime else now
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = ""
            self._renew_at = 0.0

    @abc.abstractmethod
    def _fetch(self) -> tuple[str, float]:
        """A fresh token and its lifetime in seconds (0 when unknown)."""


class CommandTokens(TokenProvider):
    """Runs ``CAMPAIGN_OAUTH_TOKEN_COMMAND`` (split like a shell would, run without one) and takes
    the first line of its output as the token. The command keeps its own cache, as helpers such
    as oama or mutt_oauth2.py do, so it is asked again for every connection."""

    source = "CAMPAIGN_OAUTH_TOKEN_COMMAND"

    def __init__(self, command: str, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise SettingsError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND cannot be split into words ({exc}); quote it as you "
                                  "would in a shell").format(exc=exc)) from None
        if not self.argv:
            raise SettingsError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND is empty; set it to a command that prints an access "
                                  "token"))
        self.env = dict(os.environ if env is None else env)

    def _fetch(self) -> tuple[str, float]:
        name = self.argv[0]
        try:
            done = subprocess.run(self.argv, capture_output=True, timeout=COMMAND_TIMEOUT, env=self.env,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise TokenError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND: the program {name} was not found; give its full path "
                               "(the command runs without a shell)").format(name=repr(name))) from None
        except PermissionError:
            raise TokenError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND: the program {name} may not be run (permission denied); "
                                "make it executable").format(name=repr(name))) from None
        except subprocess.TimeoutExpired:
            raise TokenError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND: {name} printed no token within {COMMAND_TIMEOUT} s; run "
                                "it by hand to see what it waits for").format(
                                    name=repr(name), COMMAND_TIMEOUT=format(COMMAND_TIMEOUT, ".0f")),
                             temporary=True) from None
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        if done.returncode != 0:
            # Its error output is not repeated: a helper may print a secret there.
            raise TokenError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND: {name} failed with exit status {returncode}; run it by "
                                "hand to see why").format(name=repr(name), returncode=done.returncode)) from None
        if not lines or not lines[0].strip():
            raise TokenError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND: {name} printed no token; it must print the access token "
                                "on its first line").format(name=repr(name))) from None
        token = lines[0].strip()
        if any(ch.isspace() or not ch.isprintable() for ch in token) or not token.isascii():
            raise TokenError(_("CAMPAIGN_OAUTH_TOKEN_COMMAND: the first line {name} printed is not an access token (it "
                                "holds spaces or characters a token never has)").format(name=repr(name))) from None
        return token, 0.0


class MicrosoftClientCredentials(TokenProvider):
    """The client-credentials grant of a Microsoft Entra app registration, through msal.

    ``authority`` may point at another token service of the same shape (the tests run one on
    127.0.0.1); then msal neither validates it nor asks Microsoft's instance discovery.
    ``ca_file`` is an extra CA to verify the token service with."""

    source = "the Microsoft 365 app registration"

    def __init__(self, *, tenant: str, client_id: str, secret: str, authority: str = "", scope: str = EXCHANGE_SCOPE,
                 ca_file: str = "", clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.tenant = tenant
        self.client_id = client_id
        self.scope = scope
        base = (authority or DEFAULT_AUTHORITY).rstrip("/")
        self.authority = f"{base}/{tenant}"
        self.custom = base != DEFAULT_AUTHORITY
        self._secret = secret
        self._ca_file = ca_file
        self._app = None
        self.source = f"the Microsoft 365 app registration {client_id} (tenant {tenant})"

    def _application(self):  # type: ignore[no-untyped-def]
        if self._app is None:
            import msal  # heavy: only when a token is needed

            kwargs = {}
            if self.custom:
                kwargs.update(validate_authority=False, instance_discovery=False)
            if self._ca_file:
                import functools

                import requests

                # requests lets REQUESTS_CA_BUNDLE override a session's own verify setting
                # (requests issue 3829); given with each request, the CA file holds.
                session = requests.Session()
                session.request = functools.partial(session.request, verify=self._ca_file, timeout=30)  # type: ignore[method-assign]
                kwargs.update(http_client=session)
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._secret, authority=self.authority, timeout=30, **kwargs)
            except ValueError as exc:
                raise TokenError(_("the token service {authority} cannot be used: {exc}; check [oauth] tenant and "
                                   "authority (or CAMPAIGN_OAUTH_TENANT / CAMPAIGN_OAUTH_AUTHORITY)").format(
                                        authority=self.authority, exc=exc)) from None
            except Exception as exc:  # requests' errors while msal reads the authority's metadata
                raise TokenError(_("the token service {authority} could not be reached: {error_type}; trying again "
                                   "later").format(
                    authority=self.authority, error_type=type(exc).__name__), temporary=True) from None
        return self._app

    def invalidate(self) -> None:
        super().invalidate()
        if self._app is not None:
            self._app.remove_tokens_for_client()

    def _fetch(self) -> tuple[str, float]:
        app = self._application()
        # This provider's cache decides when to renew (on the injected clock); msal would hand
        # back its own cached token until 5 minutes before the end, so it is asked afresh.
        app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except Exception as exc:  # requests' connection and TLS errors
            raise TokenError(_("the token service {authority} could not be reached: {error_type}; trying again "
                               "later").format(
                authority=self.authority, error_type=type(exc).__name__), temporary=True) from None
        if "access_token" not in result:
            error = str(result.get("error", "unknown error"))
            # Microsoft's description starts with its AADSTS code and a sentence; the trace ids after it
            # are of no use here. It never holds the secret.
            description = str(result.get("error_description", "")).splitlines()[0][:300] if result.get(
                "error_description") else ""
            raise TokenError(
                f"{self.source} got no token from {self.authority}: {error}"
                + (f" ({description})" if description else "")
                + "; check the client id, the tenant and CAMPAIGN_OAUTH_CLIENT_SECRET (a secret that expired must be "
                  "renewed under Certificates & secrets), and that admin consent was granted")
        try:
            lifetime = float(result.get("expires_in", 0))
        except (TypeError, ValueError):
            lifetime = 0.0
        return str(result["access_token"]), lifetime


def oauth_settings_from(env: Mapping[str, str], settings: OAuthSettings | None) -> OAuthSettings:
    """``[oauth]`` from settings.toml, each value replaced by its environment variable when set."""
    base = settings or OAuthSettings()
    return OAuthSettings(tenant=env.get("CAMPAIGN_OAUTH_TENANT", "").strip() or base.tenant,
                         client_id=env.get("CAMPAIGN_OAUTH_CLIENT_ID", "").strip() or base.client_id,
                         authority=env.get("CAMPAIGN_OAUTH_AUTHORITY", "").strip() or base.authority,
                         scope=env.get("CAMPAIGN_OAUTH_SCOPE", "").strip() or base.scope)


def token_provider(env: Mapping[str, str], settings: OAuthSettings | None = None, *,
                   clock: Callable[[], float] = time.time) -> TokenProvider:
    """The token source the environment and ``[oauth]`` name; SettingsError when none is complete."""
    command = env.get("CAMPAIGN_OAUTH_TOKEN_COMMAND", "").strip()
    if command:
        return CommandTokens(command, env=env, clock=clock)
    s = oauth_settings_from(env, settings)
    secret = env.get("CAMPAIGN_OAUTH_CLIENT_SECRET", "")
    if s.tenant or s.client_id:
        missing = [name for name, value in (("tenant (CAMPAIGN_OAUTH_TENANT or [oauth] tenant)", s.tenant),
                                            ("client id (CAMPAIGN_OAUTH_CLIENT_ID or [oauth] client_id)", s.client_id),
                                            ("CAMPAIGN_OAUTH_CLIENT_SECRET", secret)) if not value]
        if missing:
            raise SettingsError(_("OAuth2 for Microsoft 365 needs the {items}; the secret is only ever read from the "
                                   "environment").format(items=', '.join(missing)))
        return MicrosoftClientCredentials(tenant=s.tenant, client_id=s.client_id, secret=secret, authority=s.authority,
                                          scope=s.scope, ca_file=env.get("CAMPAIGN_OAUTH_CA_FILE", ""), clock=clock)
    raise SettingsError(_("XOAUTH2 login needs a token: set CAMPAIGN_OAUTH_TOKEN_COMMAND to a command that prints "
                           "one, or, for Microsoft 365, [oauth] tenant and client_id in settings.toml with "
                           "CAMPAIGN_OAUTH_CLIENT_SECRET in the environment (see the README)"))


def imap_authenticate(imap_connection, user: str, token_provider: TokenProvider) -> None:  # type: ignore[no-untyped-def]
    """Log ``imap_connection`` (an ``imaplib.IMAP4``/``IMAP4_SSL``, TLS already on) in with XOAUTH2.
    A refused token is renewed once (it may have been revoked or expired early); a second refusal
    raises MailServerConfigError with what to check. The token never reaches the exception."""
    import imaplib

    from .errors import MailServerConfigError

    for attempt in (1, 2):
        token = token_provider.token()
        answered: list[bytes] = []

        def respond(challenge: bytes, _token: str = token) -> bytes:
            # On failure the server sends a (JSON) challenge first; the empty answer ends the exchange.
            if answered:
                answered.append(challenge)
                return b""
            answered.append(b"")
            return xoauth2_string(user, _token).encode("ascii")

        try:
            imap_connection.authenticate("XOAUTH2", respond)
            return
        except imaplib.IMAP4.error as exc:
            refusal = str(exc).replace(token, "[token]")[:200]
            if attempt == 1:
                token_provider.invalidate()
                continue
            raise MailServerConfigError(
                _("the IMAP server refused the OAuth2 token from {source} for {user} ({refusal}); check "
                   "that the app has the IMAP.AccessAsApp permission with admin consent and that its "
                   "service principal has FullAccess to this mailbox (see the README), or that the token "
                   "command's account may read it").format(
                       source=token_provider.source, user=user, refusal=refusal)) from None
