"""Sends envelopes over SMTP with smtplib, one connection for a whole batch.

Error mapping (what the dispatcher may rely on):

- 4xx at any stage, a dropped connection, a timeout, a refused connection
  → ``TransientSendError``. After 421 or a lost connection the next ``send`` reconnects.
- 5xx to RCPT TO or DATA → ``PermanentSendError`` for that recipient only; the
  transaction is reset (RSET) and the connection stays usable for the next recipient.
- Problems that would fail *every* message — wrong password, no STARTTLS offered,
  an untrusted certificate, a 5xx to MAIL FROM (the sender is refused, not the
  recipient) — → ``TransportConfigError``, a ``TransientSendError``: the message stays
  queued instead of being marked failed for a recipient who did nothing wrong, and a
  dispatcher that knows the type can stop the batch and tell a person.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from newsbroadcast.config.model import Smtp
from newsbroadcast.errors import (
    PermanentSendError,
    TransientSendError,
    TransportConfigError,
    TransportDown,
)
from newsbroadcast.transports.base import Envelope
from newsbroadcast.waits import Steps, Wait, finish

log = logging.getLogger(__name__)
# What would break out of "<address>" in an SMTP command line.
_UNSAFE_IN_ADDRESS = re.compile(r"[<>\r\n]")


class SmtpTransport:
    """An SMTP client for a batch of envelopes, used as a context manager.

    The connection is opened on the first ``send`` and reused until the ``with`` block
    ends (QUIT). Not thread-safe: give each worker thread its own transport.

    ``ssl_context``, when given, is used as is for TLS (e.g. to trust a private CA in tests
    or a company relay); ``settings.verify`` is then not consulted. Without it, certificates
    are checked against the system's CAs unless ``verify`` is false.
    """

    def __init__(
        self,
        settings: Smtp,
        name: str = "smtp",
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if (settings.username is None) != (settings.password is None):
            raise TransportConfigError(
                f"{name}: smtp needs both username and password, or neither "
                "(is the password's environment variable set?)"
            )
        self.settings = settings
        self.name = name
        self._ssl_context = ssl_context or _default_context(settings.verify)
        self._timeout = settings.timeout.total_seconds()
        self._connection: smtplib.SMTP | None = None
        self._link: _Link | None = None  # the connection's socket, once greeted

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port}"

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open. Never raises."""
        conn, self._connection, self._link = self._connection, None, None
        if conn is not None:
            if conn.sock is not None:  # smtplib reads QUIT's reply blocking, as it connected
                conn.sock.settimeout(self._timeout)
            _quit(conn)

    def check(self) -> str:
        """Connect, greet, upgrade to TLS and log in as configured, then QUIT.

        Returns a one-line summary; raises the same errors as ``send`` would.
        """
        conn = self._open()
        try:
            tls = conn.sock.version() if isinstance(conn.sock, ssl.SSLSocket) else None
            parts = [f"{self.name}: {self.where} answered"]
            parts.append(f"over {tls}" if tls else "in clear text (security: none)")
            if self.settings.username:
                parts.append(f"logged in as {self.settings.username}")
            return ", ".join(parts)
        finally:
            _quit(conn)

    def send(self, envelope: Envelope, before_data: Callable[[], None] | None = None) -> str:
        """Hand one envelope to the server; returns its reply to the end of DATA."""
        steps = None if before_data is None else _as_steps(before_data)
        return finish(self.send_steps(envelope, steps))

    def send_steps(
        self, envelope: Envelope, before_data: Callable[[], Steps[None]] | None = None
    ) -> Steps[str]:
        """``send`` as steps (newsbroadcast/waits.py): it yields where it waits for the
        server, so one thread can keep many connections busy. ``before_data`` is steps too.
        Connecting, TLS and the login run in a helper thread meanwhile (``_connect``)."""
        conn = self._connection
        if conn is None:
            conn = yield from self._connect()
            assert conn.sock is not None  # connected
            self._connection, self._link = conn, _Link(conn.sock, self._timeout)
        try:
            return (yield from self._transaction(conn, envelope, before_data))
        except OSError as e:
            # smtplib's own errors are OSErrors too; every one that reaches here means the
            # connection is in an unknown state, so it is dropped and remade next time.
            self._drop()
            raise TransportDown(
                f"{self.name}: connection to {self.where} lost while sending to "
                f"<{envelope.recipient}>: {_describe(e)}"
            ) from e
        except GeneratorExit:
            # Abandoned halfway (the worker stops): where the conversation stands is
            # unknown, and only closing ends an open DATA without a message.
            self._drop()
            raise

    def _connect(self) -> Steps[smtplib.SMTP]:
        """``_open`` as steps. Connecting, TLS and the login are smtplib's blocking calls;
        they run in a thread of their own while this step waits for it, so a server slow
        to greet (or not there) holds up only this connection, and N connections to a
        host that is down fail in one timeout, not N of them one after another."""
        done, signal = socket.socketpair()
        future = _connector().submit(self._open)

        def finished(_: Future[smtplib.SMTP]) -> None:
            with contextlib.suppress(OSError):  # the step may have stopped waiting
                signal.send(b"!")
            signal.close()

        future.add_done_callback(finished)
        # Each of smtplib's steps has its own timeout (connect, greeting, EHLO, STARTTLS,
        # EHLO again, AUTH): the thread is bounded by them.
        deadline = time.monotonic() + 6 * self._timeout
        try:
            while not future.done():
                if not (yield Wait(done.fileno(), False, deadline)):
                    raise TransportDown(
                        f"{self.name}: cannot connect to {self.where}: no greeting, TLS and "
                        f"login within {6 * self._timeout:g}s"
                    )
            return future.result()
        except BaseException:
            # Abandoned or given up on: the connection the thread makes is closed unused.
            future.add_done_callback(_close_unused)
            raise
        finally:
            done.close()

    def _transaction(
        self,
        conn: smtplib.SMTP,
        envelope: Envelope,
        before_data: Callable[[], Steps[None]] | None,
    ) -> Steps[str]:
        options = self._mail_options(conn, envelope)
        if "SMTPUTF8" in options:
            conn.command_encoding = "utf-8"  # RFC 6531: the addresses travel as UTF-8
        # The addresses are bare addr-specs already (checked when stored), so they go in
        # angle brackets as they are; smtplib's mail()/rcpt() would parse each one again.
        mail = " ".join([f"MAIL FROM:<{envelope.sender}>", *options])
        rcpt = f"RCPT TO:<{envelope.recipient}>"
        link = self._link
        assert link is not None  # made with the connection
        if conn.has_extn("pipelining"):
            commands = f"{mail}\r\n{rcpt}\r\nDATA\r\n".encode(conn.command_encoding)
            return (yield from self._pipelined(link, envelope, commands, before_data))
        for stage, command, accepted in (
            ("MAIL FROM", mail, (250,)),
            ("RCPT TO", rcpt, (250, 251)),
        ):
            yield from link.write(f"{command}\r\n".encode(conn.command_encoding))
            code, reply = yield from link.reply()
            if code not in accepted:
                raise (yield from self._refused(stage, code, reply, envelope))
        if before_data is not None:
            try:
                yield from before_data()
            except GeneratorExit:
                raise
            except BaseException:
                # The envelope is open: close it so the connection stays usable.
                yield from self._reset()
                raise
        yield from link.write(b"DATA\r\n")
        code, reply = yield from link.reply()
        if code == 354:
            yield from link.write(_dot_stuffed(envelope.data))
            code, reply = yield from link.reply()
        if code != 250:
            raise (yield from self._refused("DATA", code, reply, envelope))
        return _reply_text(code, reply)

    def _pipelined(
        self,
        link: _Link,
        envelope: Envelope,
        commands: bytes,
        before_data: Callable[[], Steps[None]] | None,
    ) -> Steps[str]:
        """The transaction with RFC 2920 PIPELINING: MAIL, RCPT and DATA in one write and
        their replies read together, two round trips a message instead of four (and far
        fewer system calls, which is what bounds a fast sender). ``before_data`` still runs
        before this message's content leaves: a server cannot accept a message it has not
        received, so a kill still repeats at most the message on the wire."""
        yield from link.write(commands)
        if before_data is not None:
            try:
                yield from before_data()
            except BaseException:
                # Three replies are pending and DATA may be open: only closing ends that.
                self._drop()
                raise
        replies: list[tuple[str, int, bytes]] = []
        for stage in ("MAIL FROM", "RCPT TO", "DATA"):
            code, reply = yield from link.reply()
            replies.append((stage, code, reply))
            if code == 421:  # the server is closing the channel: no more replies come
                break
        refused = [
            (stage, code, reply)
            for stage, code, reply in replies
            if code not in {"MAIL FROM": (250,), "RCPT TO": (250, 251), "DATA": (354,)}[stage]
        ]
        if refused:
            if replies[-1][1] == 354:
                # DATA was taken though the envelope was refused: the lone dot ends the
                # empty message (RFC 2920, 3.1), which the server refuses for want of a
                # recipient, and the connection is ready for the next transaction.
                yield from link.write(b".\r\n")
                yield from link.reply()
            stage, code, reply = refused[0]
            raise (yield from self._refused(stage, code, reply, envelope))
        yield from link.write(_dot_stuffed(envelope.data))
        code, reply = yield from link.reply()
        if code != 250:
            raise (yield from self._refused("DATA", code, reply, envelope))
        return _reply_text(code, reply)

    def _mail_options(self, conn: smtplib.SMTP, envelope: Envelope) -> list[str]:
        options = []
        if _UNSAFE_IN_ADDRESS.search(envelope.recipient):
            raise PermanentSendError(
                f"{self.name}: {envelope.recipient!r} cannot be written in RCPT TO "
                "(angle brackets or a line break)"
            )
        if not (envelope.sender.isascii() and envelope.recipient.isascii()):
            if not conn.has_extn("smtputf8"):
                raise PermanentSendError(
                    f"{self.name}: {self.where} does not offer SMTPUTF8, needed for the "
                    f"non-ASCII address <{envelope.recipient}> or <{envelope.sender}>"
                )
            options.append("SMTPUTF8")
        if not envelope.data.isascii() and conn.has_extn("8bitmime"):
            # RFC 6152: 8-bit content must be announced. Without the extension we send it
            # anyway and let the server decide; most accept it.
            options.append("BODY=8BITMIME")
        return options

    def _refused(
        self, stage: str, code: int, reply: bytes | str, envelope: Envelope
    ) -> Steps[Exception]:
        """The error for a refusal (to raise), with the connection made ready for the
        next transaction: reset, or dropped when it cannot be."""
        text = _reply_text(code, reply)
        message = f"{self.name}: {self.where} refused {stage} for <{envelope.recipient}>: {text}"
        if code == 421 or not 400 <= code < 600:
            # 421: the server is closing the channel. Anything else unexpected: the
            # conversation is out of step. Either way start over on a new connection.
            self._drop()
            return TransportDown(message, reply=text)
        yield from self._reset()
        if code < 500:
            return TransientSendError(message, reply=text)
        if stage == "MAIL FROM":
            # A refused sender is refused for every recipient: marking each recipient
            # failed would bounce the whole list for our own misconfiguration.
            return TransportConfigError(
                f"{message} (the server refuses the sender itself: check site.from, "
                "the SMTP account's allowed senders and SPF/DKIM setup)",
                reply=text,
            )
        return PermanentSendError(message, reply=text)

    def _reset(self) -> Steps[None]:
        """End a failed transaction so the connection can carry the next message."""
        link = self._link
        if link is None:
            return
        try:
            yield from link.write(b"RSET\r\n")
            code, _ = yield from link.reply()
        except OSError:
            code = -1
        if code != 250:
            self._drop()

    def _drop(self) -> None:
        conn, self._connection, self._link = self._connection, None, None
        if conn is not None:
            conn.close()

    def _open(self) -> smtplib.SMTP:
        """A connected, greeted, (TLS-upgraded, logged-in) client."""
        s = self.settings
        timeout = s.timeout.total_seconds()
        try:
            if s.security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host,
                    s.effective_port,
                    s.local_hostname,
                    timeout=timeout,
                    context=self._ssl_context,
                )
            else:
                conn = smtplib.SMTP(s.host, s.effective_port, s.local_hostname, timeout=timeout)
        except smtplib.SMTPConnectError as e:
            raise self._setup_refused("greeting", e) from e
        except ssl.SSLError as e:
            raise self._tls_failed(e) from e
        except OSError as e:
            raise self._unreachable(e) from e
        try:
            self._greet(conn)
        except BaseException:
            conn.close()
            raise
        log.debug("%s: connected to %s", self.name, self.where)
        return conn

    def _greet(self, conn: smtplib.SMTP) -> None:
        s = self.settings
        try:
            conn.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    # Required, not opportunistic: never fall back to clear text, or the
                    # password and every subscriber's address would cross the network bare.
                    raise TransportConfigError(
                        f"{self.name}: {self.where} does not offer STARTTLS, and "
                        "security is starttls, so nothing is sent in clear text. If the "
                        "port expects TLS from the start (usually 465), use security: tls."
                    )
                conn.starttls(context=self._ssl_context)
                conn.ehlo()  # RFC 3207: forget what was said before TLS, ask again
            if s.username is not None and s.password is not None:
                # With starttls/tls we are past the TLS step here; with security none the
                # person chose a clear-text link (a local relay), password included.
                conn.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as e:
            if 400 <= e.smtp_code < 500:
                raise self._setup_refused("AUTH", e) from e
            raise TransportConfigError(
                f"{self.name}: {self.where} refused the login of {s.username!r}: "
                f"{_reply_text(e.smtp_code, e.smtp_error)} (check smtp.username and the "
                "password's environment variable)",
                reply=_reply_text(e.smtp_code, e.smtp_error),
            ) from e
        except smtplib.SMTPNotSupportedError as e:
            raise TransportConfigError(
                f"{self.name}: {self.where} does not offer AUTH on this connection, but "
                f"smtp.username is set: {e}"
            ) from e
        except smtplib.SMTPResponseException as e:  # HELO/EHLO or STARTTLS refused
            raise self._setup_refused("greeting", e) from e
        except ssl.SSLError as e:
            raise self._tls_failed(e) from e
        except smtplib.SMTPServerDisconnected as e:
            raise TransportDown(
                f"{self.name}: {self.where} closed the connection during setup: {e}"
            ) from e
        except smtplib.SMTPException as e:  # e.g. no AUTH mechanism smtplib knows
            raise TransportConfigError(f"{self.name}: {self.where}: {e}") from e
        except OSError as e:
            raise self._unreachable(e) from e

    def _setup_refused(self, stage: str, e: smtplib.SMTPResponseException) -> Exception:
        text = _reply_text(e.smtp_code, e.smtp_error)
        message = f"{self.name}: {self.where} refused {stage}: {text}"
        if 400 <= e.smtp_code < 500:
            return TransportDown(message, reply=text)
        return TransportConfigError(message, reply=text)

    def _tls_failed(self, e: ssl.SSLError) -> TransportConfigError:
        if isinstance(e, ssl.SSLCertVerificationError):
            hint = (
                "its certificate could not be verified (unknown issuer, expired, or issued "
                "for another host name). Fix the certificate or use the host name it names; "
                "`verify: false` turns the check off and lets anyone on the path read and "
                "change the mail."
            )
        else:
            hint = (
                "is the security mode right for this port? (tls: usually 465, "
                "starttls: usually 587)"
            )
        return TransportConfigError(f"{self.name}: TLS with {self.where} failed: {e}; {hint}")

    def _unreachable(self, e: OSError) -> TransportDown:
        if isinstance(e, ConnectionRefusedError):
            why = "connection refused (is the server running, is the port right?)"
        elif isinstance(e, TimeoutError) or isinstance(e.__context__, TimeoutError):
            # smtplib reports a greeting that never came as "disconnected"; its cause says why.
            why = f"no answer within {self.settings.timeout.total_seconds():g}s"
            if self.settings.security != "tls":
                why += " (if the port expects TLS from the start, usually 465, use security: tls)"
        elif isinstance(e, socket.gaierror):
            why = f"cannot resolve the host name ({e})"
        else:
            why = _describe(e)
        return TransportDown(f"{self.name}: cannot connect to {self.where}: {why}")


