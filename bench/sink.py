"""Counting SMTP sinks for benchmarks, each in a process of its own (so it does not share
the measured process's interpreter lock). They keep no message, only count: memory stays
flat.

    start_sink(kind="aiosmtpd", delay=0.0, backlog=64)
        -> Sink(port, received(), cpu_seconds(), stop())

``aiosmtpd`` is pure Python (about 700 messages a second here: it is often the slowest
part of a run). ``smtp-sink`` is Postfix's test server, written in C: it answers as fast as
the wire allows, so the figures are about our side. It is taken from Debian's postfix
package without installing it (no daemon, no configuration touched): ``apt-get download
postfix`` into a cache folder, ``dpkg -x`` there, and its own shared libraries found via
LD_LIBRARY_PATH. Where that cannot be done (no apt, no network) ``SinkUnavailable`` says why.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SINKS = ("aiosmtpd", "smtp-sink")
_COUNTED = re.compile(rb"mesg=(\d+)\r")
_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "newsbroadcast-bench"


class SinkUnavailable(Exception):
    """The chosen sink cannot be had on this machine (the message says why)."""


@dataclass
class Sink:
    kind: str
    port: int
    received: Callable[[], int]  # messages taken so far
    cpu_seconds: Callable[[], float]  # CPU seconds (user + system) the sink used so far
    stop: Callable[[], None]
    how: str  # where the sink came from, for the bench's first lines


def start_sink(kind: str = "aiosmtpd", delay: float = 0.0, backlog: int = 64) -> Sink:
    if kind == "smtp-sink":
        if delay:
            raise SinkUnavailable("smtp-sink: --delay is for the aiosmtpd sink only")
        return _start_smtp_sink(backlog)
    return _start_aiosmtpd(delay)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process on this machine (all its threads), from /proc (Linux)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def _stat_cpu_seconds(stat: Path) -> float:
    """utime + stime from a /proc stat file (a process's, or one thread's under task/)."""
    fields = stat.read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- aiosmtpd -------------------------------------------------------------------------


def _serve(ready: Any, counter: Any, delay: float, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if delay:
                await asyncio.sleep(delay)  # a remote MTA's time to take a message
            with counter.get_lock():
                counter.value += 1
            return "250 2.0.0 Ok: queued"

    port = _free_port()  # aiosmtpd's start-up check needs a real one
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="sink")
    controller.start()
    ready.put(port)
    stop.wait()
    controller.stop()


def _start_aiosmtpd(delay: float) -> Sink:
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    counter = ctx.Value("q", 0)
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(ready, counter, delay, stop), daemon=True)
    proc.start()
    port = int(ready.get(timeout=30))

    def stop_sink() -> None:
        stop.set()
        proc.join(timeout=10)

    pid = proc.pid
    assert pid is not None  # started above
    return Sink(
        "aiosmtpd",
        port,
        lambda: int(counter.value),
        lambda: process_cpu_seconds(pid),
        stop_sink,
        "aiosmtpd (Python)",
    )


# --- Postfix's smtp-sink --------------------------------------------------------------


def smtp_sink_binary(cache: Path = CACHE) -> tuple[Path, Path, str]:
    """(program, its library folder, how it was had), fetching it once into ``cache``."""
    root = cache / "postfix"
    program, libs = root / "usr/sbin/smtp-sink", root / "usr/lib/postfix"
    if program.exists():
        return program, libs, f"smtp-sink (Postfix, C) from {root}"
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SinkUnavailable(
            "smtp-sink: needs apt-get and dpkg (Debian's postfix package is unpacked, not "
            "installed); use --sink aiosmtpd here"
        )
    download = cache / "download"
    download.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(
        ["apt-get", "download", "postfix"], cwd=download, capture_output=True, text=True
    )
    debs = sorted(download.glob("postfix_*.deb"))
    if got.returncode != 0 or not debs:
        raise SinkUnavailable(
            "smtp-sink: `apt-get download postfix` failed (run `apt-get update` first?): "
            + (got.stderr.strip().splitlines() or ["no package file"])[-1]
        )
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], check=True)
    if not program.exists():
        raise SinkUnavailable(f"smtp-sink: {debs[-1].name} holds no usr/sbin/smtp-sink")
    return program, libs, f"smtp-sink (Postfix, C) fetched with apt-get download, in {root}"


def _start_smtp_sink(backlog: int) -> Sink:
    program, libs, how = smtp_sink_binary()
    port = _free_port()
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs)}
    # -c: a running "sess=… quit=… mesg=N" counter on stdout, one per DATA, ended by \r.
    # -u: it refuses to run as root without a user to drop to.
    command = [str(program), "-c", *(["-u", "nobody"] if os.geteuid() == 0 else [])]
    proc = subprocess.Popen(
        [*command, f"127.0.0.1:{port}", str(backlog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    count = [0]

    def read() -> None:
        # It must keep reading whatever it finds: a full pipe would stall the sink.
        assert proc.stdout is not None
        tail = b""
        while chunk := os.read(proc.stdout.fileno(), 65536):
            tail = (tail + chunk)[-256:]
            found = _COUNTED.findall(tail)
            if found:
                count[0] = max(count[0], int(found[-1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader_stat = Path(f"/proc/self/task/{reader.native_id}/stat")
    for _ in range(100):  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise SinkUnavailable(
                    f"smtp-sink did not start: {proc.stderr.read().decode().strip()}"
                ) from None
            threading.Event().wait(0.05)
    # The probe above counted as a session, not as a message: the counter is unchanged.

    def stop_sink() -> None:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)

    def cpu_seconds() -> float:
        # smtp-sink is one process, no children; reading its counter is sink work done in
        # this process's thread, so it is the sink's too (not the smtplib baseline's).
        return process_cpu_seconds(proc.pid) + _stat_cpu_seconds(reader_stat)

    return Sink("smtp-sink", port, lambda: count[0], cpu_seconds, stop_sink, how)
