"""A progress bar for long sends on a terminal, drawn from the delivery rows themselves.

It reads the database (not the dispatcher's counters), so it shows the whole edition's
progress even when other workers share the sending.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TextIO

from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.db.models import utcnow
from newsbroadcast.outbox.steering import EditionProgress, format_duration, progress

WIDTH = 30


def bar_line(p: EditionProgress) -> str:
    """``edition #3 [#########-----] 5000/10000 sent, 1234.0/s, ETA 0m04s``"""
    filled = WIDTH * p.done // p.total if p.total else WIDTH
    eta = p.eta
    return (
        f"edition #{p.id} [{'#' * filled}{'-' * (WIDTH - filled)}] {p.done}/{p.total} done, "
        f"{p.sent} sent, {p.failed} failed, {p.rate:.0f}/s, "
        f"ETA {'?' if eta is None else format_duration(eta)}"
    )


class ProgressBar:
    """Redraws one line on ``stream`` every ``every`` seconds while in the ``with`` block;
    draws nothing when ``stream`` is not a terminal (logs and pipes stay clean)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        stream: TextIO | None = None,
        every: float = 0.5,
        clock: Callable[[], datetime] = utcnow,
        force: bool = False,
    ) -> None:
        self.sessions = sessions
        self.stream = stream or sys.stderr
        self.every = every
        self.clock = clock
        self.enabled = force or self.stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def draw(self) -> None:
        with self.sessions() as session:
            lines = [bar_line(p) for p in progress(session, self.clock(), ("sending",))]
        if lines:
            self.stream.write("\r\x1b[2K" + " | ".join(lines))
            self.stream.flush()
            self._drawn = True

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.draw()
            except Exception:  # a busy database must not break the send it reports on
                continue
