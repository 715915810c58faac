"""Many connections' steps (newsbroadcast/waits.py) run in one thread.

Each SMTP connection's work is a step that yields where it would wait (the server's
reply, PostgreSQL's record, a moment for the rate limit). Here they all wait in one
``poll``: whichever is ready goes on. With a thread per connection instead, each of the
several system calls a message takes hands Python's interpreter lock to another thread,
which on a busy machine costs more CPU than the rest of the sending (measured with
bench/delivery.py: the same work took half as much CPU again with four threads).
"""

from __future__ import annotations

import logging
import select
import threading
import time

from newsbroadcast.waits import Steps, Wait, poll_ms

log = logging.getLogger("newsbroadcast.dispatch")

# The longest a poll lasts while a step only waits for a moment: a stop is seen this soon.
STOP_CHECK = 0.25


def run_together(steps: list[Steps[None]], stopping: threading.Event) -> list[Exception]:
    """Run ``steps`` to their ends, interleaved in this thread; the errors they raised, in
    order. One step's error ends that step only: the others carry on, as threads would. A
    stop (``stopping``) cuts short the waits for a moment; the steps see it themselves.
    Anything else (KeyboardInterrupt) closes every step that is left and goes up."""
    errors: list[Exception] = []
    waits: dict[int, Wait] = {}

    def resume(index: int, met: bool | None) -> None:
        step = steps[index]
        try:
            waits[index] = next(step) if met is None else step.send(met)
        except StopIteration:
            del waits[index]
        except Exception as e:
            del waits[index]
            errors.append(e)

    try:
        for index in range(len(steps)):
            waits[index] = Wait(None, False, 0.0)  # a placeholder until it first runs
            resume(index, None)
        poller = select.poll()
        while waits:
            watched: dict[int, int] = {}
            for index, wait in waits.items():
                if wait.fileno is not None:
                    watched[wait.fileno] = index
                    poller.register(wait.fileno, select.POLLOUT if wait.write else select.POLLIN)
            soonest = min(wait.deadline for wait in waits.values())
            left = max(soonest - time.monotonic(), 0.0)
            if len(watched) < len(waits):  # a step sleeps: a stop must reach it soon
                left = 0.0 if stopping.is_set() else min(left, STOP_CHECK)
            ready = {watched[fd] for fd, _ in poller.poll(poll_ms(left))}
            for fd in watched:
                poller.unregister(fd)
            now = time.monotonic()
            for index, wait in list(waits.items()):
                if index in ready:
                    resume(index, True)
                elif wait.fileno is None and (wait.deadline <= now or stopping.is_set()):
                    resume(index, True)  # a moment waited for is never missed
                elif wait.deadline <= now:
                    resume(index, False)
    finally:
        # Each closed on its own: one that fails to close must not leave the rest open.
        for step in steps:
            try:
                step.close()
            except Exception as e:
                log.warning("closing a connection's work failed: %s", e)
    return errors
