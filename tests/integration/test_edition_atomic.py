"""An edition and its deliveries are made in one transaction, on SQLite as on PostgreSQL.

On SQLite the planner's savepoint used to be a transaction of its own: its RELEASE
committed the edition before the deliveries were inserted. A dispatcher pass in that gap
saw an edition with nothing left to send and closed it as done, so its deliveries were
never claimed (the hot-reload test's "edition planned, nothing sent" under load); and a
planning pass that failed half-way left the period taken by an empty edition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from newsbroadcast.db.models import Delivery, Edition
from newsbroadcast.service import Service
from newsbroadcast.subscribers.registry import add_subscriber
from tests.site import make_config

NOW = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)  # 07:30 in Kigali: the daily edition is due


def make_service(engine: Engine, tmp_path: Path) -> Service:
    config = make_config(
        sources=[{"name": "newsroom", "type": "feed", "url": "examples/feed.xml"}],
        email={"transport": "file", "file": {"dir": str(tmp_path / "outbox")}},
    )
    service = Service(config, engine=engine, clock=lambda: NOW)
    with service.sessions() as session:
        add_subscriber(session, "ada@example.org", NOW)
        session.commit()
    service.poll()
    return service


@contextmanager
def before_deliveries_are_inserted(engine: Engine, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` once, on the planner's thread, just before its INSERT of deliveries."""
    done = False

    def hook(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal done
        if not done and statement.lstrip().upper().startswith("INSERT INTO DELIVERIES"):
            done = True
            action()

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", hook)
    assert done, "the planner inserted no deliveries"


def test_no_other_connection_sees_an_edition_before_its_deliveries(
    engine: Engine, tmp_path: Path
) -> None:
    service = make_service(engine, tmp_path)
    seen: list[tuple[str, int]] = []

    def look_as_the_dispatcher_would() -> None:
        with engine.connect() as other:
            seen.extend(
                (status, deliveries)
                for status, deliveries in other.execute(
                    select(Edition.status, func.count(Delivery.id))
                    .outerjoin(Delivery, Delivery.edition_id == Edition.id)
                    .group_by(Edition.id)
                )
            )

    try:
        with before_deliveries_are_inserted(engine, look_as_the_dispatcher_would):
            planned = service.plan_digests()
        assert [p.deliveries for p in planned] == [1]
        assert seen == []  # not half an edition: nothing until the commit
        assert service.dispatch().sent == 1
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    finally:
        service.close()


def test_planning_that_fails_half_way_leaves_the_period_to_plan_again(
    engine: Engine, tmp_path: Path
) -> None:
    service = make_service(engine, tmp_path)

    def fail() -> None:
        raise RuntimeError("the planner died here")

    try:
        with (
            pytest.raises(RuntimeError, match="died here"),
            before_deliveries_are_inserted(engine, fail),
        ):
            service.plan_digests()
        with service.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Edition)) == 0
        assert [p.deliveries for p in service.plan_digests()] == [1]
        assert service.dispatch().sent == 1
    finally:
        service.close()
