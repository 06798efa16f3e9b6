"""Real mail servers for the tests: Debian's Dovecot (IMAP) and Postfix, each started on loopback
ports from a throwaway configuration in a temporary folder, and stopped afterwards."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

from .smtp_server import free_port, make_certificate

MAIL_UID = 5000  # a normal uid for the mail user: Dovecot refuses system uids for mail


def _wait_for_port(port: int, *, log: Path, what: str, timeout: float = 20.0) -> None:
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    raise RuntimeError(f"{what} did not open port {port}:\n{text[-3000:]}")


class Dovecot:
    """One Dovecot with one user (``bounces``) on an IMAPS port and a STARTTLS port."""

    user = "bounces"
    password = "test-password"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.imaps_port = free_port()
        self.imap_port = free_port()
        self.cert, self.key = make_certificate(folder)
        self.config = folder / "dovecot.conf"
        self.log = folder / "dovecot.log"
        self.mail_home = folder / "home"
        self.root = os.geteuid() == 0

    def _write_config(self) -> None:
        run = self.folder / "run"
        run.mkdir(mode=0o755)
        (self.folder / "state").mkdir()
        self.mail_home.mkdir()
        os.chmod(self.folder, 0o755)
        if self.root:
            uid = gid = MAIL_UID
            os.chown(self.mail_home, uid, gid)
            login_user, internal_user = "dovenull", "dovecot"
            os.chmod(self.key, 0o600)
        else:
            uid, gid = os.getuid(), os.getgid()
            login_user = internal_user = pwd.getpwuid(uid).pw_name
        (self.folder / "users").write_text(
            f"{self.user}:{{PLAIN}}{self.password}:{uid}:{gid}::{self.mail_home}::\n", encoding="utf-8")
        self.config.write_text(f"""\
base_dir = {run}
state_dir = {self.folder / 'state'}
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{self.key}
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {min(uid, 500)}
mail_location = maildir:~/Maildir
auth_mechanisms = plain
disable_plaintext_auth = yes
auth_failure_delay = 0
shutdown_clients = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.folder / 'users'}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.folder / 'users'}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""", encoding="utf-8")

    def __enter__(self) -> "Dovecot":
        self._write_config()
        # The daemon keeps the output it was started with: never a pipe that someone reads.
        with open(self.folder / "dovecot.out", "wb") as out:
            subprocess.run(["dovecot", "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT, check=True,
                           timeout=30)
        _wait_for_port(self.imaps_port, log=self.log, what="Dovecot")
        _wait_for_port(self.imap_port, log=self.log, what="Dovecot")
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        pid_file = self.folder / "run" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def empty(self) -> None:
        """Remove every message and folder the last test left (between tests sharing one server)."""
        conn = self.client()
        try:
            typ, folders = conn.list()
            for line in folders or []:
                name = line.decode().rsplit(" ", 1)[-1].strip('"')
                if name != "INBOX":
                    conn.delete(f'"{name}"')
            typ, count = conn.select("INBOX")
            if int(count[0]):
                conn.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
                conn.expunge()
            conn.close()
        finally:
            conn.logout()

    def url(self, folder: str = "INBOX", *, starttls: bool = False) -> str:
        if starttls:
            return f"imap://{self.user}@127.0.0.1:{self.imap_port}/{folder}"
        return f"imaps://{self.user}@127.0.0.1:{self.imaps_port}/{folder}"

    def client(self):
        import imaplib
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.cert))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx, timeout=30)
        conn.login(self.user, self.password)
        return conn

    def append(self, messages: list[bytes], folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            for data in messages:
                typ, detail = conn.append(folder, "", None, data)
                assert typ == "OK", detail
        finally:
            conn.logout()

    def listing(self, folder: str = "INBOX") -> list[tuple[str, bytes]]:
        """(flags, Message-ID header line) of every message in a folder."""
        conn = self.client()
        try:
            typ, _ = conn.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    flags = item[0].decode()
                    out.append((flags[flags.index("FLAGS (") + 7:].split(")")[0], item[1].strip()))
            return out
        finally:
            conn.logout()


def require_root(server: str) -> None:
    """These servers are started as root (as CI runs): elsewhere a skip, under CI a failure."""
    import pytest

    from .conftest import IN_CI

    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail(f"the {server} tests start {server} and need root, as CI runs them")
        pytest.skip(f"the {server} tests start {server} and need root")


class Refuser:
    """An SMTP handler that refuses every recipient with a permanent 550 5.1.1."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"


