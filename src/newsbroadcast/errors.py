"""Every error newsbroadcast raises on purpose, one type per boundary.

    NewsBroadcastError
     ├── ConfigError            the YAML, a template or a secret is wrong (file:line problems)
     ├── SourceError            one source could not be read or parsed (carries the source name)
     │    └── RobotsDisallowed    the site's robots.txt asks us not to fetch that URL
     ├── InputError             a record given by a person is wrong (CSV row, CLI argument)
     │    └── SuppressedAddress   the address is on the suppression list
     ├── MailboxError           the bounce/unsubscribe mailbox could not be read
     ├── FeedbackRejected       a provider's bounce/complaint webhook is not trusted or not
     │                          readable (carries the HTTP status to answer with)
     ├── RenderError            a template could not make this post or edition
     │    └── PostTooLong         not even a shortened title fits the channel's limit
     ├── CopyError              `db copy` could not finish (run it again to continue)
     └── DeliveryError          a message or post could not be handed over
          ├── TransientSendError  try again later (a 4xx for this recipient, a timeout)
          │    ├── RateLimited      try again after `retry_after` seconds
          │    └── TransportDown    the connection or its setup failed: every message
          │         │               behind this one would fail the same way
          │         └── TransportConfigError  only a person can fix it (password, TLS)
          └── PermanentSendError  this recipient/post will never succeed (5xx)

Library errors are wrapped with ``raise ... from e`` so the cause stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass


class NewsBroadcastError(Exception):
    """Base of every error raised on purpose by newsbroadcast."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, located so a person can jump to it."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class ConfigError(NewsBroadcastError):
    """The configuration cannot be used; ``problems`` lists each mistake with its place."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SourceError(NewsBroadcastError):
    """A source could not be fetched or parsed. Other sources are unaffected."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"source {source!r}: {message}")


class RobotsDisallowed(SourceError):
    """The site's robots.txt asks us not to fetch this URL (we obey)."""


class InputError(NewsBroadcastError):
    """Input given by a person (a CSV row, an argument) is invalid."""


class SuppressedAddress(InputError):
    """The address is on the suppression list (hard bounce, erase, admin): never added again."""


class MailboxError(NewsBroadcastError):
    """The mailbox of bounces and unsubscribe requests could not be opened or read."""


class FeedbackRejected(NewsBroadcastError):
    """A bounce or complaint webhook was refused: a wrong signature or credential, a stale
    or replayed request, an untrusted certificate, a payload that is not the provider's
    format. ``status`` is the HTTP status to answer with, ``code`` one word for machines,
    the message what a person needs to fix it. Nothing of the request was recorded."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class RenderError(NewsBroadcastError):
    """A template could not make one post or edition (its message names the template and,
    where known, the line). That post or edition is left out; the others go on."""


class PostTooLong(RenderError):
    """Nothing fits the channel's limit: the template's fixed text, link and hashtags are
    too long even with no summary and the title cut to its first word."""


class CopyError(NewsBroadcastError):
    """A database copy failed or came out incomplete; the message names the table."""


class DeliveryError(NewsBroadcastError):
    """A message or post could not be handed over.

    ``unsent`` says this attempt certainly published nothing (the request never left, or
    the receiver answered with a refusal), so a retry cannot make a duplicate.
    """

    def __init__(self, message: str, reply: str | None = None, *, unsent: bool = False) -> None:
        self.reply = reply
        self.unsent = unsent
        super().__init__(message)


class TransientSendError(DeliveryError):
    """Worth retrying later: 4xx replies, dropped connections, timeouts."""


class RateLimited(TransientSendError):
    """The receiver asked us to wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float, reply: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, reply)


class TransportDown(TransientSendError):
    """The server is unreachable or dropped us: stop the batch, retry the lot later."""


class TransportConfigError(TransportDown):
    """Nothing can be sent until a person fixes the settings or the server: wrong
    credentials, STARTTLS not offered, certificate not trusted, sender refused.

    Transient on purpose: a wrong password must not turn every queued delivery into a
    permanent failure (and every subscriber into a bounce). Messages stay queued; the
    error's text says what to fix.
    """


class PermanentSendError(DeliveryError):
    """Will never succeed for this recipient or post (5xx, refused content)."""
