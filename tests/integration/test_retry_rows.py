"""Deliveries and posts follow the one retry rule: after the same failure, with the same
settings, a delivery row and a post row end up alike (real SQLite file and PostgreSQL).
An outage (TransportDown) hands a whole batch back: tests/integration/test_delivery_semantics.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select, update

from newsbroadcast.db.models import Article, Delivery, Post, SendStatus, Subscriber
from newsbroadcast.errors import (
    DeliveryError,
    PermanentSendError,
    RateLimited,
    TransientSendError,
)
from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.smtp_sink import free_port

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RETRY = {"max_attempts": 3, "retry_after": "1m", "outage_wait_max": "5m"}

ERRORS: list[tuple[str, DeliveryError]] = [
    ("refused", TransientSendError("452 busy", reply="452 4.2.2 busy")),
    ("no reply", TransientSendError("timed out")),
    ("rate limited", RateLimited("slow down", retry_after=30, reply="429")),
    ("permanent", PermanentSendError("550 unknown", reply="550 5.1.1 unknown")),
]


@pytest.mark.parametrize("attempts", [0, 2])
@pytest.mark.parametrize(("name", "error"), ERRORS, ids=[n for n, _ in ERRORS])
def test_a_delivery_and_a_post_get_the_same_decision(
    engine: Engine, tmp_path: Path, name: str, error: DeliveryError, attempts: int
) -> None:
    config_path = write_site(tmp_path, engine.url.render_as_string(False), free_port(), email=RETRY)
    data: dict[str, Any] = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["social"] = [{"name": "notes", "type": "file", "dir": "posts", **RETRY}]
    config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    add_subscribers(engine, 1)
    service = service_for(config_path, engine)
    plan_edition(service)
    dispatcher = service.dispatcher
    dispatcher.clock = lambda: NOW
    with service.sessions() as session:
        article_id = session.scalars(select(Article.id)).first()
        session.add(Post(article_id=article_id, channel="notes", text="hello"))
        for model in (Delivery, Post):
            session.execute(
                update(model).values(status=SendStatus.sending, attempts=attempts, lease_until=NOW)
            )
        session.commit()
        delivery = session.execute(
            select(Delivery.id, Delivery.attempts, Subscriber.id.label("subscriber_id"),
                   Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        ).one()  # fmt: skip
        post = session.scalars(select(Post)).one()
        if isinstance(error, PermanentSendError):
            dispatcher._fail_permanently(session, delivery, error)
        else:
            dispatcher._retry_delivery(session, delivery, error)
        dispatcher._retry_later(session, post, error)
        session.expire_all()
        rows: list[Delivery | Post] = [
            session.scalars(select(Delivery)).one(),
            session.scalars(select(Post)).one(),
        ]
    outcomes = [(r.status, r.attempts, r.next_attempt_at if r.status == "queued" else None)
                for r in rows]  # fmt: skip
    assert outcomes[0] == outcomes[1], name
