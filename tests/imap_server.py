"""A real IMAP server (Dovecot) on 127.0.0.1 that takes SASL XOAUTH2 only, checking each token
with its oauth2 passdb against the local token service's introspection URL (RFC 7662, POST).
It runs from a folder of its own with its own configuration; STARTTLS with a test certificate."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .smtp_server import free_port, make_certificate

DOVECOT = "/usr/sbin/dovecot"


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (DOVECOT if Path(DOVECOT).exists() else None)


class Dovecot:
    def __init__(self, folder: Path, *, introspection_url: str, ca_file: Path) -> None:
        # Dovecot's unprivileged processes must reach these files: a folder outside pytest's 0700 ones.
        self.folder = Path(tempfile.mkdtemp(prefix="dovecot-"))
        os.chmod(self.folder, 0o755)
        certs = self.folder / "certs"
        certs.mkdir()
        self.cert, key = make_certificate(certs)
        os.chmod(certs, 0o755)
        os.chmod(self.cert, 0o644)
        os.chmod(key, 0o644)
        shutil.copy(ca_file, self.folder / "idp-ca.pem")
        os.chmod(self.folder / "idp-ca.pem", 0o644)
        self.port = free_port()
        if os.geteuid() == 0:
            internal, login = "dovecot", "dovenull"
            mail_user = pwd.getpwnam("dovecot")
        else:
            internal = login = pwd.getpwuid(os.geteuid()).pw_name
            mail_user = pwd.getpwuid(os.geteuid())
        mail = self.folder / "mail"
        mail.mkdir()
        os.chown(mail, mail_user.pw_uid, mail_user.pw_gid) if os.geteuid() == 0 else None
        (self.folder / "oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = {introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "force_introspection = yes\n"
            f"tls_ca_cert_file = {self.folder / 'idp-ca.pem'}\n", encoding="utf-8")
        self.log = self.folder / "dovecot.log"
        self.config = self.folder / "dovecot.conf"
        self.config.write_text(f"""\
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{key}
auth_mechanisms = xoauth2 oauthbearer
disable_plaintext_auth = yes
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{mail}/%n
auth_verbose = yes
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.folder}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={mail}/%n
}}
""", encoding="utf-8")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Dovecot":
        self.process = subprocess.Popen([dovecot_binary() or DOVECOT, "-F", "-c", str(self.config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(200):
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RuntimeError(f"dovecot did not start: {out}{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
