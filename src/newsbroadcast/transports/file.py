"""Writes each message to ``<directory>/<Message-ID>.eml`` instead of sending it.

For demos, previews and sites that hand the files to another program. The write is
atomic (temporary file in the same directory, fsync, rename), so a reader never sees half
a message, and a resend with the same Message-ID replaces the file rather than adding one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from newsbroadcast.errors import TransientSendError
from newsbroadcast.transports.base import Envelope

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]*")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._@+=-]")
_MAX_STEM = 150  # well under the 255-byte file-name limit of common file systems


class FileTransport:
    """A transport that files messages away; ``directory`` is created when needed."""

    def __init__(self, directory: Path, name: str = "file") -> None:
        self.directory = directory
        self.name = name

    def __enter__(self) -> FileTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def send(self, envelope: Envelope, before_data: Callable[[], None] | None = None) -> str:
        """Write the message; returns ``"250 written <file name>"``."""
        if before_data is not None:
            before_data()
        filename = message_filename(envelope.message_id)
        target = self.directory / filename
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, envelope.data)
        except OSError as e:
            # A full disk or a permission problem: the delivery stays queued for a retry.
            raise TransientSendError(f"{self.name}: cannot write {target}: {e}") from e
        return f"250 written {filename}"


def message_filename(message_id: str) -> str:
    """A file name for a Message-ID: the id itself when it is safe, otherwise a cleaned
    version plus a hash of the original, so two different ids never share a file."""
    if not message_id:
        raise ValueError("the envelope has no message_id")
    if _SAFE.fullmatch(message_id) and len(message_id) <= _MAX_STEM:
        return f"{message_id}.eml"
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    cleaned = _UNSAFE_CHAR.sub("_", message_id)[:_MAX_STEM].lstrip(".")
    return f"{cleaned}-{digest}.eml"


def _write_atomically(target: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk (POSIX).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows, where directories cannot be opened this way
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
