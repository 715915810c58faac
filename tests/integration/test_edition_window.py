"""Every story first seen is in exactly one edition of a digest, however the poll that stores
it and the planning of an edition interleave (SQLite and PostgreSQL).

A story's ``first_seen_at`` is its poll's start; the poll commits up to its deadline later.
An edition planned in between has a cutoff after the story's first sighting but cannot see
it: the next edition must take it, and no edition may take a story twice. The interleavings
are made certain with explicit clock values and, on PostgreSQL, two open sessions.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.articles.store import upsert_articles
from newsbroadcast.config.model import Digest
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article, Edition, EditionArticle
from newsbroadcast.planning.editions import bulk_plan_edition, edition_stories
from newsbroadcast.planning.schedule import due_period
from newsbroadcast.sources.base import ArticleDraft
from tests.site import make_config

POLL_START = datetime(2026, 3, 2, 6, 59, 50, tzinfo=UTC)
# The edition is planned while the poll that started at POLL_START is still fetching.
FIRST_EDITION = POLL_START + timedelta(seconds=10)
NEXT_DAY = FIRST_EDITION + timedelta(days=1)


def daily(**changes: Any) -> Digest:
    digest = {
        "name": "daily",
        "cron": "0 7 * * *",
        "timezone": "UTC",
        "subject": "{{ edition.articles[0].title }}",
        **changes,
    }
    return make_config(digests=[digest]).digests[0]


def draft(slug: str, published: datetime | None = None, *tags: str) -> ArticleDraft:
    url = f"https://ex.org/{slug}"
    return ArticleDraft(guid=slug, title=slug.title(), url=url, published_at=published, tags=tags)


def store(engine: Engine, now: datetime, *slugs: str) -> None:
    """One poll that started at ``now`` and committed (whenever that was)."""
    with sessions(engine).begin() as session:
        upsert_articles(session, "newsroom", [draft(s) for s in slugs], now)


def plan(engine: Engine, digest: Digest, now: datetime) -> list[str] | None:
    """Plan ``digest``'s edition due at ``now`` (forced: a period of its own); its stories'
    GUIDs, newest first, or None when nothing was new."""
    with sessions(engine)() as session:
        period = due_period(digest, now, force=True)
        assert period is not None
        planned = bulk_plan_edition(session, digest, period, now, lambda a: f"{len(a)} stories")
    if planned is None:
        return None
    return guids_of(engine, planned.edition_id)


def guids_of(engine: Engine, edition_id: int) -> list[str]:
    with sessions(engine)() as session:
        q = (
            select(Article.guid)
            .join(EditionArticle, EditionArticle.article_id == Article.id)
            .where(EditionArticle.edition_id == edition_id)
            .order_by(EditionArticle.position)
        )
        return list(session.scalars(q))


def editions_per_story(engine: Engine, digest: str) -> Counter[str]:
    with sessions(engine)() as session:
        q = (
            select(Article.guid)
            .join(EditionArticle, EditionArticle.article_id == Article.id)
            .join(Edition, Edition.id == EditionArticle.edition_id)
            .where(Edition.digest == digest)
        )
        return Counter(session.scalars(q))


def test_a_story_committed_after_an_edition_it_predates_is_in_the_next_one(
    engine: Engine,
) -> None:
    digest = daily()
    store(engine, POLL_START - timedelta(hours=1), "earlier")
    assert plan(engine, digest, FIRST_EDITION) == ["earlier"]
    # The slow poll commits now: its story was first seen before that edition's cutoff.
    store(engine, POLL_START, "late")
    store(engine, FIRST_EDITION + timedelta(hours=3), "fresh")

    assert set(plan(engine, digest, NEXT_DAY) or []) == {"late", "fresh"}
    assert plan(engine, digest, NEXT_DAY + timedelta(days=1)) is None
    assert editions_per_story(engine, "daily") == {"earlier": 1, "late": 1, "fresh": 1}


def test_each_digest_takes_a_late_story_once_if_its_tags_match(engine: Engine) -> None:
    digest, police = daily(), daily(name="police", tags=["Police"])
    store(engine, POLL_START - timedelta(hours=1), "earlier")
    assert plan(engine, digest, FIRST_EDITION) == ["earlier"]
    with sessions(engine).begin() as session:
        stories = [draft("late-police", None, "police"), draft("late-other")]
        upsert_articles(session, "newsroom", stories, POLL_START)

    assert plan(engine, police, NEXT_DAY) == ["late-police"]
    assert set(plan(engine, digest, NEXT_DAY) or []) == {"late-police", "late-other"}
    assert plan(engine, police, NEXT_DAY + timedelta(hours=1)) is None
    assert editions_per_story(engine, "police") == {"late-police": 1}


def test_a_story_no_planner_could_see_yet_is_in_the_next_edition(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: a planner waits for the poll's commit")
    digest = daily()
    store(engine, POLL_START - timedelta(hours=1), "earlier")
    with sessions(engine)() as poll:
        upsert_articles(poll, "newsroom", [draft("unseen")], POLL_START)
        poll.flush()  # written, not committed: the planner's reads do not see it
        assert plan(engine, digest, FIRST_EDITION) == ["earlier"]
        poll.commit()

    assert plan(engine, digest, NEXT_DAY) == ["unseen"]
    assert editions_per_story(engine, "daily") == {"earlier": 1, "unseen": 1}


def test_stories_around_a_cutoff_are_each_in_one_edition(engine: Engine) -> None:
    """Stories just before a cutoff, taken by that edition, are never taken again, edited
    or not; a forced edition a minute later finds only what is new."""
    digest = daily()
    store(engine, FIRST_EDITION - timedelta(seconds=1), "just-before")
    store(engine, FIRST_EDITION, "at-cutoff")
    assert set(plan(engine, digest, FIRST_EDITION) or []) == {"just-before", "at-cutoff"}
    with sessions(engine).begin() as session:  # an edit: never new again
        edit = ArticleDraft(guid="at-cutoff", title="Corrected", url="https://ex.org/at-cutoff")
        upsert_articles(session, "newsroom", [edit], FIRST_EDITION + timedelta(seconds=30))
    assert plan(engine, digest, FIRST_EDITION + timedelta(seconds=40)) is None
    store(engine, FIRST_EDITION + timedelta(seconds=50), "after")
    assert plan(engine, digest, FIRST_EDITION + timedelta(minutes=1)) == ["after"]
    assert editions_per_story(engine, "daily") == {"just-before": 1, "at-cutoff": 1, "after": 1}


def test_a_story_cut_by_max_items_stays_cut(engine: Engine) -> None:
    """An edition holds the newest ``max_items``; what it cut, and what arrives late but would
    have been cut, is not in the next edition; a late story that would have made it is."""
    digest = daily(max_items=2)
    day = timedelta(days=1)
    with sessions(engine).begin() as session:
        stories = [draft(f"day-{n}", FIRST_EDITION - n * day) for n in (1, 2, 3)]
        upsert_articles(session, "newsroom", stories, FIRST_EDITION - timedelta(seconds=5))
    assert plan(engine, digest, FIRST_EDITION) == ["day-1", "day-2"]
    with sessions(engine).begin() as session:  # a slow poll's stories, first seen before
        late = [draft("late-old", FIRST_EDITION - 4 * day), draft("late-new", FIRST_EDITION)]
        upsert_articles(session, "newsroom", late, POLL_START)

    with sessions(engine)() as session:  # `preview` shows what the edition will hold
        preview = [a.guid for a in edition_stories(session, digest, NEXT_DAY)]
    assert preview == ["late-new"]
    assert plan(engine, digest, NEXT_DAY) == ["late-new"]
    counts = editions_per_story(engine, "daily")
    assert counts == {"day-1": 1, "day-2": 1, "late-new": 1}
