"""Steps that say when they would block, so that one thread can run many of them.

A step is a generator that yields a ``Wait`` (a socket to become readable or writable, or
only a moment to pass) where blocking code would wait, and is resumed with True once the
socket is ready, or with False once the deadline has passed instead. The dispatcher runs
one such step per SMTP connection, all in one thread (``dispatch/multiplex.py``): threads
that each wait on their own connection spend more CPU handing Python's interpreter lock to
one another than sending. ``finish`` runs a single step to its end in the calling thread.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Wait:
    """What a step waits for: ``fileno`` readable (or writable, ``write``), or with no
    ``fileno`` only the ``deadline`` (a ``time.monotonic()`` value)."""

    fileno: int | None
    write: bool
    deadline: float


# A step: yields Waits, is sent whether each was met, returns its result.
Steps = Generator[Wait, bool, T]


def finish(steps: Steps[T], sleep: Callable[[float], object] = time.sleep) -> T:
    """Run ``steps`` to its end here, blocking at each wait; its result. ``sleep`` waits
    for a wait with no socket (a ``threading.Event.wait`` lets a stop cut it short)."""
    try:
        wait = next(steps)
        while True:
            wait = steps.send(block(wait, sleep))
    except StopIteration as done:
        return done.value
    finally:
        steps.close()  # interrupted here (KeyboardInterrupt): its connections close now


def block(wait: Wait, sleep: Callable[[float], object] = time.sleep) -> bool:
    """Wait here for ``wait``: True if its socket is ready, False at its deadline."""
    left = max(wait.deadline - time.monotonic(), 0.0)
    if wait.fileno is None:
        sleep(left)
        return True
    poller = select.poll()
    poller.register(wait.fileno, select.POLLOUT if wait.write else select.POLLIN)
    return bool(poller.poll(poll_ms(left)))


def poll_ms(seconds: float) -> int:
    """``seconds`` as ``poll``'s milliseconds, rounded up: rounded down, a wait just short
    of its deadline would spin."""
    return math.ceil(seconds * 1000)
