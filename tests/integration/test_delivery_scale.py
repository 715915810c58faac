"""Delivery at scale on a real database (SQLite file and PostgreSQL) into a real SMTP
server: disjoint claims, pause/resume/restart, automatic pause, the shared rate limit, an
SMTP server that goes away and comes back, and Prometheus metrics."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select, text, update

from newsbroadcast.config.model import RateLimit
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Delivery, Edition
from newsbroadcast.outbox.claim import claim
from newsbroadcast.outbox.ratelimit import SendRateLimiter
from newsbroadcast.outbox.steering import pause_edition, progress, resume_edition
from newsbroadcast.runtime import metrics
from newsbroadcast.runtime.progress import ProgressBar
from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.smtp_sink import ReceivedMessage, SmtpSink

DEADLINE = 60.0  # seconds a loop may wait for something that should happen far sooner


def statuses(engine: Engine) -> Counter[str]:
    with sessions(engine)() as session:
        return Counter(
            dict(
                session.execute(
                    select(Delivery.status, func.count()).group_by(Delivery.status)
                ).all()
            )
        )


def edition_status(engine: Engine, edition_id: int) -> str:
    with sessions(engine)() as session:
        return session.get_one(Edition, edition_id).status


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_concurrent_claims_are_disjoint(engine: Engine, tmp_path: Path) -> None:
    config_path = write_site(tmp_path, engine.url.render_as_string(False), 25)
    add_subscribers(engine, 1500)
    service = service_for(config_path, engine)
    plan_edition(service)
    now = datetime.now(UTC) + timedelta(seconds=1)
    taken: list[list[int]] = [[] for _ in range(6)]
    errors: list[BaseException] = []

    def worker(mine: list[int]) -> None:
        try:
            with service.sessions() as session:
                while ids := claim(session, Delivery, now, timedelta(minutes=5), 37):
                    mine.extend(ids)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    everything = [i for ids in taken for i in ids]
    assert len(everything) == len(set(everything)) == 1500  # nobody claimed a row twice
    assert sum(1 for ids in taken if ids) > 1  # and the work really was shared
    assert statuses(engine) == {"sending": 1500}


def test_each_send_is_recorded_before_the_next_is_accepted(engine: Engine, tmp_path: Path) -> None:
    """The kill guarantee (at most one repeat per connection), checked at the moment it
    matters: when a message's DATA arrives, the message before it on the same connection
    is already recorded sent. On PostgreSQL each record is made slow on purpose, so a
    dispatcher that sent on without waiting for the record would be caught."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE FUNCTION slow_record() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER slow_record BEFORE UPDATE ON deliveries FOR EACH ROW "
                    "WHEN (NEW.status = 'sent') EXECUTE FUNCTION slow_record()"
                )
            )
    previous: dict[int, str] = {}  # connection → Message-ID of its last message
    unrecorded: list[str] = []

    def check(message: ReceivedMessage) -> None:
        before = previous.get(message.connection)
        if before is not None:
            with engine.connect() as conn:
                status = conn.scalar(select(Delivery.status).where(Delivery.message_id == before))
            if status != "sent":
                unrecorded.append(f"{before} was {status} when the next message arrived")
        header = message_from_bytes(message.data)["Message-ID"]
        previous[message.connection] = str(header).strip("<>")

    with SmtpSink(on_data=check) as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            smtp={"connections": 2}, email={"batch_size": 25},
        )  # fmt: skip
        add_subscribers(engine, 120)
        service = service_for(config_path, engine)
        plan_edition(service)
        assert service.dispatch().sent == 120
    assert len(sink.messages) == 120
    assert unrecorded == []


def test_a_batch_slower_than_its_lease_renews_it_so_no_one_else_sends_it(
    engine: Engine, tmp_path: Path
) -> None:
    """One batch of 40 on a server that takes 50 ms a message outlasts a 0.4 s lease five
    times over; the dispatcher renews the lease as it goes, so a second dispatcher polling
    all the while finds nothing to take, and each subscriber gets one copy."""
    with SmtpSink(delay=0.05) as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            email={"batch_size": 40}, scheduler={"lease": "0.4s"},
        )  # fmt: skip
        everyone = add_subscribers(engine, 40)
        first = service_for(config_path, engine)
        plan_edition(first)
        second = service_for(config_path, engine)
        sender = threading.Thread(target=first.dispatch)
        sender.start()
        wait_for(lambda: len(sink.messages) >= 1, "the first message")
        taken_over = 0
        while sender.is_alive():
            taken_over += second.dispatch().handled
            time.sleep(0.05)
        sender.join()
    assert taken_over == 0
    assert Counter(sink.recipients()) == Counter(everyone)
    assert statuses(engine) == {"sent": 40}


