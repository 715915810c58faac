"""A long send never starves the other jobs: in `run`, one dispatch step claims batches for
at most ``scheduler.dispatch_budget``, then yields to the polls, plans and reloads queued
behind it on the scheduler's one thread; the next step goes on where it stopped."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func, insert, select

from newsbroadcast.config.model import load_config
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import (
    Article,
    Edition,
    EditionArticle,
    EditionStatus,
    Post,
    SendStatus,
    SourceState,
    Subscriber,
    SubscriberStatus,
    TransactionalEmail,
    utcnow,
)
from newsbroadcast.errors import ConfigError
from newsbroadcast.runtime.scheduler import dispatch_budget, run_forever
from newsbroadcast.service import Service
from newsbroadcast.subscribers.confirmation import queue_confirmation
from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.integration.test_delivery_scale import statuses
from tests.integration.test_hot_reload import wait_for
from tests.mastodon_server import TOKEN, MastodonServer
from tests.site import NEWSROOM_FEED, site_config, smtp_email, write_feed
from tests.smtp_sink import ReceivedMessage, SmtpSink

A_MOMENT = timedelta(microseconds=1)  # spent before the first batch ends, however fast


def test_a_budgeted_drain_ends_after_whole_batches_and_the_next_goes_on(
    engine: Engine, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            smtp={"connections": 2}, email={"batch_size": 5},
        )  # fmt: skip
        add_subscribers(engine, 23)
        service = service_for(config_path, engine)
        try:
            edition = plan_edition(service)
            # Spent at once: each connection still sends the one batch it claimed, whole,
            # and claims no other; nothing is left claimed.
            first = service.dispatch(A_MOMENT)
            assert first.sent == 10
            assert statuses(engine) == {"sent": 10, "queued": 13}
            second = service.dispatch(A_MOMENT)  # the next step goes on
            assert second.sent == 10
            assert statuses(engine) == {"sent": 20, "queued": 3}
            # No budget (`run --once`, `worker`): everything due.
            assert service.dispatch().sent == 3
            assert statuses(engine) == {"sent": 23}
            with sessions(engine)() as session:
                assert session.get_one(Edition, edition).status == EditionStatus.done
        finally:
            service.close()
    assert sorted(sink.recipients()) == sorted(f"r{i}@example.org" for i in range(23))


def unsent(engine: Engine, table: type[Post] | type[TransactionalEmail]) -> int:
    with sessions(engine)() as session:
        return (
            session.scalar(
                select(func.count()).select_from(table).where(table.status != SendStatus.sent)
            )
            or 0
        )


def test_past_the_deadline_no_post_or_confirmation_is_claimed_but_each_drain_claims_them_once(
    engine: Engine, tmp_path: Path
) -> None:
    """A drain's later rounds start no post or transactional email once its budget is
    spent (each post is a request with its own timeout, on the scheduler's one thread);
    its first round claims them whatever the time, so a big edition never holds them up."""
    write_feed(tmp_path / "feed.xml", 1, now=datetime.now(UTC))
    with SmtpSink() as sink, MastodonServer() as ms:
        config = site_config(
            tmp_path,
            sources=[NEWSROOM_FEED],
            email=smtp_email(sink.port, batch_size=5),
            social=[{"name": "fedi", "type": "mastodon", "api_base_url": ms.url,
                     "access_token": TOKEN, "timeout": "5s", "backfill": 10}],
            scheduler={"lease": "5m"},
        )  # fmt: skip
        service = Service(config, engine=engine)
        try:
            add_subscribers(engine, 7)
            plan_edition(service)  # 7 deliveries; the poll queued the story's post
            with sessions(engine).begin() as session:
                now = utcnow()
                pending = session.execute(
                    insert(Subscriber)
                    .values(email="ada@example.org", email_key="ada@example.org",
                            language="en", status=SubscriberStatus.pending, bounce_count=0,
                            created_at=now, updated_at=now)
                    .returning(Subscriber)
                ).scalar_one()  # fmt: skip
                assert queue_confirmation(session, config, pending, now)
            assert unsent(engine, Post) == 1 and unsent(engine, TransactionalEmail) == 1

            late = service.dispatcher.dispatch_once(time.monotonic(), claim_late=False)
            assert late.sent == 5  # the connection's one batch of deliveries, nothing else
            assert ms.statuses == []
            assert unsent(engine, Post) == 1 and unsent(engine, TransactionalEmail) == 1

            first = service.dispatch(A_MOMENT)
            assert first.sent == 2 + 1 + 1  # deliveries, the confirmation, the post
            assert len(ms.statuses) == 1
            assert unsent(engine, Post) == 0 and unsent(engine, TransactionalEmail) == 0
        finally:
            service.close()
    assert "ada@example.org" in sink.recipients()


def test_the_budget_leaves_every_digest_time_within_its_catch_up(tmp_path: Path) -> None:
    config_path = write_site(tmp_path, f"sqlite:///{tmp_path / 'nb.db'}", 25)
    settings = yaml.safe_load(config_path.read_text())
    settings["digests"].append(
        {"name": "breaking", "cron": "* * * * *", "catch_up": "20s"},
    )
    config_path.write_text(yaml.safe_dump(settings))
    assert dispatch_budget(load_config(config_path)) == timedelta(seconds=10)
    settings["scheduler"]["dispatch_budget"] = "3s"
    config_path.write_text(yaml.safe_dump(settings))
    assert dispatch_budget(load_config(config_path)) == timedelta(seconds=3)
    settings["scheduler"]["dispatch_budget"] = "0s"  # "no limit" or "one batch"? Neither.
    config_path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError) as refused:
        load_config(config_path)
    assert "dispatch_budget" in str(refused.value.problems[0])


TITLE = "Women officers join the night patrol"
STORY = f"""<item>
  <title>{TITLE}</title>
  <link>https://newsroom.example.org/2026/night-patrol</link>
  <guid>night-patrol</guid>
  <pubDate>{{date}}</pubDate>
  <description>Told during a long send.</description>
</item>
"""


def test_a_long_send_still_lets_polls_run_and_digests_plan_within_catch_up(
    tmp_path: Path,
) -> None:
    """A big edition goes out slowly (far longer than this test waits); meanwhile a story
    is published, a poll must store it and the every-minute digest must make its edition
    within its 20 s catch_up. Before the budget, the drain held the scheduler's one thread
    until the last subscriber: no poll ran, and the digest's send time went by, missed."""
    on_the_wire = threading.Event()

    def drain_in_progress(_message: ReceivedMessage) -> None:
        on_the_wire.set()

    # 0.1 s per message, 3,000 subscribers: the send lasts at least five minutes.
    with SmtpSink(delay=0.1, on_data=drain_in_progress) as sink:
        config_path = write_site(
            tmp_path, f"sqlite:///{tmp_path / 'nb.db'}", sink.port,
            email={"batch_size": 5}, cron="* * * * *",
            scheduler={"dispatch_every": "0.2s", "dispatch_budget": "1s"},
        )  # fmt: skip
        settings = yaml.safe_load(config_path.read_text())
        settings["sources"][0]["poll_every"] = "1s"
        settings["digests"][0]["catch_up"] = "20s"
        config_path.write_text(yaml.safe_dump(settings))
        service = service_for(config_path)
        add_subscribers(service.engine, 3000)
        big = plan_edition(service)  # takes both stories of the feed
        stop = threading.Event()
        runner = threading.Thread(target=run_forever, args=(service, stop))
        runner.start()
        try:
            wait_for("the big edition to be on the wire", on_the_wire.is_set, 60)
            published = utcnow()
            feed = tmp_path / "feed.xml"
            story = STORY.format(date=format_datetime(published, usegmt=True))
            feed.write_text(feed.read_text().replace("<item>", story + "<item>", 1))

            def stored() -> bool:
                with service.sessions() as session:
                    return (
                        session.scalar(select(Article.id).where(Article.title == TITLE)) is not None
                    )

            wait_for("a poll to store the new story", stored, 60)

            def planned() -> list[str]:
                with service.sessions() as session:
                    return list(
                        session.scalars(
                            select(Edition.period)
                            .join(EditionArticle, EditionArticle.edition_id == Edition.id)
                            .join(Article, Article.id == EditionArticle.article_id)
                            .where(Article.title == TITLE)
                        )
                    )

            # The next minute's send time (at most a minute off, plus one missed by a hair).
            wait_for("the digest to plan an edition with the story", planned, 150)
            with service.sessions() as session:
                state = session.get_one(SourceState, "newsroom")
                assert state.last_polled_at is not None and state.last_polled_at >= published
                # Planned while the big send was still going on, not after it.
                assert session.get_one(Edition, big).status == EditionStatus.sending
            assert not planned()[0].startswith("manual-")
        finally:
            stop.set()
            runner.join(timeout=60)
            service.close()
    assert not runner.is_alive()
