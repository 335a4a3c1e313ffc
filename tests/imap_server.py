"""A real IMAP server for the tests and the benchmark: Debian's Dovecot (dovecot-imapd, which
``make test`` installs), run in the foreground from its own configuration in a temporary folder,
on a free port, without TLS. Any user name logs in with PASSWORD and has its own mailbox
(maildir), so each test takes a new user instead of a new server.

Run as root (CI), Dovecot's own unprivileged users (dovenull, dovecot) do the logins and own the
mail; run as anyone else, that user does everything.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "secret"

CONFIG = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


def available() -> bool:
    return os.path.exists(DOVECOT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dovecot:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lf-dovecot-"))
        self.root.chmod(0o755)  # Dovecot's own users go through it
        self.port = _free_port()
        if os.geteuid() == 0:
            internal, login = "dovecot", "dovenull"
        else:
            internal = login = pwd.getpwuid(os.geteuid()).pw_name
        self.mail_user = internal
        self.mail_group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
        for folder in ("mail", "home"):
            (self.root / folder).mkdir()
            shutil.chown(self.root / folder, self.mail_user, self.mail_group)
        (self.root / "dovecot.conf").write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                password=PASSWORD,
                internal_user=internal,
                internal_group=self.mail_group,
                login_user=login,
                mail_user=self.mail_user,
                mail_group=self.mail_group,
            )  # fmt: skip
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_up()

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"dovecot stopped: {error} {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- A mailbox ----------------------------------------------------------------------------

    def new_user(self) -> str:
        return f"bounces-{uuid.uuid4().hex[:10]}"

    def url(self, user: str, folder: str = "INBOX") -> str:
        return f"imap://{user}:{PASSWORD}@127.0.0.1:{self.port}/{folder}"

    def client(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(user, PASSWORD)
        return client

    def append(self, user: str, *mails: bytes, folder: str = "INBOX") -> None:
        """Delivered as a mail client would file them (IMAP APPEND)."""
        client = self.client(user)
        try:
            for mail in mails:
                status, answer = client.append(folder, None, None, mail)
                assert status == "OK", answer
        finally:
            client.logout()

    def deliver_files(self, user: str, mails: list[bytes]) -> None:
        """Written straight into the user's maildir (``new/``), as a local delivery agent does:
        many mails at once without an IMAP round trip each (the benchmark)."""
        maildir = self.root / "mail" / user
        for name in ("new", "cur", "tmp"):
            (maildir / name).mkdir(parents=True, exist_ok=True)
        for index, mail in enumerate(mails):
            (maildir / "new" / f"{time.time():.0f}.M{index}P{os.getpid()}.lf").write_bytes(mail)
        for path in [maildir, *maildir.rglob("*")]:
            shutil.chown(path, self.mail_user, self.mail_group)

    def count(self, user: str, folder: str = "INBOX") -> int:
        client = self.client(user)
        try:
            status, data = client.select(folder, readonly=True)
            if status != "OK":
                return 0
            status, data = client.search(None, "UNDELETED")
            return len(data[0].split())
        finally:
            client.logout()
