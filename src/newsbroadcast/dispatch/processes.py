"""`newsbroadcast worker --processes N`: N sending processes from one command.

One Python process sends as fast as one core runs its interpreter; the work in each
message (building it, the SMTP exchange, recording it) holds the interpreter lock. N
processes use N cores. Each child is a plain `newsbroadcast worker` (same config, same
options, without ``--processes``), so claims stay disjoint as between any workers
(outbox/claim.py) and a child killed with SIGKILL loses nothing its lease does not
bring back.

The supervisor only watches: SIGTERM or SIGINT to it is passed on to every child, which
finishes the messages on its wire and exits; it returns once they all have. A child
that dies on its own is reported (logged with its exit status) and, unless ``once``,
started again after a pause that doubles while it keeps dying (up to a minute). With
``once`` a dead child is not restarted (the rows it held wait for their lease, and the
next run sends them): the command then exits non-zero, naming it.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from newsbroadcast.dispatch.report import DispatchReport

log = logging.getLogger("newsbroadcast.worker")

# A child that ran this long before dying was working: its next start is not delayed long.
HEALTHY_SECONDS = 60.0
FIRST_RESTART = 1.0
MAX_RESTART = 60.0
# How long a child asked to stop may take to finish the messages on its wire (each SMTP
# exchange has its own timeouts, so a longer wait means it is stuck).
STOP_WAIT = 120.0
# How often the supervisor looks at its children (a wait on the stop event, not a sleep).
WATCH_EVERY = 0.2
# What a `worker --once` child prints last (cli/run.py).
_SUMMARY = re.compile(r"sent (\d+), retry later (\d+), failed (\d+), skipped (\d+)")


@dataclass
class ProcessesReport:
    """What the children did: the sums of their reports (``once``), and each death."""

    dispatch: DispatchReport = field(default_factory=DispatchReport)
    deaths: list[str] = field(default_factory=list)
    restarts: int = 0


@dataclass
class _Child:
    number: int
    process: subprocess.Popen[bytes]
    started: float
    output: IO[bytes]
    delay: float = FIRST_RESTART


def run_processes(
    command: Sequence[str],
    count: int,
    once: bool = False,
    stopping: threading.Event | None = None,
    cwd: Path | None = None,
) -> ProcessesReport:
    """Run ``count`` copies of ``command`` (a `worker` command line) until they end
    (``once``) or ``stopping`` is set (then SIGTERM to each, and wait for all)."""
    stopping = stopping or threading.Event()
    report = ProcessesReport()
    children: dict[int, _Child] = {}
    waiting: dict[int, tuple[float, float]] = {}  # number -> (start again at, its delay)

    def start(number: int, delay: float = FIRST_RESTART) -> None:
        # The child's standard output, read when it ends (its summary line): a file, not a
        # pipe, so a child that prints much never blocks on a reader.
        output = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _ended)
        process = subprocess.Popen(list(command), stdout=output, cwd=cwd)
        children[number] = _Child(number, process, time.monotonic(), output, delay)
        log.info(
            "worker process %d started (pid %d)", number, process.pid,
            extra={"worker": number, "pid": process.pid},
        )  # fmt: skip

    try:
        for number in range(1, count + 1):
            start(number)
        while children or waiting:
            if stopping.is_set():
                break
            for number, child in list(children.items()):
                status = child.process.poll()
                if status is None:
                    continue
                del children[number]
                _ended(child, status, report)
                if status == 0 and once:
                    continue
                if status == 0:  # it stopped by itself (its own signal): so do we
                    stopping.set()
                    continue
                message = f"worker process {number} (pid {child.process.pid}) {_how(status)}"
                report.deaths.append(message)
                if once:
                    log.error("%s; not restarted (--once)", message)
                    continue
                lived = time.monotonic() - child.started
                delay = FIRST_RESTART if lived >= HEALTHY_SECONDS else child.delay
                log.error("%s; starting it again in %gs", message, delay)
                waiting[number] = (time.monotonic() + delay, min(delay * 2, MAX_RESTART))
            for number, (at, delay) in list(waiting.items()):
                if time.monotonic() >= at and not stopping.is_set():
                    del waiting[number]
                    report.restarts += 1
                    start(number, delay)
            stopping.wait(WATCH_EVERY)
    finally:
        # Stop what still runs: asked to, or the supervisor itself failed.
        for child in children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                status = child.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                # A child that does not finish its wire in time must not hold the command.
                log.error("worker %d did not stop in %.0f s: killed", child.number, STOP_WAIT)
                child.process.kill()
                status = child.process.wait()
            _ended(child, status, report)
    return report


def _ended(child: _Child, status: int, report: ProcessesReport) -> None:
    """Add an ended child's summary to ``report`` and let go of its output file."""
    child.output.seek(0)
    text = child.output.read().decode("utf-8", "replace")
    child.output.close()
    if text:
        # Its summary is the supervisor's to print (summed); anything else passes through.
        lines = [line for line in text.splitlines() if not _SUMMARY.fullmatch(line)]
        if lines:
            print("\n".join(lines))
    found = _SUMMARY.findall(text)
    if found:
        sent, retried, failed, skipped = (int(v) for v in found[-1])
        report.dispatch.add(DispatchReport(sent=sent, retried=retried, failed=failed,
                                           skipped=skipped))  # fmt: skip
    log.info(
        "worker process %d (pid %d) ended: %s", child.number, child.process.pid, _how(status),
        extra={"worker": child.number, "pid": child.process.pid, "status": status},
    )  # fmt: skip


def _how(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
