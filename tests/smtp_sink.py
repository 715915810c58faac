"""A real SMTP server on loopback for tests (aiosmtpd in a thread), with faults on demand.

    with SmtpSink(reject={"gone@example.org"}) as sink:
        transport = SmtpTransport(sink.settings())
        ...
        assert sink.connections == 1
        assert sink.messages[0].data == sent_bytes

It is stricter than aiosmtpd alone about message content: a line longer than 998 octets,
or a bare CR or LF, is refused with a 5xx (RFC 5322 §2.1.1, §2.3), so a bug that
produces them fails a test instead of slipping through. Options are plain attributes and
may be changed while the sink runs (e.g. ``sink.reject.add(...)``).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from newsbroadcast.config.model import Smtp

MAX_LINE = 998  # octets, without the CRLF (RFC 5322 §2.1.1)
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message, as it arrived (dot-stuffing undone, nothing else changed)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    connection: int  # 1 for the first connection the sink accepted, 2 for the next, …
    helo: str | None  # the name the client gave in EHLO/HELO
    tls: bool
    login: str | None  # the AUTH user name, if the client logged in


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (right now): for "server is down" tests."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SmtpSink:
    """A loopback SMTP server that records what it accepts.

    Options (all keyword-only):

    - ``defer``: ``{recipient: n}`` — answer ``451`` to RCPT TO for that address the
      first ``n`` times, then accept.
    - ``reject``: addresses always answered ``550`` at RCPT TO.
    - ``drop_after``: close each connection right after it delivered this many messages.
    - ``auth``: ``{user: password}`` — offer AUTH (PLAIN, LOGIN) and require it before
      MAIL FROM. With ``starttls`` AUTH is offered only after STARTTLS.
    - ``starttls``: a server ``SSLContext``; STARTTLS is offered and, unless
      ``require_starttls=False``, required before mail is accepted.
    - ``implicit_tls``: a server ``SSLContext``; TLS from the first byte (like port 465).
    - ``mail_reply`` / ``data_reply``: answer every MAIL FROM / end of DATA with this
      reply instead (e.g. ``"550 5.7.1 sender refused"``). A ``421`` reply also closes
      the connection, as real servers do.
    - ``data_size_limit``: advertised SIZE, bigger messages are refused with 552.
    - ``port``: listen here (0: a free port, the default); to bring a stopped sink back.
    - ``delay``: seconds to wait before answering each end of DATA, as a remote MTA would.
    - ``on_data``: called with each message once its DATA has arrived, before it is
      accepted (in the server's thread): a test's way to look at the world at that moment.
    - ``pipelining``: offer PIPELINING (RFC 2920) in the EHLO reply; aiosmtpd reads
      commands in order anyway, so pipelined ones are answered as they come.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        defer: dict[str, int] | None = None,
        reject: Iterable[str] = (),
        drop_after: int | None = None,
        auth: dict[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        require_starttls: bool = True,
        implicit_tls: ssl.SSLContext | None = None,
        mail_reply: str | None = None,
        data_reply: str | None = None,
        data_size_limit: int = 2**25,
        port: int = 0,
        delay: float = 0.0,
        on_data: Callable[[ReceivedMessage], None] | None = None,
        pipelining: bool = False,
    ) -> None:
        if starttls and implicit_tls:
            raise ValueError("choose starttls or implicit_tls, not both")
        self.host = host
        self.port = port
        self.delay = delay
        # The most messages whose content had arrived and whose reply had not gone out,
        # at any one moment (across connections): how many the client kept in flight.
        self.most_in_flight = 0
        self._in_flight = 0
        self.on_data = on_data
        self.pipelining = pipelining
        self.defer = dict(defer or {})
        self.reject = set(reject)
        self.drop_after = drop_after
        self.auth = dict(auth) if auth is not None else None
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.mail_reply = mail_reply
        self.data_reply = data_reply
        self.messages: list[ReceivedMessage] = []
        self.connections = 0
        self.quits = 0  # QUIT commands received: a polite client ends with one
        self._lock = threading.Lock()
        self._queue_ids = itertools.count(1)
        self._server_options: dict[str, Any] = {
            "data_size_limit": data_size_limit,
            "tls_context": starttls,
            "require_starttls": bool(starttls and require_starttls),
            # AUTH in clear text only when the test asks for auth without STARTTLS; with
            # implicit TLS aiosmtpd would otherwise never offer AUTH at all.
            "auth_require_tls": not (auth is not None and starttls is None),
        }
        # Made in start(): an aiosmtpd controller owns an event loop from birth, which a
        # sink built only for settings() (say, to point at a closed port) would leak.
        self._controller: _Controller | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> SmtpSink:
        if self._controller is not None:
            raise RuntimeError("the sink is already running")
        controller = _Controller(
            self,
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=self.implicit_tls,
            server_hostname="sink.test",  # skips aiosmtpd's getfqdn() DNS lookup
            authenticator=self._authenticate,
            **self._server_options,
        )
        controller.start()
        self._controller = controller
        self.port = controller.port
        with self._lock:
            # aiosmtpd opens one connection itself at start to check the server is up.
            self.connections = 0
            self.quits = 0
            self.messages.clear()
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for tests -------------------------------------------------------------------

    @property
    def security(self) -> Literal["starttls", "tls", "none"]:
        if self.implicit_tls:
            return "tls"
        return "starttls" if self.starttls else "none"

    def settings(self, **overrides: Any) -> Smtp:
        """``config.Smtp`` pointing at this sink, with its security mode; override any field."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "timeout": timedelta(seconds=5),
            "local_hostname": "client.test",
        }
        values.update(overrides)
        return Smtp(**values)

    def recipients(self) -> list[str]:
        """Every accepted recipient, in order."""
        return [r for m in self.messages for r in m.recipients]

    # -- called from the server's thread ---------------------------------------------

    def _new_connection(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _quit(self) -> None:
        with self._lock:
            self.quits += 1

    def _record(self, message: ReceivedMessage) -> str:
        with self._lock:
            self.messages.append(message)
            return f"SINK{next(self._queue_ids):05d}"

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if (
            self.auth is not None
            and isinstance(auth_data, LoginPassword)
            and self.auth.get(auth_data.login.decode()) == auth_data.password.decode()
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


class _SinkSMTP(SMTP):
    """aiosmtpd's server, numbered per connection so messages can say where they came."""

    connection_number = 0
    delivered = 0


class _Controller(Controller):
    def __init__(self, sink: SmtpSink, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        server = _SinkSMTP(self.handler, **self.SMTP_kwargs)
        server.connection_number = self.sink._new_connection()
        return server

    def _trigger_server(self) -> None:
        # Asked for port 0, the OS chose one: learn it before aiosmtpd connects to check.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _close_soon(server: SMTP) -> None:
    # After the reply now being returned has been written: transport.close() flushes first.
    transport = server.transport
    if transport is not None:
        server.loop.call_soon(transport.close)


class _Handler:
    """aiosmtpd hooks; a returned string is the reply sent to the client."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if not self.sink.pipelining:
            return responses
        last = responses[-1].replace("250 ", "250-", 1)
        return [*responses[:-1], last, "250 PIPELINING"]

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self.sink.mail_reply:
            if self.sink.mail_reply.startswith("421"):
                _close_soon(server)
            return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.sink.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if self.sink.defer.get(address, 0) > 0:
            self.sink.defer[address] -= 1
            return f"451 4.7.1 <{address}>: Recipient address deferred: try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_QUIT(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.sink._quit()
        return "221 2.0.0 Bye"

    async def handle_DATA(self, server: _SinkSMTP, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content
        self.sink._in_flight += 1  # one event loop: no lock needed
        self.sink.most_in_flight = max(self.sink.most_in_flight, self.sink._in_flight)
        try:
            if self.sink.delay:
                await asyncio.sleep(self.sink.delay)  # a remote MTA's time to accept a message
        finally:
            self.sink._in_flight -= 1
        if _BARE_CR_OR_LF.search(data):
            return "550 5.6.11 Message contains a bare CR or LF (RFC 5322 2.3)"
        if any(len(line) > MAX_LINE for line in data.split(b"\r\n")):
            return f"500 5.5.2 Line too long: more than {MAX_LINE} octets (RFC 5322 2.1.1)"
        if self.sink.data_reply:
            if self.sink.data_reply.startswith("421"):
                _close_soon(server)
            return self.sink.data_reply
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        message = ReceivedMessage(
            sender=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            connection=server.connection_number,
            helo=session.host_name,
            tls=ssl_object is not None,
            login=login,
        )
        if self.sink.on_data is not None:
            self.sink.on_data(message)
        queue_id = self.sink._record(message)
        server.delivered += 1
        if self.sink.drop_after is not None and server.delivered >= self.sink.drop_after:
            _close_soon(server)
        return f"250 2.0.0 Ok: queued as {queue_id}"
