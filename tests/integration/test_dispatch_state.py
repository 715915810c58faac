"""The dispatcher's state machine on SQLite and PostgreSQL: leases, skips, give-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update

from newsbroadcast.app import Service
from newsbroadcast.config import Config
from newsbroadcast.dispatch import backoff, claim
from newsbroadcast.models import Delivery, Post, SendStatus, Subscriber, SubscriberStatus
from newsbroadcast.subscribers import add_subscriber
from tests.conftest import ROOT
from tests.smtp_sink import SmtpSink

FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<link>https://newsroom.example.org/</link><description>d</description>
<item><title>Kyrgyz border guards graduate first women's cohort</title>
<link>https://newsroom.example.org/kg-cohort</link><guid>kg-cohort</guid>
<pubDate>Sat, 28 Nov 2026 08:00:00 GMT</pubDate><description>Thirty officers.</description></item>
</channel></rss>"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def service_for(engine: Engine, tmp_path: Path, sink: SmtpSink, clock: Clock) -> Service:
    (tmp_path / "feed.xml").write_text(FEED)
    config = Config.model_validate(
        {
            "root": str(tmp_path),
            "templates": str(ROOT / "templates"),
            "site": {
                "name": "Women in Uniform",
                "url": "https://newsroom.example.org",
                "public_url": "https://news.example.org",
                "from": "digest@newsroom.example.org",
                "list_id": "digest.example.org",
                "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
                "secret": "state-secret-0123456789",
            },
            "sources": [{"name": "newsroom", "type": "feed", "url": "feed.xml"}],
            "email": {
                "transport": "smtp",
                "max_attempts": 2,
                "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none"},
            },
            "digests": [{"name": "daily", "cron": "0 7 * * *", "timezone": "Africa/Kigali"}],
            # The feed is met on this first read: its newest story is the backfill.
            "social": [{"name": "wire", "type": "file", "dir": "posts", "backfill": 1}],
            "scheduler": {"lease": "5m"},
        }
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
            assert {d.attempts for d in session.scalars(select(Delivery))} == {2}


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
