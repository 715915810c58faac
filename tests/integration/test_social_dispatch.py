"""X and Mastodon through the whole service (planner → posts → dispatcher) on SQLite and
PostgreSQL, against the loopback APIs: once per story, settled after a crash, paced."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.channels.x import LIMIT, weighted_length
from newsbroadcast.config import load_config
from newsbroadcast.db.models import Article, Post, SendStatus
from newsbroadcast.service import Service
from tests.cli_runner import run_cli
from tests.mastodon_server import TOKEN, MastodonServer, to_html
from tests.site import NEWSROOM_FEED, Clock, site_config, write_feed, write_site_yaml
from tests.smtp_sink import free_port
from tests.x_server import CREDENTIALS, XServer, route_x_to


@pytest.fixture
def servers() -> Iterator[tuple[XServer, MastodonServer]]:
    with XServer() as xs, MastodonServer() as ms:
        yield xs, ms


def social(xs: XServer, ms: MastodonServer, **extra: Any) -> list[dict[str, Any]]:
    # The stories posted here are in the feed's first read, its archive: a channel announces
    # those only as its backfill.
    extra = {"backfill": 10, **extra}
    return [
        {"name": "x", "type": "x", **CREDENTIALS, "timeout": "5s", **extra},
        {
            "name": "fedi",
            "type": "mastodon",
            "api_base_url": ms.url,
            "access_token": TOKEN,
            "timeout": "5s",
            **extra,
        },
    ]


def make_service(
    engine: Engine,
    tmp_path: Path,
    servers: tuple[XServer, MastodonServer],
    clock: Clock,
    **extra: Any,
) -> Service:
    xs, ms = servers
    config = site_config(
        tmp_path,
        sources=[NEWSROOM_FEED],
        digests=None,
        social=social(xs, ms, **extra),
        scheduler={"lease": "5m"},
    )
    service = Service(config, engine=engine, clock=clock)
    route_x_to(service.channels["x"].session, xs.url)  # type: ignore[attr-defined]
    return service


def posts(service: Service) -> list[Post]:
    with service.sessions() as session:
        return list(session.scalars(select(Post).order_by(Post.channel, Post.article_id)))


def test_each_story_goes_out_once_per_channel_with_the_stored_text(
    engine: Engine, tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    clock = Clock(datetime.now(UTC))
    write_feed(tmp_path / "feed.xml", 3, now=clock())
    service = make_service(engine, tmp_path, servers, clock)
    service.poll()
    service.dispatch()
    service.poll()  # a second pass plans and sends nothing
    assert service.dispatch().handled == 0

    rows = posts(service)
    assert [p.status for p in rows] == [SendStatus.sent] * 6
    assert sorted(t["text"] for t in xs.tweets) == sorted(p.text for p in rows if p.channel == "x")
    assert sorted(s["text"] for s in ms.statuses) == sorted(
        p.text for p in rows if p.channel == "fedi"
    )
    assert {p.remote_id for p in rows} == {t["id"] for t in xs.tweets} | {
        s["id"] for s in ms.statuses
    }
    assert all("#BorderManagement" in p.text and "/story-" in p.text for p in rows)


LONG_TITLE = (
    "Rwanda sends an all-woman peacekeeping unit to South Sudan, the first of its kind from "
    "the country, after two years of training with partners from the region and beyond, "
    "including instructors from Ghana, Kenya and Uganda, with officers drawn from the "
    "national police, the defence force and the correctional service, in what officials "
    "describe as a milestone for women in uniform across the whole of East Africa"
)


def test_a_title_too_long_for_x_is_shortened_and_a_post_that_cannot_fit_fails_alone(
    engine: Engine, tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    clock = Clock(datetime.now(UTC))
    # Story 0's title alone is over X's 280; story 2's hashtags are (but fit Mastodon's 500).
    many_tags = [f"topic {n}" for n in range(40)]
    write_feed(tmp_path / "feed.xml", 3, now=clock(), titles={0: LONG_TITLE}, tags={2: many_tags})
    # A site that wants every tag as a hashtag (the default keeps 3).
    service = make_service(engine, tmp_path, servers, clock, max_hashtags=40)
    assert weighted_length(LONG_TITLE) > LIMIT
    service.poll()
    assert service.dispatch().sent == 5
    service.poll()  # the failed post is not planned again
    assert service.dispatch().handled == 0

    with service.sessions() as session:
        rows = session.execute(select(Article.url, Post).join(Post)).all()
    by = {(url.rsplit("/", 1)[1], post.channel): post for url, post in rows}
    assert len(by) == 6
    shortened = by["story-0", "x"]
    assert shortened.status == SendStatus.sent
    assert weighted_length(shortened.text) <= LIMIT
    title, link = shortened.text.split("\n\n")[:2]
    assert title.endswith("…") and LONG_TITLE.startswith(title[:-1])
    assert link.startswith("https://newsroom.example.org/story-0")  # whole
    assert by["story-0", "fedi"].text.startswith(LONG_TITLE)  # fits Mastodon whole
    failed = by["story-2", "x"]
    assert failed.status == SendStatus.failed and failed.attempts == 0
    assert "limit is 280" in (failed.last_error or "")
    assert by["story-2", "fedi"].status == SendStatus.sent
    assert sorted(t["text"] for t in xs.tweets) == sorted(
        p.text for (_, ch), p in by.items() if ch == "x" and p.status == SendStatus.sent
    )
    assert len(ms.statuses) == 3


def test_posts_left_sending_by_a_crash_are_settled_not_posted_again(
    engine: Engine, tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    clock = Clock(datetime.now(UTC))
    write_feed(tmp_path / "feed.xml", 1, now=clock())
    service = make_service(engine, tmp_path, servers, clock)
    service.poll()
    # A dispatcher records its attempts, the networks accept both posts, and it dies
    # before recording the outcome: both rows stay `sending` under its lease.
    with service.sessions() as session:
        for post in session.scalars(select(Post)):
            post.status, post.attempts = SendStatus.sending, 1
            post.lease_until = clock() + timedelta(minutes=5)
            post.first_attempt_at = clock() - timedelta(hours=2)  # Mastodon forgot the key
            if post.channel == "x":
                xs.tweets.append({"id": "1861000000000000999", "text": post.text})
            else:
                ms.statuses.append(
                    {
                        "id": "113000000000000999",
                        "url": "https://social.example.org/@newsroom/113000000000000999",
                        "content": to_html(post.text),
                        "card": None,
                    }
                )
        session.commit()
    assert service.dispatch().handled == 0  # the lease still holds
    clock.now += timedelta(minutes=6)
    report = service.dispatch()
    assert report.sent == 2
    assert len(xs.tweets) == 1 and len(ms.statuses) == 1
    by_channel = {p.channel: p for p in posts(service)}
    assert by_channel["x"].status == SendStatus.sent and by_channel["x"].remote_id is None
    assert by_channel["fedi"].remote_id == "113000000000000999"  # found by its link


def test_rate_limits_delay_the_post_until_the_reset(
    engine: Engine, tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    clock = Clock(datetime.now(UTC))
    write_feed(tmp_path / "feed.xml", 1, now=clock())
    service = make_service(engine, tmp_path, servers, clock)
    xs.rate_limited, xs.rate_limit_reset_in = 1, 900
    ms.rate_limited, ms.rate_limit_reset_in = 1, timedelta(minutes=4)
    service.poll()
    assert service.dispatch().retried == 2
    due = {p.channel: p.next_attempt_at - clock() for p in posts(service)}
    assert timedelta(minutes=14) < due["x"] <= timedelta(minutes=15)
    assert timedelta(minutes=3) < due["fedi"] <= timedelta(minutes=5)
    clock.now += timedelta(minutes=5)
    assert service.dispatch().sent == 1 and len(ms.statuses) == 1 and xs.tweets == []
    clock.now += timedelta(minutes=11)
    assert service.dispatch().sent == 1 and len(xs.tweets) == 1


def test_the_pace_holds_across_dispatchers_and_keeps_to_its_hours(
    engine: Engine, tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    kigali_10am = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    clock = Clock(kigali_10am)
    write_feed(tmp_path / "feed.xml", 12, now=clock())
    pace = {"every": "10m", "between": "07:00-21:00", "timezone": "Africa/Kigali"}
    first = make_service(engine, tmp_path, servers, clock, pace=pace)
    first.poll()
    assert first.dispatch().sent == 2  # one per channel, not twelve
    clock.now += timedelta(minutes=5)
    second = make_service(engine, tmp_path, servers, clock, pace=pace)  # another process
    assert second.dispatch().handled == 0 and first.dispatch().handled == 0
    clock.now += timedelta(minutes=5)
    assert second.dispatch().sent == 2
    assert first.dispatch().handled == 0
    assert len(xs.tweets) == len(ms.statuses) == 2

    clock.now = datetime(2026, 11, 30, 19, 5, tzinfo=UTC)  # 21:05 in Kigali
    assert first.dispatch().handled == 0
    clock.now = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # 07:00 the next morning
    assert first.dispatch().sent == 2
    assert len(xs.tweets) == len(ms.statuses) == 3


def test_post_preview_prints_each_channels_text_and_length(
    tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    write_feed(tmp_path / "feed.xml", 2, now=datetime.now(UTC))
    entries = social(xs, ms)
    entries[0].update({k: f"${{X_{k.upper()}}}" for k in CREDENTIALS})
    path = write_site_yaml(
        tmp_path / "newsbroadcast.yaml",
        root=str(tmp_path),
        database={"url": f"sqlite:///{tmp_path / 'nb.db'}"},
        sources=[NEWSROOM_FEED],
        digests=None,
        social=entries,
    )
    env = {f"X_{k.upper()}": v for k, v in CREDENTIALS.items()}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        service = Service(load_config(path))
        service.poll()
        service.close()
        out = run_cli(path, "post", "preview").stdout
    assert "article 1: Story 0: women officers in the border guard" in out
    assert "== x (x): " in out and "/280 fits ==" in out
    assert "== fedi (mastodon): " in out and "/500 fits ==" in out
    assert "https://newsroom.example.org/story-0" in out
    assert xs.tweets == [] and ms.statuses == []  # a preview posts nothing


def test_an_unreachable_network_spends_no_attempt_of_a_post(
    engine: Engine, tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, _ = servers
    clock = Clock(datetime.now(UTC))
    write_feed(tmp_path / "feed.xml", 1, now=clock())
    service = make_service(engine, tmp_path, servers, clock, max_attempts=2)
    x_session = service.channels["x"].session  # type: ignore[attr-defined]
    route_x_to(x_session, f"http://127.0.0.1:{free_port()}")  # X cannot be reached
    service.poll()
    for _ in range(5):  # far more tries than max_attempts, each after its wait
        service.dispatch()
        clock.now += timedelta(minutes=10)
    (waiting,) = [p for p in posts(service) if p.channel == "x"]
    assert (waiting.status, waiting.attempts) == (SendStatus.queued, 0)
    assert waiting.next_attempt_at - clock() <= timedelta(minutes=5)  # outage_wait_max
    route_x_to(x_session, xs.url)  # the network is back
    clock.now += timedelta(minutes=10)
    assert service.dispatch().sent == 1 and len(xs.tweets) == 1


def test_a_new_sites_archive_is_not_announced_whatever_its_dates(
    engine: Engine,
    tmp_path: Path,
    servers: tuple[XServer, MastodonServer],
) -> None:
    clock = Clock(datetime.now(UTC))
    write_feed(tmp_path / "feed.xml", 40, now=clock(), dated=False)  # an archive without dates
    service = make_service(engine, tmp_path, servers, clock, backfill=0)
    service.poll()
    assert posts(service) == []  # the defaults: backfill 0, max_age 2d

    # Restarted, the source is still met: only a story that appears later is news.
    clock.now += timedelta(minutes=15)
    write_feed(tmp_path / "feed.xml", 41, now=clock(), dated=False)
    service = make_service(engine, tmp_path, servers, clock, backfill=0)
    service.poll()
    rows = posts(service)
    assert sorted((p.channel, p.text.split(":")[0]) for p in rows) == [
        ("fedi", "Story 40"),
        ("x", "Story 40"),
    ]

    # With a backfill, the newest of the archive are announced, dated or not.
    dated = make_service(engine, tmp_path, servers, clock, backfill=3)
    dated.poll()
    assert len(posts(dated)) == 2 * 3


def test_the_archive_and_a_date_from_the_future_are_noted_in_status(
    tmp_path: Path, servers: tuple[XServer, MastodonServer]
) -> None:
    xs, ms = servers
    now = datetime.now(UTC)
    write_feed(tmp_path / "feed.xml", 2, now=now, dated=False)
    feed = (tmp_path / "feed.xml").read_text()
    ahead = f"<pubDate>{format_datetime(now.replace(year=2999))}</pubDate>"
    feed = feed.replace("<guid>story-0</guid>", f"<guid>story-0</guid>{ahead}", 1)
    (tmp_path / "feed.xml").write_text(feed)
    path = write_site_yaml(
        tmp_path / "newsbroadcast.yaml",
        root=str(tmp_path),
        database={"url": f"sqlite:///{tmp_path / 'nb.db'}"},
        sources=[NEWSROOM_FEED],
        digests=None,
        social=social(xs, ms),
    )
    service = Service(load_config(path))
    service.poll()
    service.close()
    out = run_cli(path, "status").stdout
    assert "note: first read: 2 stories kept as the archive" in out
    assert "story-0': dated 2999-" in out and "taken as published when" in out