def test_pause_resume_and_restart_neither_resend_nor_skip(engine: Engine, tmp_path: Path) -> None:
    with SmtpSink(delay=0.003) as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            smtp={"connections": 3}, email={"batch_size": 20},
        )  # fmt: skip
        everyone = add_subscribers(engine, 300)
        service = service_for(config_path, engine)
        edition = plan_edition(service)

        sender = threading.Thread(target=service.dispatch)
        sender.start()
        wait_for(lambda: len(sink.messages) >= 60, "60 messages")
        assert pause_edition(service.sessions(), edition)
        sender.join()
        paused_at = statuses(engine)
        assert 60 <= paused_at["sent"] < 300
        assert paused_at["sending"] == 0  # claimed rows were handed back, not left leased
        assert paused_at["sent"] == len(sink.messages)

        # A new process (a restart) while paused sends nothing…
        restarted = service_for(config_path, engine)
        assert restarted.dispatch().sent == 0
        with restarted.sessions() as session:
            (shown,) = progress(session, datetime.now(UTC))
            assert shown.status == "paused" and shown.sent == paused_at["sent"]
        # …and after resume sends exactly the rest.
        assert resume_edition(restarted.sessions(), edition)
        report = restarted.dispatch()
        assert report.sent == 300 - paused_at["sent"]
        assert statuses(engine) == {"sent": 300}
        assert edition_status(engine, edition) == "done"
        assert Counter(sink.recipients()) == Counter(everyone)  # each exactly once


def test_automatic_pause_when_most_messages_are_refused(engine: Engine, tmp_path: Path) -> None:
    with SmtpSink(data_reply="554 5.7.1 Service unavailable; client host blocked") as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            email={"auto_pause": {"window": 20, "failure_share": 0.5}, "bounce_after": 99},
        )  # fmt: skip
        everyone = add_subscribers(engine, 200)
        service = service_for(config_path, engine)
        edition = plan_edition(service)
        report = service.dispatch()
        assert report.failed == 20  # one window's worth, not the whole list
        assert edition_status(engine, edition) == "paused"
        assert statuses(engine) == {"failed": 20, "queued": 180}

        # Resumed while still blocked: a fresh window, so one more window's worth, not one.
        assert resume_edition(service.sessions(), edition)
        assert service.dispatch().failed == 20
        assert edition_status(engine, edition) == "paused"

        sink.data_reply = None  # the block is lifted
        assert resume_edition(service.sessions(), edition)
        assert service.dispatch().sent == 160
        assert edition_status(engine, edition) == "done"
        assert sorted(sink.recipients()) == sorted(everyone[40:])