# The services a relay that delivers bounces to a Maildir needs; none chrooted, so that no
# copy of /etc is needed in the queue folder.
MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A Postfix that accepts every message on a loopback port and relays it: ``refused_domain`` to a
    local server answering 550 5.1.1 (so Postfix itself bounces afterwards), every other domain to
    ``accept_port``. Bounces to ``own_domain`` land in the Maildir ``self.maildir``."""

    def __init__(self, folder: Path, *, own_domain: str, refused_domain: str, accept_port: int) -> None:
        self.folder = folder
        self.port = free_port()
        self.refuser_port = free_port()
        self.own_domain = own_domain
        self.refused_domain = refused_domain
        self.accept_port = accept_port
        self.config = folder / "etc"
        self.log = folder / "maillog"
        self.maildir = folder / "mail" / "Maildir"
        self.refuser = None

    def _write_config(self) -> None:
        self.config.mkdir()
        (self.folder / "queue").mkdir(mode=0o755)  # Postfix makes its subfolders on start
        (self.folder / "data").mkdir()
        (self.folder / "mail").mkdir()
        uid = MAIL_UID if os.geteuid() == 0 else os.getuid()
        gid = MAIL_UID if os.geteuid() == 0 else os.getgid()
        if os.geteuid() == 0:
            os.chown(self.folder / "data", pwd.getpwnam("postfix").pw_uid, 0)
            os.chown(self.folder / "mail", uid, gid)
        os.chmod(self.folder, 0o755)
        (self.config / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.folder / 'queue'}
data_directory = {self.folder / 'data'}
maillog_file = {self.log}
maillog_file_prefixes = {self.folder}
myhostname = relay.{self.own_domain}
mydomain = {self.own_domain}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
local_recipient_maps =
alias_maps =
alias_database =
transport_maps = inline:{{ {self.refused_domain}=smtp:[127.0.0.1]:{self.refuser_port} }}
default_transport = smtp:[127.0.0.1]:{self.accept_port}
relay_transport = $default_transport
virtual_mailbox_domains = {self.own_domain}
virtual_mailbox_base = {self.folder / 'mail'}
virtual_mailbox_maps = inline:{{ @{self.own_domain}=Maildir/ }}
virtual_minimum_uid = 100
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
biff = no
""", encoding="utf-8")
        (self.config / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.port}"), encoding="utf-8")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.config), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)

    def __enter__(self) -> "Postfix":
        from aiosmtpd.controller import Controller

        self._write_config()
        # The refusing server must not greet with Postfix's own name, or Postfix sees a mail loop.
        self.refuser = Controller(Refuser(), hostname="127.0.0.1", port=self.refuser_port,
                                  server_hostname=f"mx.{self.refused_domain}")
        self.refuser.start()
        done = self._postfix("start")
        if done.returncode != 0:
            self.refuser.stop()
            raise RuntimeError(f"postfix start failed:\n{done.stdout.decode(errors='replace')}")
        _wait_for_port(self.port, log=self.log, what="Postfix")
        return self

    def __exit__(self, *exc: object) -> None:
        self._postfix("stop")
        if self.refuser is not None:
            self.refuser.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def wait_for_bounces(self, count: int, *, timeout: float = 30.0) -> list[Path]:
        """The messages in the Maildir once there are ``count`` of them (Postfix bounces afterwards)."""
        end = time.monotonic() + timeout
        while True:
            found = sorted((self.maildir / "new").glob("*")) if (self.maildir / "new").is_dir() else []
            if len(found) >= count or time.monotonic() > end:
                return found
            self._postfix("flush")
            time.sleep(0.2)
