"""Where the replies to our mail wait: a Maildir, an IMAP folder or a POP3 account.

Each kind is read the same way (``open_inbox`` → ``unread()`` → ``handled(key)`` or
``unreadable(key)``), so ``mailbox.py`` knows nothing of protocols. A message is marked only
after the reader has committed what it meant, so a crash in between reads it again (which
is harmless: suppressing twice is suppressing once) and never loses it.

- Maildir: handled → flagged Seen in ``cur/``; unreadable → flagged F (a person looks).
- IMAP (TLS or STARTTLS, never clear text): handled → ``processed``: ``flag`` (\\Seen),
  ``delete`` (\\Deleted, expunged at the end) or ``move:<folder>``; unreadable → keyword
  ``$NewsbroadcastUnreadable``, left unread where it is (remove the keyword to retry).
  Fetching uses BODY.PEEK, so reading alone changes nothing on the server.
- POP3 (TLS or STLS): handled → deleted (at QUIT, as POP3 commits); unreadable → left on the
  server (POP3 has no flags) and read again next time.

Every wait on the server is bounded by the mailbox's ``timeout``. Errors → ``MailboxError``
naming the server and saying what to check; the password comes from the environment
variable named by ``password_env`` and is never logged.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox as stdlib_mailbox
import os
import poplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from newsbroadcast.config.model import Config, ImapMailbox, MaildirMailbox, Pop3Mailbox
from newsbroadcast.errors import MailboxError

__all__ = ["UNREADABLE_KEYWORD", "Inbox", "open_inbox"]

UNREADABLE_KEYWORD = "$NewsbroadcastUnreadable"


class Inbox(Protocol):
    """Messages not yet handled; used as a context manager around one pass."""

    where: str

    def __enter__(self) -> Inbox: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def unread(self) -> Iterator[tuple[str, bytes]]:
        """(key, raw message) for each message not handled yet, oldest first."""
        ...

    def handled(self, key: str) -> None: ...

    def unreadable(self, key: str) -> None: ...


def open_inbox(config: Config, settings: ImapMailbox | Pop3Mailbox | MaildirMailbox) -> Inbox:
    """The inbox ``settings`` describe, connected and logged in. Raises MailboxError."""
    if isinstance(settings, MaildirMailbox):
        return MaildirInbox(config.path(settings.path))
    if isinstance(settings, ImapMailbox):
        return ImapInbox(settings, _tls_context(config, settings))
    return Pop3Inbox(settings, _tls_context(config, settings))


class MaildirInbox:
    def __init__(self, path: Path) -> None:
        self.where = f"Maildir {path}"
        try:
            self._box = stdlib_mailbox.Maildir(path, factory=None, create=True)
        except OSError as e:
            raise MailboxError(f"cannot read the {self.where}: {e.strerror or e}") from e

    def __enter__(self) -> MaildirInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def unread(self) -> Iterator[tuple[str, bytes]]:
        try:
            keys = sorted(self._box.keys())
        except OSError as e:
            raise MailboxError(f"cannot read the {self.where}: {e.strerror or e}") from e
        for key in keys:
            try:
                flags = self._box.get_message(key).get_flags()
                data = self._box.get_bytes(key)
            except (KeyError, OSError):
                continue  # taken by another reader meanwhile
            if "S" in flags or "F" in flags:
                continue
            yield key, data

    def handled(self, key: str) -> None:
        self._mark(key, "S")

    def unreadable(self, key: str) -> None:
        self._mark(key, "F")

    def _mark(self, key: str, flag: str) -> None:
        try:
            stored = self._box.get_message(key)
            stored.set_subdir("cur")
            stored.add_flag(flag)
            self._box[key] = stored
        except KeyError:
            pass  # gone meanwhile: nothing left to mark
        except OSError as e:
            raise MailboxError(f"cannot mark message {key} in the {self.where}: {e}") from e


class ImapInbox:
    def __init__(self, settings: ImapMailbox, context: ssl.SSLContext) -> None:
        self.settings = settings
        self.where = f"IMAP {settings.user}@{settings.host}:{settings.effective_port}"
        self._expunge: list[str] = []
        self._capabilities: set[str] = set()
        self._keywords = False
        self._target = ""
        self._conn = self._connect(context)
        try:
            self._prepare()
        except BaseException:
            self._close()
            raise

    def __enter__(self) -> ImapInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def unread(self) -> Iterator[tuple[str, bytes]]:
        # "flag" marks handled messages \Seen; the other ways take them out of the folder, so
        # what is still in it and not deleted is to do, whether a person opened it or not.
        wanted = "UNSEEN" if self.settings.processed == "flag" else "UNDELETED"
        query = f"{wanted} UNKEYWORD {UNREADABLE_KEYWORD}" if self._keywords else wanted
        for uid in self._call("SEARCH", "SEARCH", query)[0].split():
            key = uid.decode("ascii")
            data = self._call("FETCH", "FETCH", key, "(BODY.PEEK[])")
            body = next((part[1] for part in data if isinstance(part, tuple)), None)
            if body is None:
                continue  # expunged by another reader meanwhile
            yield key, body

    def handled(self, key: str) -> None:
        processed = self.settings.processed
        if processed == "flag":
            self._store(key, r"(\Seen)")
        elif processed == "delete":
            self._delete(key)
        elif "MOVE" in self._capabilities:  # RFC 6851: one atomic step
            self._call("MOVE", "MOVE", key, self._target)
        else:
            self._call("COPY", "COPY", key, self._target)
            self._delete(key)

    def unreadable(self, key: str) -> None:
        if self._keywords:
            self._store(key, f"({UNREADABLE_KEYWORD})")

    # --- the conversation -------------------------------------------------------------------

    def _connect(self, context: ssl.SSLContext) -> imaplib.IMAP4:
        s = self.settings
        timeout = s.timeout.total_seconds()
        try:
            if s.tls == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    s.host, s.effective_port, ssl_context=context, timeout=timeout
                )
            else:
                conn = imaplib.IMAP4(s.host, s.effective_port, timeout=timeout)
                try:
                    conn.starttls(ssl_context=context)
                except imaplib.IMAP4.error as e:
                    conn.shutdown()
                    raise MailboxError(
                        f"{self.where} did not start TLS ({e}); nothing is sent in clear text. "
                        "If the port expects TLS from the start (usually 993), use tls: tls."
                    ) from e
        except ssl.SSLError as e:
            raise MailboxError(_tls_problem(self.where, e)) from e
        except (OSError, imaplib.IMAP4.error) as e:
            raise MailboxError(f"cannot connect to {self.where}: {_describe(e)}") from e
        try:
            conn.login(s.user, _password(s.password_env, self.where))
        except imaplib.IMAP4.error as e:
            conn.shutdown()
            raise MailboxError(
                f"{self.where} refused the login of {s.user!r}: {e} (check user and the "
                f"environment variable {s.password_env})"
            ) from e
        except OSError as e:
            with contextlib.suppress(OSError):
                conn.shutdown()  # the socket is let go of now, not at garbage collection
            raise MailboxError(f"{self.where}: connection lost at login: {_describe(e)}") from e
        return conn

    def _prepare(self) -> None:
        s = self.settings
        # What the server offers after login may differ from its greeting's list.
        try:
            caps = self._ok("CAPABILITY", self._conn.capability())
            self._capabilities = set(caps[0].decode("ascii", "replace").upper().split())
            if s.processed.startswith("move:"):
                self._target = _quoted(s.processed.removeprefix("move:"))
                listed = self._ok("LIST", self._conn.list('""', self._target))
                if not [entry for entry in listed if entry]:
                    self._ok("CREATE", self._conn.create(self._target))
            typ, data = self._conn.select(_quoted(s.folder))
            if typ != "OK":
                raise MailboxError(f"{self.where} has no folder {s.folder!r}: {_text(data)}")
            flags = self._conn.response("PERMANENTFLAGS")[1]
        except (OSError, imaplib.IMAP4.error) as e:
            raise MailboxError(f"{self.where}: {_describe(e)}") from e
        # Keywords of our own are possible only where the folder accepts new ones (\*).
        self._keywords = any(b"\\*" in (f or b"") for f in flags)

    def _store(self, key: str, flags: str) -> None:
        self._call("STORE", "STORE", key, "+FLAGS.SILENT", flags)

    def _delete(self, key: str) -> None:
        self._store(key, r"(\Deleted)")
        self._expunge.append(key)

    def _call(self, what: str, command: str, *args: str) -> list[Any]:
        """``UID <command> <args>``; its data, or MailboxError (refused or connection lost)."""
        try:
            return self._ok(what, self._conn.uid(command, *args))
        except (OSError, imaplib.IMAP4.error) as e:
            raise MailboxError(f"{self.where}: {what} failed: {_describe(e)}") from e

    def _ok(self, what: str, answer: tuple[str, list[Any]]) -> list[Any]:
        typ, data = answer
        if typ != "OK":
            raise MailboxError(f"{self.where} refused {what}: {_text(data)}")
        return data

    def _close(self) -> None:
        conn = self._conn
        try:
            if self._expunge:
                if "UIDPLUS" in self._capabilities:
                    # Only ours: another client's \Deleted messages are its own business.
                    conn.uid("EXPUNGE", ",".join(self._expunge))
                else:
                    conn.expunge()
                self._expunge = []
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            conn.shutdown()


class Pop3Inbox:
    def __init__(self, settings: Pop3Mailbox, context: ssl.SSLContext) -> None:
        self.settings = settings
        self.where = f"POP3 {settings.user}@{settings.host}:{settings.effective_port}"
        self._conn = self._connect(context)

    def __enter__(self) -> Pop3Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        # QUIT commits the deletions of the messages handled (their outcome is committed in
        # the database already), even when the pass stopped early.
        try:
            self._conn.quit()
        except (OSError, poplib.error_proto):
            self._conn.close()

    def unread(self) -> Iterator[tuple[str, bytes]]:
        try:
            _, listing, _ = self._conn.list()
            for entry in listing:
                number = entry.split()[0].decode("ascii")
                _, lines, _ = self._conn.retr(int(number))
                yield number, b"\r\n".join(lines) + b"\r\n"
        except (OSError, poplib.error_proto) as e:
            raise MailboxError(f"{self.where}: {_describe(e)}") from e

    def handled(self, key: str) -> None:
        try:
            self._conn.dele(int(key))
        except (OSError, poplib.error_proto) as e:
            raise MailboxError(f"{self.where} could not delete message {key}: {e}") from e

    def unreadable(self, key: str) -> None:
        pass  # no flags in POP3: it stays on the server for a person (and the next pass)

    def _connect(self, context: ssl.SSLContext) -> poplib.POP3:
        s = self.settings
        timeout = s.timeout.total_seconds()
        try:
            if s.tls == "tls":
                conn: poplib.POP3 = poplib.POP3_SSL(
                    s.host, s.effective_port, timeout=timeout, context=context
                )
            else:
                conn = poplib.POP3(s.host, s.effective_port, timeout=timeout)
                try:
                    conn.stls(context)
                except poplib.error_proto as e:
                    conn.close()
                    raise MailboxError(
                        f"{self.where} did not start TLS ({e}); nothing is sent in clear text. "
                        "If the port expects TLS from the start (usually 995), use tls: tls."
                    ) from e
        except ssl.SSLError as e:
            raise MailboxError(_tls_problem(self.where, e)) from e
        except (OSError, poplib.error_proto) as e:
            raise MailboxError(f"cannot connect to {self.where}: {_describe(e)}") from e
        try:
            conn.user(s.user)
            conn.pass_(_password(s.password_env, self.where))
        except poplib.error_proto as e:
            conn.close()
            raise MailboxError(
                f"{self.where} refused the login of {s.user!r}: {_text([e.args[0]])} (check "
                f"user and the environment variable {s.password_env})"
            ) from e
        except OSError as e:
            with contextlib.suppress(OSError):
                conn.close()  # the socket is let go of now, not at garbage collection
            raise MailboxError(f"{self.where}: connection lost at login: {_describe(e)}") from e
        return conn


def _tls_context(config: Config, settings: ImapMailbox | Pop3Mailbox) -> ssl.SSLContext:
    if settings.ca_file is not None:
        path = config.path(settings.ca_file)
        try:
            context = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as e:
            raise MailboxError(f"cannot read the CA file {path}: {e}") from e
    else:
        context = ssl.create_default_context()
    if not settings.verify:
        # Encrypted still, but anyone on the path could pose as the server and take the
        # password: the admin chose it (verify: false).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _password(variable: str, where: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise MailboxError(
            f"{where}: the environment variable {variable} (the password) is not set"
        )
    return value


def _quoted(name: str) -> str:
    # Folder names are ASCII without quotes (checked in the config), so quoting is enough.
    return f'"{name}"'


def _tls_problem(where: str, e: ssl.SSLError) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return (
            f"TLS with {where} failed: its certificate could not be verified ({e.verify_message}). "
            "Use the host name the certificate names, trust its CA with ca_file, or (letting "
            "anyone on the path read the mailbox) verify: false."
        )
    return f"TLS with {where} failed: {e} (tls: usually 993/995, starttls: usually 143/110)"


def _text(data: object) -> str:
    items = data if isinstance(data, list) else [data]
    return " ".join(
        d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in items if d
    )


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__