def test_rate_limit_holds_for_all_dispatchers_together(engine: Engine, tmp_path: Path) -> None:
    with SmtpSink() as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            email={"rate_limit": {"per_hour": 30}, "batch_size": 7},
            smtp={"connections": 2},
        )  # fmt: skip
        add_subscribers(engine, 100)
        plan_edition(service_for(config_path, engine))
        # Three dispatchers, as three worker processes would be, sending at the same time.
        services = [service_for(config_path, engine) for _ in range(3)]
        threads = [threading.Thread(target=s.dispatch) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(sink.messages) == 30
        assert statuses(engine) == {"sent": 30, "queued": 70}
        # A restart does not forget the hour's sends.
        assert service_for(config_path, engine).dispatch().sent == 0
        assert len(sink.messages) == 30


def test_rate_limit_windows_slide(engine: Engine) -> None:
    now = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    clock = [now]
    limit = RateLimit(per_second=5, per_hour=12)
    first = SendRateLimiter(sessions(engine), "smtp", limit, lambda: clock[0])
    second = SendRateLimiter(sessions(engine), "smtp", limit, lambda: clock[0])

    def take_and_send(limiter: SendRateLimiter, wanted: int) -> int:
        # Each granted message's transaction ends at once (the clock stands still).
        grant = limiter.take(wanted)
        limiter.release(grant.slots, [clock[0]] * grant.granted)
        return grant.granted

    assert take_and_send(first, 3) == 3
    in_flight = second.take(3)
    assert in_flight.granted == 2  # 5 in this second, whoever took them
    refused = first.take(1)
    # Two messages are still on their way: their slots free one second after they end.
    assert refused.granted == 0 and refused.retry_at is not None
    assert refused.retry_at < now + timedelta(seconds=1)
    second.release(in_flight.slots, [now, now])
    refused = first.take(1)
    assert refused.granted == 0 and refused.retry_at == now + timedelta(seconds=1)
    clock[0] = now + timedelta(seconds=1, milliseconds=1)
    assert take_and_send(second, 10) == 5
    clock[0] = now + timedelta(seconds=3)
    assert take_and_send(first, 10) == 2  # 12 in the hour
    later = second.take(1)
    assert later.granted == 0 and later.retry_at == now + timedelta(hours=1)
    clock[0] = now + timedelta(hours=1, seconds=1)
    assert take_and_send(second, 10) == 5
    # The other transport has limits of its own.
    other = SendRateLimiter(sessions(engine), "file", limit, lambda: clock[0])
    assert other.take(10).granted == 5


def test_a_slot_counts_until_its_message_ended(engine: Engine) -> None:
    now = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    clock = [now]
    limiter = SendRateLimiter(sessions(engine), "smtp", RateLimit(per_second=2), lambda: clock[0])
    slow = limiter.take(2)  # two messages to a slow server
    clock[0] = now + timedelta(seconds=1, milliseconds=500)
    assert limiter.take(1).granted == 0  # still on their way: still in the window
    limiter.release(slow.slots, [clock[0], clock[0]])  # accepted only now
    clock[0] = now + timedelta(seconds=2)
    assert limiter.take(1).granted == 0  # the receiver saw both half a second ago
    clock[0] = now + timedelta(seconds=2, milliseconds=501)
    assert limiter.take(5).granted == 2
    # A dead dispatcher's slots, never released, stop counting after the hold.
    clock[0] = now + timedelta(minutes=6)
    assert limiter.take(5).granted == 2


def test_smtp_server_down_then_up_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    sink = SmtpSink(delay=0.001)
    sink.start()
    port = sink.port
    sink.stop()  # the server goes away before the edition starts
    config_path = write_site(
        tmp_path, engine.url.render_as_string(False), port,
        smtp={"connections": 2, "timeout": "1s"},
        email={"retry_after": "0.1s", "batch_size": 25},
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
        wait_for(lambda: statuses(engine)["queued"] == 150 and _attempted(engine) >= 3, "tries")
        assert statuses(engine)["sent"] == 0
        back = SmtpSink(port=port, delay=0.001).start()  # the same server comes back
        try:
            wait_for(lambda: edition_status(engine, edition) == "done", "the edition to finish")
        finally:
            stop.set()
            thread.join()
            back.stop()
    finally:
        stop.set()
        thread.join()
    assert statuses(engine) == {"sent": 150}
    assert Counter(back.recipients()) == Counter(everyone)


def _attempted(engine: Engine) -> int:
    with sessions(engine)() as session:
        return session.scalar(select(func.sum(Delivery.claims))) or 0


def test_metrics_count_messages_and_show_the_queue(engine: Engine, tmp_path: Path) -> None:
    with SmtpSink(reject={"r3@example.org"}) as sink:
        config_path = write_site(tmp_path, engine.url.render_as_string(False), sink.port)
        add_subscribers(engine, 10)
        service = service_for(config_path, engine)
        plan_edition(service)
        before_sent = metrics.MESSAGES.labels("smtp", "sent")._value.get()
        metrics.watch_queue(service.sessions)
        server = metrics.serve(0)
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            queued = httpx.get(url).text
            assert 'newsbroadcast_queue_depth{kind="delivery",status="queued"} 10.0' in queued
            service.dispatch()
            page = httpx.get(url).text
        finally:
            server.stop()
    assert metrics.MESSAGES.labels("smtp", "sent")._value.get() == before_sent + 9
    assert 'newsbroadcast_messages_total{outcome="failed",transport="smtp"}' in page
    assert 'newsbroadcast_queue_depth{kind="delivery",status="queued"} 0.0' in page
    assert 'newsbroadcast_send_seconds_count{transport="smtp"}' in page
    assert statuses(engine) == {"sent": 9, "failed": 1}


def test_progress_bar_draws_the_running_edition(engine: Engine, tmp_path: Path) -> None:
    config_path = write_site(tmp_path, engine.url.render_as_string(False), 25)
    add_subscribers(engine, 8)
    service = service_for(config_path, engine)
    edition = plan_edition(service)
    with service.sessions() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(select(Delivery.id).order_by(Delivery.id).limit(2)))
            .values(status="sent", sent_at=datetime.now(UTC))
        )
        session.commit()
    out = io.StringIO()
    bar = ProgressBar(service.sessions, stream=out, force=True)
    bar.draw()
    line = out.getvalue()
    assert f"edition #{edition} [" in line
    assert "2/8 done, 2 sent, 0 failed" in line and "ETA" in line
    assert ProgressBar(service.sessions, stream=io.StringIO()).enabled is False  # not a tty
