"""What counts against a message, on a real database (SQLite file and PostgreSQL) into a
real SMTP sink: an outage never fails a delivery, the rate limit holds at the receiver in
every sliding second from the first, and the automatic pause is judged on the outcomes of
every dispatcher together."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, func, select

from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Delivery
from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.integration.test_delivery_scale import DEADLINE, edition_status, statuses, wait_for
from tests.smtp_sink import ReceivedMessage, SmtpSink, free_port

OUTAGE = 60.0  # seconds without a server: far past what max_attempts tries take


def _fewest_claims(engine: Engine) -> int:
    with sessions(engine)() as session:
        return session.scalar(select(func.min(Delivery.claims))) or 0


def test_a_long_outage_under_short_retries_fails_nothing(engine: Engine, tmp_path: Path) -> None:
    port = free_port()  # the server is down from the start
    config_path = write_site(
        tmp_path, engine.url.render_as_string(False), port,
        smtp={"connections": 2, "timeout": "1s"},
        email={"retry_after": "0.1s", "max_attempts": 3, "outage_wait_max": "1s",
               "batch_size": 25},
    )  # fmt: skip
    everyone = add_subscribers(engine, 150)
    service = service_for(config_path, engine)
    edition = plan_edition(service)
    stop = threading.Event()

    def worker() -> None:  # what `newsbroadcast worker` does, time-compressed
        while not stop.is_set():
            service.dispatch()
            stop.wait(0.05)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        down_until = time.monotonic() + OUTAGE
        # Every delivery met the dead server more often than max_attempts allows, and the
        # outage lasted its full length.
        wait_for(lambda: _fewest_claims(engine) > 3, "every delivery to be tried 4 times")
        while time.monotonic() < down_until:
            now = statuses(engine)  # queued, or claimed for a try that will fail
            assert now["queued"] + now["sending"] == 150, f"an outage ended deliveries: {now}"
            stop.wait(0.5)
        assert edition_status(engine, edition) == "sending"
        with SmtpSink(port=port) as back:  # the same server comes back
            wait_for(lambda: edition_status(engine, edition) == "done", "the edition to finish")
            stop.set()
            thread.join()
    finally:
        stop.set()
        thread.join()
    assert statuses(engine) == {"sent": 150}
    assert Counter(back.recipients()) == Counter(everyone)  # each served once
    with sessions(engine)() as session:
        assert session.scalar(select(func.max(Delivery.attempts))) == 0


def _busiest_second(accepted: list[float]) -> int:
    """The most accept times in any sliding window of one second."""
    times = sorted(accepted)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_rate_limit_holds_at_the_receiver_from_the_first_second(
    engine: Engine, tmp_path: Path
) -> None:
    accepted: list[float] = []

    def note(message: ReceivedMessage) -> None:
        accepted.append(time.time())

    with SmtpSink(on_data=note, delay=0.002) as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            email={"rate_limit": {"per_second": 20}, "batch_size": 50},
            smtp={"connections": 2},
        )  # fmt: skip
        everyone = add_subscribers(engine, 90)
        edition = plan_edition(service_for(config_path, engine))
        # Three dispatchers, as three worker processes would be, sending at the same time.
        services = [service_for(config_path, engine) for _ in range(3)]
        stop = threading.Event()

        def worker(service) -> None:  # type: ignore[no-untyped-def]
            while not stop.is_set() and edition_status(engine, edition) != "done":
                service.dispatch()
                stop.wait(0.01)

        threads = [threading.Thread(target=worker, args=(s,)) for s in services]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: edition_status(engine, edition) == "done", "the edition to finish")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert Counter(sink.recipients()) == Counter(everyone)
    assert len(accepted) == 90
    assert _busiest_second(accepted) <= 20


def test_automatic_pause_counts_every_dispatchers_refusals(engine: Engine, tmp_path: Path) -> None:
    with SmtpSink(data_reply="554 5.7.1 Service unavailable; client host blocked") as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            email={"auto_pause": {"window": 20, "failure_share": 0.5}, "batch_size": 10},
            smtp={"connections": 2},
        )  # fmt: skip
        add_subscribers(engine, 300)
        edition = plan_edition(service_for(config_path, engine))
        services = [service_for(config_path, engine) for _ in range(3)]
        reports = []
        threads = [
            threading.Thread(target=lambda s=s: reports.append(s.dispatch())) for s in services
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert edition_status(engine, edition) == "paused"
        failed = statuses(engine)["failed"]
        # One window's worth, plus at most the messages on the wire of the other five
        # connections when the edition was paused: not one window per dispatcher.
        assert 20 <= failed <= 20 + 5
        assert sum(r.failed for r in reports) == failed
