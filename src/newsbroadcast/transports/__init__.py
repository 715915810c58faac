"""Email transports: SMTP for real sending, files for demos and previews.

They carry bytes and own no state: nothing of db, outbox, dispatch or planning.
"""

from __future__ import annotations

from newsbroadcast.config.model import Config
from newsbroadcast.transports.base import Envelope, Transport
from newsbroadcast.transports.file import FileTransport
from newsbroadcast.transports.smtp import SmtpTransport

__all__ = [
    "Envelope",
    "FileTransport",
    "SmtpTransport",
    "Transport",
    "make_transport",
]


def make_transport(config: Config) -> Transport:
    """The transport ``email.transport`` names, built from its settings."""
    email = config.email
    if email.transport == "smtp":
        if email.smtp is None:  # the config model already refuses this; keeps mypy honest
            raise ValueError("email.transport is smtp but there is no smtp: section")
        return SmtpTransport(email.smtp)
    return FileTransport(config.path(email.file.dir))
