"""A counting SMTP sink for benchmarks, in a process of its own (so it does not share the
measured process's interpreter lock). Keeps no message, only counts: memory stays flat.

    start_sink(delay=0.0) -> (port, counter, stop)
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
from collections.abc import Callable
from typing import Any


def _serve(ready: Any, counter: Any, delay: float, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if delay:
                await asyncio.sleep(delay)  # a remote MTA's time to take a message
            with counter.get_lock():
                counter.value += 1
            return "250 2.0.0 Ok: queued"

    with socket.socket() as s:  # a free port (aiosmtpd's start-up check needs a real one)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="sink")
    controller.start()
    ready.put(port)
    stop.wait()
    controller.stop()


def start_sink(delay: float = 0.0) -> tuple[int, Any, Callable[[], None]]:
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

    return port, counter, stop_sink
