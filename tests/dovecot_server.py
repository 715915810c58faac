"""A real IMAP and POP3 server on loopback for tests: Debian's Dovecot, run as its own instance.

    with Dovecot.start(ca) as server:
        server.new_user()                          # an empty account of its own per test
        server.append(raw_message)                 # into its INBOX, over IMAP
        mailbox = server.mailbox("imap", processed="flag")  # a bounces.mailbox mapping
        ...
        assert server.folder("Processed") == [...]

The instance has its own configuration, state and log in a private folder, listens on free
ports above 1024 (IMAP with STARTTLS, IMAPS, POP3 with STARTTLS, POP3S), serves accounts from
a passwd file (``new_user()`` gives a test an empty one), and presents a certificate from the
test's ``trustme`` CA. ``install_dovecot()`` installs the Debian packages with apt-get when
they are missing, as ``.ci/run`` does; a test
is skipped (with the reason) only where that is impossible.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme

from tests.smtp_sink import free_port

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "mailbox-test-password"
ACCOUNTS = 50
PACKAGES = ("dovecot-imapd", "dovecot-pop3d")


def install_dovecot() -> str | None:
    """None when Dovecot is there (installed now if need be); else why it cannot be."""
    if Path(DOVECOT).exists() and Path("/usr/lib/dovecot/pop3").exists():
        return None
    if shutil.which("apt-get") is None:
        return "dovecot is not installed and apt-get is not available to install it"
    if os.geteuid() != 0:
        return "dovecot is not installed and installing it needs root (apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another apt run (e.g. .ci/run installing chromium) may hold the lock for a while.
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", *PACKAGES]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not Path(DOVECOT).exists():
        return f"apt-get could not install dovecot: {done.stderr.strip()[-300:]}"
    return None


class Dovecot:
    """A running Dovecot instance; ``stop()`` (or leaving the ``with``) ends it."""

    def __init__(self, base: Path, ca: trustme.CA) -> None:
        self.base = base
        self.ca_file = base / "ca.pem"
        self.host = "localhost"  # the name the certificate is issued for
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.pop3_port, self.pop3s_port = free_port(), free_port()
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(base / "cert.pem"))
        cert.private_key_pem.write_to_path(str(base / "key.pem"))
        self.user = "bounces"
        self._users = 0
        self._write_config()

    @classmethod
    def start(cls, ca: trustme.CA) -> Dovecot:
        # Its own folder under /tmp, readable by the unprivileged users Dovecot switches to
        # (pytest's tmp_path is private to root).
        base = Path(tempfile.mkdtemp(prefix="nb-dovecot-"))
        base.chmod(0o755)
        server = cls(base, ca)
        server._run()
        return server

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what tests use ---------------------------------------------------------------------

    def mailbox(self, kind: str, **overrides: Any) -> dict[str, Any]:
        """A ``bounces.mailbox`` mapping for this server (IMAPS / POP3S unless overridden)."""
        port = {"imap": self.imaps_port, "pop3": self.pop3s_port}[kind]
        values: dict[str, Any] = {
            "kind": kind,
            "host": self.host,
            "port": port,
            "tls": "tls",
            "user": self.user,
            "password_env": "NB_TEST_MAILBOX_PASSWORD",
            "ca_file": str(self.ca_file),
            "timeout": "20s",
        }
        return {**values, **overrides}

    @property
    def env(self) -> dict[str, str]:
        return {"NB_TEST_MAILBOX_PASSWORD": PASSWORD}

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=context, timeout=20)
        conn.login(self.user, PASSWORD)
        return conn

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            for raw in messages:
                typ, data = conn.append(folder, "", None, raw)
                assert typ == "OK", data
        finally:
            conn.logout()

    def folder(self, name: str = "INBOX") -> list[tuple[set[str], bytes]]:
        """Every message of a folder, in order, with its flags (keywords included)."""
        conn = self.client()
        try:
            typ, _ = conn.select(f'"{name}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", "ALL")
            out = []
            for uid in data[0].split():
                typ, parts = conn.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                item = parts[0]
                assert isinstance(item, tuple)
                head = item[0].decode()
                flags = set(head.split("FLAGS (", 1)[1].split(")", 1)[0].split())
                out.append((flags, item[1]))
            return out
        finally:
            conn.logout()

    def new_user(self) -> str:
        """The next empty account, used from now on, so tests sharing one server never see
        each other's mail. All are in the passwd file from the start: Dovecot notices a
        changed file by its modification time, too coarse for a file changed every test."""
        if self._users >= ACCOUNTS:
            raise RuntimeError(f"only {ACCOUNTS} accounts: start another server")
        self._users += 1
        self.user = f"bounces{self._users}"
        return self.user

    def stop(self) -> None:
        subprocess.run(
            [DOVECOT, "-c", str(self.base / "dovecot.conf"), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        pid_file = self.base / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.base, ignore_errors=True)

    # --- setting it up ----------------------------------------------------------------------

    def _write_config(self) -> None:
        base = self.base
        root = os.geteuid() == 0
        # Dovecot never gives mail to uid 0: as root, the mail belongs to an unprivileged user.
        mail_user = pwd.getpwnam("dovenull" if root else pwd.getpwuid(os.geteuid()).pw_name)
        (base / "home").mkdir()
        lines = []
        for n in range(1, ACCOUNTS + 1):
            home = base / "home" / f"bounces{n}"
            home.mkdir()
            if root:
                os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
            lines.append(f"bounces{n}:{{PLAIN}}{PASSWORD}::::::\n")
        (base / "passwd").write_text("".join(lines), encoding="ascii")
        self.new_user()
        own = "" if root else self._unprivileged_settings(mail_user.pw_name)
        (base / "dovecot.conf").write_text(
            f"""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = nb-dovecot-{base.name}
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={base}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
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
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
pop3_uidl_format = %08Xu%08Xv
{own}""",
            encoding="ascii",
        )

    @staticmethod
    def _unprivileged_settings(user: str) -> str:
        # Without root Dovecot cannot switch users or chroot: everything runs as this user.
        return f"""\
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {pwd.getpwnam(user).pw_gid}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
service anvil {{
  chroot =
}}
"""

    def _run(self) -> None:
        conf = str(self.base / "dovecot.conf")
        # Its output to a file, not a pipe: the daemon's children keep a pipe open forever.
        with (self.base / "start.log").open("wb") as out:
            done = subprocess.run([DOVECOT, "-c", conf], stdout=out, stderr=out, check=False)
        if done.returncode != 0:
            said = (self.base / "start.log").read_text(errors="replace")
            raise RuntimeError(f"dovecot did not start: {said}")
        # Started in the background: wait until both protocols answer (with a deadline).
        deadline = time.monotonic() + 20
        for port in (self.imaps_port, self.pop3s_port, self.imap_port, self.pop3_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"dovecot does not listen on port {port}") from None
                    time.sleep(0.05)
