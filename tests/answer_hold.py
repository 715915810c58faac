"""Holding back the answer to an accepted post: the moment between "the network has it"
and "we recorded it", where a poster is killed in the crash tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

HOLD_AT_MOST = 60.0  # seconds a held answer waits for release() before going out anyway


@dataclass
class AnswerHold:
    armed: bool = False
    accepted: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def arm(self) -> None:
        """Hold the answer to the next accepted post."""
        self.armed = True

    def take(self) -> bool:
        """True once, for the post to hold (call it under the server's state lock)."""
        armed, self.armed = self.armed, False
        return armed

    def wait(self) -> None:
        """Signal that the post is stored, then wait (outside the state lock)."""
        self.accepted.set()
        self.released.wait(HOLD_AT_MOST)

    def release(self) -> None:
        self.released.set()
