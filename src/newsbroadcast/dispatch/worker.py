"""`newsbroadcast worker`: only the dispatcher, as many processes as you like on one
PostgreSQL database. Claims are disjoint (FOR UPDATE SKIP LOCKED); a worker that dies
leaves its claims to run out their lease and be taken by the others.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from newsbroadcast import db
from newsbroadcast.dispatch.report import DispatchReport

if TYPE_CHECKING:  # the service sits on top: it is handed in, never imported
    from newsbroadcast.service import Service

log = logging.getLogger("newsbroadcast.worker")


def run_worker(service: Service, once: bool = False) -> DispatchReport:
    """Send what is due, again every ``scheduler.dispatch_every``, until SIGINT/SIGTERM
    (then finish the messages on the wire and hand the rest of the batch back). With
    ``once``: send everything due now, then return."""
    dispatcher = service.dispatcher
    stopping = dispatcher.stopping

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            log.info("%s received: stopping after the messages in flight", signal.Signals(signum))
        stopping.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    total = DispatchReport()
    every = service.config.scheduler.dispatch_every.total_seconds()
    log.info(
        "worker started: %d connection(s), batches of %d",
        dispatcher.config.senders,
        service.config.email.batch_size,
    )
    database = db.watch(service.engine)
    while not stopping.is_set():
        try:
            if once or database.reachable():  # during an outage: wait, said once (db/engine.py)
                total.add(service.dispatch())
        except Exception as e:
            if once:
                raise
            if not database.failed(e):
                log.exception("dispatch failed; trying again in %gs", every)
        if once:
            break
        stopping.wait(every)
    log.info("worker stopped: sent %d, failed %d", total.sent, total.failed)
    return total
