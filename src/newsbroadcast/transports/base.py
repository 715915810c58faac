"""The one small interface every email transport implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from newsbroadcast.waits import Steps


@dataclass(frozen=True)
class Envelope:
    """A finished message: ``data`` is the whole RFC 5322 message, CRLF line endings."""

    sender: str  # envelope MAIL FROM (a bare address)
    recipient: str  # envelope RCPT TO (a bare address)
    data: bytes
    message_id: str  # without angle brackets


class Transport(Protocol):
    """Sends envelopes. Used as a context manager around a batch so a connection is
    reused for many messages.

    ``send`` returns the receiver's reply (e.g. ``"250 2.0.0 Ok: queued"``) and raises
    ``TransientSendError`` (retry later: 4xx, dropped connection, timeout) or
    ``PermanentSendError`` (5xx for this recipient). After a transient error the
    transport reconnects by itself on the next ``send``.

    ``before_data``, when given, is called once the envelope is accepted and before the
    message itself goes out; if it raises, nothing is sent and the error propagates. The
    dispatcher uses it to finish recording the previous message first.
    """

    name: str

    def __enter__(self) -> Transport: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, envelope: Envelope, before_data: Callable[[], None] | None = None) -> str: ...


# What a transport that can also send as steps (newsbroadcast/waits.py) has: ``send``
# yielding where it waits for the server, so that one thread keeps many connections busy.
SendSteps = Callable[[Envelope, Callable[[], Steps[None]] | None], Steps[str]]


def send_steps_of(transport: Transport) -> SendSteps | None:
    """``transport.send_steps`` where the transport has it. An attribute lookup, not an
    isinstance() against a runtime protocol, which checks every member each call and cost
    a tenth of a message's sending when done per message."""
    return getattr(transport, "send_steps", None)