@functools.cache
def _connector() -> ThreadPoolExecutor:
    # Threads only while connecting: one per connection a dispatcher may open at once.
    return ThreadPoolExecutor(max_workers=64, thread_name_prefix="smtp-connect")


def _close_unused(future: Future[smtplib.SMTP]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


@functools.cache
def _default_context(verify: bool) -> ssl.SSLContext:
    # Made once per process: loading the system's CA certificates takes tens of
    # milliseconds, and a transport is made for every connection of every batch. A context
    # is safe to share between threads once set up.
    context = ssl.create_default_context()
    if not verify:
        # `verify: false` keeps the link encrypted but accepts any certificate, so anyone
        # who can intercept the connection can read and change every message.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Link:
    """A greeted connection's socket, made non-blocking: commands written and replies read
    as steps. Replies are parsed as smtplib's ``getreply`` does (a code, and the lines'
    texts joined by newlines); bytes past a reply stay for the next one."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(0.0)
        self._sock = sock
        self._fileno = sock.fileno()
        self._timeout = timeout  # per wait, as smtplib's is per read or write
        self._buffer = bytearray()

    def write(self, data: bytes) -> Steps[None]:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view) :]
                continue
            except (BlockingIOError, ssl.SSLWantWriteError):
                write = True
            except ssl.SSLWantReadError:  # TLS may need to read before it can write
                write = False
            yield from self._wait(write)

    def reply(self) -> Steps[tuple[int, bytes]]:
        while (reply := self._take()) is None:
            try:
                chunk = self._sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                yield from self._wait(write=False)
                continue
            except ssl.SSLWantWriteError:
                yield from self._wait(write=True)
                continue
            if not chunk:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            self._buffer += chunk
        return reply

    def _wait(self, write: bool) -> Steps[None]:
        if not (yield Wait(self._fileno, write, time.monotonic() + self._timeout)):
            raise TimeoutError("timed out")

    def _take(self) -> tuple[int, bytes] | None:
        """The first whole reply in the buffer, taken out of it; None if none is whole."""
        buffer, start, texts = self._buffer, 0, []
        while True:
            end = buffer.find(b"\n", start)
            if end < 0 or end - start >= _MAX_LINE:  # smtplib: 8192 octets with the LF
                if len(buffer) - start > _MAX_LINE:
                    raise smtplib.SMTPResponseException(500, "Line too long.")
                return None
            line = bytes(buffer[start : end + 1])
            start = end + 1
            texts.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        del buffer[:start]
        return code, b"\n".join(texts)


# smtplib's limit for a reply line (its _MAXLINE).
_MAX_LINE = 8192


def _as_steps(call: Callable[[], None]) -> Callable[[], Steps[None]]:
    """A plain callable as steps that never wait."""

    def steps() -> Steps[None]:
        call()
        return
        yield  # a generator, though it never waits

    return steps


def _dot_stuffed(data: bytes) -> bytes:
    """``data`` as DATA carries it (RFC 5321 4.5.2): a dot doubled where it starts a line,
    then the final "." line. The same result as smtplib's ``data()``, whose line-start
    regex costs more CPU than the rest of a message's sending; one bytes.replace does it."""
    # The test first: a digest rarely has a line that starts with a dot, and the scan
    # costs less than the copy replace() makes.
    stuffed = data.replace(b"\n.", b"\n..") if b"\n." in data else data
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except OSError:
        pass  # the server went away first; nothing is left to tidy on our side
    finally:
        conn.close()


def _reply_text(code: int, reply: bytes | str) -> str:
    """'250 2.0.0 Ok: queued as X' — multi-line replies joined onto one line."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}".strip()


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__
