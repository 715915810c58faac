"""The scheduler's wiring: which jobs exist, in which time zones, with which grace."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsbroadcast.config import reload
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Article, Delivery, SendStatus, utcnow
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.runtime.scheduler import build_scheduler, run_forever
from newsbroadcast.service import Service
from newsbroadcast.subscribers.registry import add_subscriber
from tests.conftest import ROOT
from tests.site import DAILY, NEWSROOM_FEED, site_config
from tests.smtp_sink import ReceivedMessage, SmtpSink


def config(tmp_path: Path) -> Config:
    return site_config(
        tmp_path,
        sources=[{**NEWSROOM_FEED, "url": str(ROOT / "examples/feed.xml"), "poll_every": "10m"}],
        digests=[{**DAILY, "catch_up": "3h"}],
        scheduler={"dispatch_every": "7s"},
    )


def test_jobs_follow_the_config(tmp_path: Path) -> None:
    service = Service(config(tmp_path))
    scheduler = build_scheduler(service)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"poll:newsroom", "digest:daily", "dispatch"}
        digest = jobs["digest:daily"]
        assert str(digest.trigger.timezone) == "Africa/Kigali"
        assert digest.misfire_grace_time == 3 * 3600 and digest.coalesce
        assert digest.max_instances == 1
        first = digest.trigger.get_next_fire_time(None, datetime(2026, 11, 29, 6, tzinfo=UTC))
        assert first.astimezone(UTC) == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
        assert jobs["poll:newsroom"].trigger.interval.total_seconds() == 600
        assert jobs["dispatch"].trigger.interval.total_seconds() == 7
        # Held back by a dispatch step longer than their period, these still run (once):
        # a limit of one period would drop every one of them while a big edition goes out.
        reload.watch(scheduler, reload.ConfigWatcher(service, tmp_path / "config.yaml"), 2)
        for job_id in ("poll:newsroom", "dispatch", reload.JOB_ID):
            job = scheduler.get_job(job_id)
            assert job.misfire_grace_time is None and job.coalesce, job_id
    finally:
        scheduler.shutdown(wait=False)
        service.close()


def test_run_forever_does_the_start_up_pass_and_returns_when_stopped(tmp_path: Path) -> None:
    service = Service(config(tmp_path))
    stop = threading.Event()
    worker = threading.Thread(target=run_forever, args=(service, stop))
    worker.start()
    try:
        deadline = datetime.now(UTC).timestamp() + 30
        count = 0
        while datetime.now(UTC).timestamp() < deadline:
            with service.sessions() as session:
                count = session.scalar(select(func.count()).select_from(Article)) or 0
            if count:
                break
            threading.Event().wait(0.1)
        assert count > 0  # the start-up pass polled the feed
    finally:
        stop.set()
        worker.join(timeout=30)
        service.close()
    assert not worker.is_alive()


def test_a_stop_ends_the_drain_in_progress_and_leaves_the_rest_queued(tmp_path: Path) -> None:
    """Stopping must not wait for the whole backlog to go out: the dispatcher hears it,
    finishes the message on the wire and hands the others back, queued for the next run."""
    stop = threading.Event()
    stop_seen = threading.Event()

    def stop_while_the_first_message_is_on_the_wire(_message: ReceivedMessage) -> None:
        stop.set()
        # Accept only once the dispatcher was told (or give up: the test then fails below).
        deadline = time.monotonic() + 30
        while not service.dispatcher.stopping.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        if service.dispatcher.stopping.is_set():
            stop_seen.set()

    with SmtpSink(on_data=stop_while_the_first_message_is_on_the_wire) as sink:
        settings = config(tmp_path).model_dump()
        settings["email"] = {"transport": "smtp", "smtp": sink.settings().model_dump()}
        service = Service(Config.model_validate(settings))
        try:
            with service.sessions() as session:
                for i in range(5):
                    add_subscriber(session, f"reader{i}@example.org", utcnow())
                session.commit()
            service.poll()
            planned = service.plan_digest(service.config.digest("daily"), force=True)
            assert planned is not None and planned.deliveries == 5
            runner = threading.Thread(target=run_forever, args=(service, stop))
            runner.start()
            runner.join(timeout=60)
            assert not runner.is_alive()
            assert stop_seen.is_set()
            assert len(sink.messages) == 1
            with service.sessions() as session:
                states = session.scalars(select(Delivery.status)).all()
            assert sorted(states) == [SendStatus.queued] * 4 + [SendStatus.sent]
        finally:
            service.close()


def test_a_dispatch_step_longer_than_its_period_is_not_a_warning_each_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="apscheduler")  # as `--verbose` sets it
    service = Service(site_config(tmp_path, scheduler={"dispatch_every": "0.05s"}))
    ran = threading.Event()

    def long_step(_budget: object = None) -> DispatchReport:
        time.sleep(0.4)  # eight periods: the job fires seven times while this runs
        ran.set()
        return DispatchReport()

    service.dispatch = long_step  # type: ignore[method-assign]
    scheduler = build_scheduler(service)
    scheduler.start()
    try:
        assert ran.wait(30)
        time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
        service.close()
    overlaps = [r for r in caplog.records if "maximum number of running" in r.getMessage()]
    assert overlaps, "APScheduler said nothing: the step did not outlast its period"
    assert {r.levelname for r in overlaps} == {"DEBUG"}
