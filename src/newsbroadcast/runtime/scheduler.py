"""APScheduler 3.x wiring: the scheduler only triggers the service's steps.

Choices made on purpose:
- One worker thread: steps never overlap, so one process never races itself on SQLite's
  single writer, and Ctrl-C waits for just the one step in progress.
- ``coalesce=True``: fire times missed while a step was busy (or the machine slept) run
  once, not once per missed time.
- One dispatch step lasts at most ``scheduler.dispatch_budget`` (capped at half the shortest
  digest ``catch_up``) plus the batches in flight, then yields: a big edition goes out over
  many steps, and the polls, plans and reloads queued meanwhile run in between.
- ``misfire_grace_time``: a digest job may start late by up to its ``catch_up`` window,
  never more (the planner would find no send time then either); polls, the dispatcher, the
  mailbox and reloads however late (once, coalesced): delayed behind a dispatch step, a
  later run would be just as late, so a limit of one period would drop them all.
- Send times missed while the service was *down* are not APScheduler's business (its jobs
  live in memory): the start-up pass plans any edition whose send time lies within its
  ``catch_up`` window, and the (digest, period) key keeps that from doubling up.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from newsbroadcast import db
from newsbroadcast.config import reload
from newsbroadcast.config.model import Config, Digest
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.service import Service

log = logging.getLogger("newsbroadcast.scheduler")


class _StepStillRunning(logging.Filter):
    """APScheduler warns each time a job fires while its previous run still works. For the
    dispatch job that is the normal course of a long send (a step runs up to its budget,
    the job fires every ``dispatch_every``, and coalescing runs it once afterwards), so the
    notice is demoted to DEBUG: a warning every few seconds of every big send would bury
    the warnings that matter."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        overlap = "maximum number of running instances reached" in str(record.msg)
        if not overlap or getattr(job, "id", None) != "dispatch":
            return True  # another job still running a period later is worth a warning
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_STEP_STILL_RUNNING = _StepStillRunning()


def _grace(period: timedelta) -> int:
    return max(int(period.total_seconds()), 1)


def build_scheduler(service: Service) -> BackgroundScheduler:
    config = service.config
    database = db.watch(service.engine)
    logging.getLogger("apscheduler.scheduler").addFilter(_STEP_STILL_RUNNING)  # once: same object
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone="UTC",
    )
    for source in config.sources:
        scheduler.add_job(
            _guarded(f"poll {source.name}", partial(service.poll, [source.name]), database),
            IntervalTrigger(seconds=source.poll_every.total_seconds()),
            id=f"poll:{source.name}",
            misfire_grace_time=None,
            replace_existing=True,
        )
    for digest in config.digests:
        scheduler.add_job(
            _guarded(f"digest {digest.name}", partial(_plan, service, digest), database),
            digest.trigger(),
            id=f"digest:{digest.name}",
            misfire_grace_time=_grace(digest.catch_up),
            replace_existing=True,
        )
    every = config.scheduler.dispatch_every
    scheduler.add_job(
        _guarded("dispatch", lambda: dispatch_step(service), database),
        IntervalTrigger(seconds=every.total_seconds()),
        id="dispatch",
        misfire_grace_time=None,
        replace_existing=True,
    )
    bounces = config.bounce_settings
    if bounces is not None:
        from newsbroadcast.subscribers.mailbox import process_mailbox

        check = bounces.check_every
        scheduler.add_job(
            _guarded(
                "mailbox",
                lambda: process_mailbox(config, service.sessions, service.clock),
                database,
            ),
            IntervalTrigger(seconds=check.total_seconds()),
            id="mailbox",
            misfire_grace_time=None,
            replace_existing=True,
        )
    keep = config.retention.deliveries
    if keep is not None:
        from newsbroadcast.outbox.retention import fold_deliveries

        scheduler.add_job(
            _guarded(
                "retention",
                lambda: fold_deliveries(service.sessions, service.clock() - keep),
                database,
            ),
            IntervalTrigger(days=1),
            id="retention",
            misfire_grace_time=None,
            replace_existing=True,
        )
    return scheduler


def _plan(service: Service, digest: Digest) -> None:
    service.plan_digest(digest)


def dispatch_budget(config: Config) -> timedelta:
    """How long one dispatch step of `run` may claim batches: ``scheduler.dispatch_budget``,
    but at most half the shortest digest ``catch_up``, so a plan job that fires during a
    step still runs within its window."""
    return min([config.scheduler.dispatch_budget] + [d.catch_up / 2 for d in config.digests])


def dispatch_step(service: Service) -> DispatchReport:
    """One scheduled dispatch: send what is due within the budget of the config in use now
    (a reload may change it); the next step goes on where this one stopped."""
    return service.dispatch(dispatch_budget(service.config))


def _guarded(
    what: str, step: Callable[[], object], database: db.DatabaseWatch | None = None
) -> Callable[[], None]:
    """A step that logs its failure instead of killing the scheduler's thread. With
    ``database``, an outage is said once and waited out (db/engine.py), not logged per run."""

    def run() -> None:
        try:
            if database is None or database.reachable():
                step()
        except Exception as e:
            if database is None or not database.failed(e):
                log.exception("%s failed; the next run will try again", what)

    return run


def run_forever(
    service: Service, stop: threading.Event | None = None, watch: Path | None = None
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set), then finish the step in progress.
    With ``watch`` (the config file), changes to it, its folder and the templates are
    reloaded while running (see config/reload.py)."""
    stop = stop or threading.Event()
    every = service.config.scheduler.watch_every.total_seconds()
    # Made first: a change saved during the start-up pass is seen by the first look.
    watcher = reload.ConfigWatcher(service, watch) if watch is not None and every > 0 else None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info(
                "%s received: stopping after the step in progress", signal.Signals(signum).name
            )
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    # A drain can last as long as the backlog (a big edition under a rate limit): the
    # dispatcher must hear the stop itself, or "after the step in progress" means after
    # the last subscriber. It then hands its unsent rows back queued.
    def stop_the_dispatcher() -> None:
        stop.wait()
        service.dispatcher.stopping.set()

    threading.Thread(target=stop_the_dispatcher, name="stop-dispatcher", daemon=True).start()
    try:
        _run_until_stopped(service, stop, watcher, every)
    finally:
        stop.set()  # also on an error: the dispatcher (and the thread above) end with us


def _run_until_stopped(
    service: Service, stop: threading.Event, watcher: reload.ConfigWatcher | None, every: float
) -> None:
    # The start-up pass: poll, make up editions missed within their catch-up window, send.
    # The sending is budgeted as in the jobs: a backlog must not keep the scheduler from
    # starting.
    steps: list[tuple[str, Callable[[], object]]] = [
        ("poll", service.poll),
        ("plan_digests", service.plan_digests),
        ("dispatch", lambda: dispatch_step(service)),
    ]
    for name, step in steps:
        if stop.is_set():
            return
        _guarded(name, step, db.watch(service.engine))()

    scheduler = build_scheduler(service)
    if watcher is not None:

        def jobs_follow(_config: object) -> None:
            touched = reload.reschedule(scheduler, build_scheduler(service))
            if touched:
                log.info("jobs rescheduled: %s", ", ".join(touched), extra={"jobs": touched})

        watcher.on_applied = jobs_follow
        reload.watch(scheduler, watcher, every)
    scheduler.start()
    log.info(
        "running: %d sources, %d digests, %d channels; Ctrl-C stops",
        len(service.config.sources),
        len(service.config.digests),
        len(service.config.social),
    )
    for job in scheduler.get_jobs():
        log.info("job %s: next at %s", job.id, job.next_run_time)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
        log.info("stopped")
