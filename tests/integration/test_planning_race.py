"""Two planners of one digest at the same instant make one edition (SQLite and PostgreSQL).

Two forced runs each get a period of their own, so the (digest, period) key cannot stop
the second: what does is planning under the digest's lock, with the previous cutoff read
inside it. The test makes the race certain instead of likely: each planner, once it has
chosen its stories, waits until the other has chosen too, or is held at the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from newsbroadcast.articles.store import upsert_articles
from newsbroadcast.db.engine import make_engine, sessions
from newsbroadcast.db.models import Article, Delivery, Edition
from newsbroadcast.planning.editions import PlannedEdition, bulk_plan_edition
from newsbroadcast.planning.schedule import due_period
from newsbroadcast.sources.base import ArticleDraft
from newsbroadcast.subscribers.registry import add_subscriber
from tests.site import make_config

NOW = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
DEADLINE = 60.0  # seconds; only a broken lock or a hung database comes near it
SUBSCRIBERS = 25
WRITES = ("INSERT", "UPDATE", "DELETE")


class Planner:
    """One `run --once --force` of the daily digest, with an engine of its own."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.chose = threading.Event()  # it has read the cutoff and chosen its stories
        self.held = threading.Event()  # it has sent a write: it waits if another holds the lock
        self.result: PlannedEdition | None = None
        self.error: BaseException | None = None
        event.listen(self.engine, "before_cursor_execute", self._saw_statement)

    def _saw_statement(self, *args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith(WRITES):
            self.held.set()

    def run(self, other: Planner, now: datetime) -> None:
        digest = make_config().digests[0]

        def subject_for(articles: list[Article]) -> str:
            self.chose.set()
            # The race: the other planner either chose from the same cutoff as we did, or
            # is held at the database's lock until we commit.
            wait_for(lambda: other.chose.is_set() or other.held.is_set())
            return f"{len(articles)} stories"

        try:
            with sessions(self.engine)() as session:
                period = due_period(digest, now, force=True)
                assert period is not None
                self.result = bulk_plan_edition(session, digest, period, now, subject_for)
        except BaseException as e:  # reported by the test's thread, not lost in this one
            self.error = e


def wait_for(condition: Any) -> None:
    done = threading.Event()
    for _ in range(int(DEADLINE * 20)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"the other planner neither chose nor waited in {DEADLINE:.0f}s")


@pytest.fixture
def site(engine: Engine) -> Iterator[Engine]:
    with sessions(engine)() as session:
        drafts = [
            ArticleDraft(guid=f"story-{n}", title=f"Story {n}", url=f"https://ex.org/{n}")
            for n in range(3)
        ]
        upsert_articles(session, "newsroom", drafts, NOW - timedelta(hours=1))
        for n in range(SUBSCRIBERS):
            add_subscriber(session, f"reader{n}@example.org", NOW - timedelta(days=1))
        session.commit()
    yield engine


def test_two_forced_runs_at_once_make_one_edition(site: Engine, database_url: str) -> None:
    first, second = Planner(database_url), Planner(database_url)
    threads = [
        threading.Thread(target=first.run, args=(second, NOW)),
        # A microsecond apart, as two processes started together: two forced periods.
        threading.Thread(target=second.run, args=(first, NOW + timedelta(microseconds=1))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * 2)
        assert not t.is_alive()
    for planner in (first, second):
        planner.engine.dispose()
        if planner.error is not None:
            raise planner.error

    planned = [p for p in (first.result, second.result) if p is not None]
    assert len(planned) == 1 and planned[0].stories == 3
    with sessions(site)() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 1
        per_subscriber = session.execute(
            select(Delivery.subscriber_id, func.count()).group_by(Delivery.subscriber_id)
        ).all()
    assert len(per_subscriber) == SUBSCRIBERS
    assert {n for _, n in per_subscriber} == {1}
