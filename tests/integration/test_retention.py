"""Years of history: 64-bit delivery and post ids (migration 0016), and `retention`
folding old per-subscriber delivery rows into per-edition counts, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import Engine, func, insert, select, update

from newsbroadcast.db.engine import alembic_config, sessions
from newsbroadcast.db.models import (
    Delivery,
    Edition,
    ErasedDeliveries,
    SendStatus,
    Subscriber,
    utcnow,
)
from newsbroadcast.outbox.claim import claim
from newsbroadcast.outbox.retention import delivery_counts, fold_deliveries
from newsbroadcast.runtime.scheduler import build_scheduler
from tests.integration.delivery_site import (
    add_subscribers,
    nb,
    plan_edition,
    service_for,
    write_site,
)
from tests.smtp_sink import SmtpSink

BIG = 2**40  # far past what a 32-bit id holds


def test_migration_0016_round_trips_and_ids_go_past_32_bits(engine: Engine) -> None:
    config = alembic_config(engine)
    command.downgrade(config, "0012")
    command.upgrade(config, "head")
    command.check(config)  # models and migrations agree
    add_subscribers(engine, 2)
    now = utcnow()
    with engine.begin() as conn:
        edition = conn.execute(
            insert(Edition).values(digest="daily", period="p", subject="s", cutoff=now)
            .returning(Edition.id)
        ).scalar_one()  # fmt: skip
        first, second = conn.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        conn.execute(insert(Delivery).values(id=BIG, edition_id=edition, subscriber_id=first))
        # The next id is still the database's own (SQLite's rowid, PostgreSQL's sequence).
        after = conn.execute(
            insert(Delivery).values(edition_id=edition, subscriber_id=second)
            .returning(Delivery.id)
        ).scalar_one()  # fmt: skip
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT setval('deliveries_id_seq', {BIG + 1})")
    assert engine.dialect.name == "postgresql" or after == BIG + 1
    with sessions(engine)() as session:
        claimed = claim(session, Delivery, utcnow(), timedelta(minutes=5), 10)
    assert BIG in claimed and len(claimed) == 2


def _age(engine: Engine, edition_id: int, days: int) -> None:
    """Make an edition and its deliveries ``days`` old, as years of use would."""
    then = utcnow() - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(update(Edition).where(Edition.id == edition_id).values(created_at=then))
        old = Delivery.edition_id == edition_id
        conn.execute(update(Delivery).where(old).values(created_at=then))
        conn.execute(
            update(Delivery).where(old, Delivery.sent_at.is_not(None)).values(sent_at=then)
        )


def _status_lines(config: Path) -> list[str]:
    """What `status` says about deliveries and editions."""
    out = nb(config, "status").stdout.splitlines()
    return [line for line in out if line.startswith(("deliveries:", "  #"))]


def test_fold_leaves_status_counts_unchanged_and_keeps_unfinished_rows(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        config = write_site(tmp_path, database_url, sink.port)
        add_subscribers(engine, 12)
        service = service_for(config, engine)
        edition = plan_edition(service)
        with engine.begin() as conn:  # two wait, one was skipped: three outcomes in all
            ids = conn.scalars(select(Delivery.id).order_by(Delivery.id)).all()
            conn.execute(update(Delivery).where(Delivery.id.in_(ids[:2]))
                         .values(next_attempt_at=utcnow() + timedelta(days=1)))  # fmt: skip
            conn.execute(
                update(Delivery).where(Delivery.id == ids[2]).values(status=SendStatus.skipped)
            )
        service.dispatch()
        service.close()
    _age(engine, edition, days=100)
    before = _status_lines(config)
    assert any("deliveries: queued 2, sent 9, skipped 1" in line for line in before), before

    folded = fold_deliveries(sessions(engine), utcnow() - timedelta(days=90))

    assert folded == 10
    assert _status_lines(config) == before
    with sessions(engine)() as session:
        left = session.scalars(select(Delivery.status)).all()
        assert sorted(left) == ["queued", "queued"]  # not ended: the dispatcher's still
        assert delivery_counts(session, edition) == {"queued": 2, "sent": 9, "skipped": 1}
        kept = session.execute(select(ErasedDeliveries.status, ErasedDeliveries.count))
        assert dict(kept.tuples().all()) == {"sent": 9, "skipped": 1}
    # Again: nothing more to fold, and the counts add up the same.
    assert fold_deliveries(sessions(engine), utcnow() - timedelta(days=90)) == 0
    assert _status_lines(config) == before


def test_fold_adds_to_the_counts_already_folded_and_spares_recent_rows(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        config = write_site(tmp_path, database_url, sink.port)
        add_subscribers(engine, 5)
        service = service_for(config, engine)
        edition = plan_edition(service)
        service.dispatch()
        _age(engine, edition, days=100)
        with engine.begin() as conn:  # an erasure folded one already
            conn.execute(insert(ErasedDeliveries).values(edition_id=edition, status="sent",
                                                         count=3))  # fmt: skip
        service.close()
    assert fold_deliveries(sessions(engine), utcnow() - timedelta(days=200)) == 0
    assert fold_deliveries(sessions(engine), utcnow() - timedelta(days=90)) == 5
    with sessions(engine)() as session:
        assert delivery_counts(session, edition) == {"sent": 8}
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_the_scheduler_folds_daily_when_retention_is_set(database_url: str, tmp_path: Path) -> None:
    import yaml

    config = write_site(tmp_path, database_url, 2525)
    service = service_for(config)
    assert build_scheduler(service).get_job("retention") is None
    service.close()
    data = yaml.safe_load(config.read_text())
    data["retention"] = {"deliveries": "90d"}
    config.write_text(yaml.safe_dump(data))
    service = service_for(config)
    job = build_scheduler(service).get_job("retention")
    service.close()
    assert job is not None and job.trigger.interval == timedelta(days=1)


def test_retention_must_be_positive(tmp_path: Path) -> None:
    import pytest
    import yaml

    from newsbroadcast.config.model import load_config
    from newsbroadcast.errors import ConfigError

    config = write_site(tmp_path, f"sqlite:///{tmp_path / 'nb.db'}", 2525)
    data = yaml.safe_load(config.read_text())
    data["retention"] = {"deliveries": "0s"}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="retention"):
        load_config(config)
