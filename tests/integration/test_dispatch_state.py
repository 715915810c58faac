"""The dispatcher's state machine on SQLite and PostgreSQL: leases, skips, give-ups."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update

from newsbroadcast.db.models import Delivery, Post, SendStatus, Subscriber, SubscriberStatus
from newsbroadcast.dispatch.email import HALT_CHECK_SECONDS
from newsbroadcast.outbox.claim import backoff, claim
from newsbroadcast.service import Service
from newsbroadcast.subscribers.registry import add_subscriber
from newsbroadcast.subscribers.suppressions import is_suppressed, suppress
from tests.site import NEWSROOM_FEED, Clock, site_config, smtp_email, write_feed
from tests.smtp_sink import ReceivedMessage, SmtpSink

TITLE = "Kyrgyz border guards graduate first women's cohort"


def service_for(engine: Engine, tmp_path: Path, sink: SmtpSink, clock: Clock) -> Service:
    write_feed(tmp_path / "feed.xml", 1, now=clock.now, titles={0: TITLE})
    config = site_config(
        tmp_path,
        sources=[NEWSROOM_FEED],
        email=smtp_email(sink.port, max_attempts=2),
        # The feed is met on this first read: its newest story is the backfill.
        social=[{"name": "wire", "type": "file", "dir": "posts", "backfill": 1}],
        scheduler={"lease": "5m"},
    )
    service = Service(config, engine=engine, clock=clock)
    with service.sessions() as session:
        for i in range(3):
            add_subscriber(session, f"reader{i}@example.org", clock())
        session.commit()
    return service


def test_a_claim_left_by_a_dead_dispatcher_is_taken_again_after_its_lease(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock()
    with SmtpSink() as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.poll()
        service.plan_digests()
        with service.sessions() as session:
            # A dispatcher claims everything, then dies before sending anything.
            taken = claim(session, Delivery, clock(), timedelta(minutes=5), 100)
            assert len(taken) == 3
            assert claim(session, Delivery, clock(), timedelta(minutes=5), 100) == []
        assert service.dispatch().sent == 1  # only the post: the deliveries are leased
        assert sink.messages == []
        clock.now += timedelta(minutes=6)
        assert service.dispatch().sent == 3
        assert sorted(sink.recipients()) == [f"reader{i}@example.org" for i in range(3)]
        with service.sessions() as session:
            # Claimed twice, refused never: the crash spent no attempt.
            rows = session.scalars(select(Delivery)).all()
            assert {(d.claims, d.attempts) for d in rows} == {(2, 0)}


def test_crashes_spend_no_attempts_so_a_first_refusal_is_retried(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock()
    with SmtpSink(defer={"reader0@example.org": 1}) as sink:
        service = service_for(engine, tmp_path, sink, clock)  # max_attempts: 2
        service.poll()
        service.plan_digests()
        for _ in range(4):  # four dispatchers claim everything and die before sending
            with service.sessions() as session:
                assert len(claim(session, Delivery, clock(), timedelta(minutes=5), 100)) == 3
            clock.now += timedelta(minutes=6)
        report = service.dispatch()
        assert (report.failed, report.retried) == (0, 1)  # the 451 is its first refusal
        with service.sessions() as session:
            row = session.scalar(
                select(Delivery).join(Subscriber).where(Subscriber.email == "reader0@example.org")
            )
            assert (row.status, row.attempts, row.claims) == (SendStatus.queued, 1, 5)
        clock.now += timedelta(hours=1)
        assert service.dispatch().sent == 1
        assert sorted(sink.recipients()) == [f"reader{i}@example.org" for i in range(3)]


def test_unsubscribed_while_queued_is_skipped_not_sent(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    with SmtpSink() as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.poll()
        service.plan_digests()
        with service.sessions() as session:
            session.execute(
                update(Subscriber)
                .where(Subscriber.email == "reader1@example.org")
                .values(status=SubscriberStatus.unsubscribed)
            )
            session.commit()
        report = service.dispatch()
        assert (report.sent, report.skipped) == (3, 1)  # 2 deliveries + 1 post; 1 skipped
        assert "reader1@example.org" not in sink.recipients()
        with service.sessions() as session:
            statuses = sorted(session.scalars(select(Delivery.status)))
        assert statuses == ["sent", "sent", "skipped"]


def test_gives_up_after_max_attempts(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    with SmtpSink(defer={"reader0@example.org": 10}) as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.run_once()
        clock.now += timedelta(hours=1)
        service.dispatch()
        with service.sessions() as session:
            row = session.scalar(
                select(Delivery).join(Subscriber).where(Subscriber.email == "reader0@example.org")
            )
        assert row.status == SendStatus.failed and row.attempts == 2
        assert row.last_error.startswith("gave up: ")
        assert sink.recipients().count("reader0@example.org") == 0


def test_posts_are_made_once_per_article_and_channel(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    with SmtpSink() as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.run_once()
        service.run_once()
        assert service.plan_posts() == 0
        with service.sessions() as session:
            posts = session.scalars(select(Post)).all()
        assert len(posts) == 1 and posts[0].status == SendStatus.sent
        assert "Kyrgyz border guards" in posts[0].text
        lines = (tmp_path / "posts/wire.jsonl").read_text().splitlines()
        assert len(lines) == 1


def test_backoff_doubles_and_is_capped() -> None:
    base = timedelta(minutes=1)
    assert [backoff(base, n) for n in (1, 2, 3)] == [base, 2 * base, 4 * base]
    assert backoff(base, 30) == timedelta(hours=6)
    assert backoff(base, 10_000) == timedelta(hours=6)  # a long outage keeps counting


def test_unsubscribed_after_the_claim_is_skipped_not_sent(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    unsubscribed = threading.Event()

    def reader1_leaves(message: ReceivedMessage) -> None:
        # While the batch is on its way: reader1 unsubscribes, and the dispatcher's next
        # look at the batch (at most HALT_CHECK_SECONDS later) must see it.
        if "reader0@example.org" in message.recipients and not unsubscribed.is_set():
            with service.sessions() as session:
                session.execute(
                    update(Subscriber)
                    .where(Subscriber.email == "reader1@example.org")
                    .values(status=SubscriberStatus.unsubscribed)
                )
                session.commit()
            unsubscribed.set()
            time.sleep(HALT_CHECK_SECONDS * 1.2)  # the reply comes after the look is due

    with SmtpSink(on_data=reader1_leaves) as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.poll()
        service.plan_digests()
        report = service.dispatch()
        assert unsubscribed.is_set()
        assert report.skipped == 1
        assert sorted(sink.recipients()) == ["reader0@example.org", "reader2@example.org"]
        with service.sessions() as session:
            skipped = session.scalar(
                select(Delivery).join(Subscriber).where(Subscriber.email == "reader1@example.org")
            )
            assert skipped.status == SendStatus.skipped


def test_a_suppressed_address_is_skipped_even_while_still_active(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock()
    with SmtpSink() as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.poll()
        service.plan_digests()
        with service.sessions() as session:
            suppress(session, "Reader2@example.org", "admin", clock())
            session.commit()
        assert service.dispatch().skipped == 1
        assert "reader2@example.org" not in sink.recipients()


def test_no_such_user_suppresses_the_address_at_once(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    with SmtpSink(reject={"reader1@example.org"}) as sink:  # 550 5.1.1 User unknown
        service = service_for(engine, tmp_path, sink, clock)  # bounce_after: 3 (default)
        service.poll()
        service.plan_digests()
        assert service.dispatch().failed == 1
        with service.sessions() as session:
            gone = session.scalar(
                select(Subscriber).where(Subscriber.email == "reader1@example.org")
            )
            assert gone.status == SubscriberStatus.bounced
            assert is_suppressed(session, "reader1@example.org")


def test_a_full_mailbox_is_soft_and_a_blocked_sender_not_held_against_the_address(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock()
    with SmtpSink(data_reply="552 5.2.2 Mailbox full") as sink:
        service = service_for(engine, tmp_path, sink, clock)
        service.poll()
        service.plan_digests()
        service.dispatch()
        with service.sessions() as session:
            subs = session.scalars(select(Subscriber).order_by(Subscriber.email)).all()
            assert {(s.status, s.soft_bounce_count, s.bounce_count) for s in subs} == {
                (SubscriberStatus.active, 1, 0)
            }
        sink.data_reply = "554 5.7.1 Client host blocked"
        with service.sessions() as session:
            session.execute(update(Delivery).values(status=SendStatus.queued))
            session.commit()
        service.dispatch()
        with service.sessions() as session:
            subs = session.scalars(select(Subscriber)).all()
            assert {(s.status, s.soft_bounce_count, s.bounce_count) for s in subs} == {
                (SubscriberStatus.active, 1, 0)
            }
            assert not is_suppressed(session, "reader0@example.org")
