"""PostgreSQL's lean delivery indexes (migration 0017): the due index holds only due rows,
the Message-ID index only rows with one, and the claim still finds its rows through the
due index, even with a generic plan (a statement prepared by the driver)."""

from __future__ import annotations

from datetime import datetime, timedelta

from alembic import command
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from newsbroadcast.db.engine import alembic_config
from newsbroadcast.db.models import Delivery, Edition, SendStatus, Subscriber, utcnow
from newsbroadcast.outbox.claim import due_rows
from tests.integration.delivery_site import add_subscribers

LEAN = {
    "ix_deliveries_due": "WHERE ((status)::text = ANY ((ARRAY['queued'::character varying, "
    "'sending'::character varying])::text[]))",
    "ix_deliveries_message_id": "WHERE (message_id IS NOT NULL)",
}


def _delivery_indexes(engine: Engine) -> dict[str, str]:
    """Each index of deliveries and its definition (PostgreSQL) or columns (SQLite)."""
    if engine.dialect.name != "postgresql":
        found = inspect(engine).get_indexes("deliveries")
        return {str(i["name"]): ",".join(map(str, i["column_names"])) for i in found}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = 'deliveries'"
            )
        )
        return {name: definition for name, definition in rows.tuples()}


def test_migration_0017_makes_the_due_and_message_id_indexes_partial(engine: Engine) -> None:
    config = alembic_config(engine)
    command.downgrade(config, "0016")
    before = _delivery_indexes(engine)
    command.upgrade(config, "head")
    command.check(config)  # models and migrations agree
    after = _delivery_indexes(engine)
    if engine.dialect.name != "postgresql":
        # SQLite keeps its full indexes: nothing to change there.
        assert after == before
        assert after["ix_deliveries_due"] == "status,next_attempt_at,id"
        return
    for name, predicate in LEAN.items():
        assert predicate not in before[name]
        assert after[name].endswith(predicate), after[name]


def _literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        value = value.isoformat(" ")
    return "'" + str(value).replace("'", "''") + "'"


def test_a_generic_plan_of_the_claim_uses_the_due_index(engine: Engine) -> None:
    """Parameters are unknown to a generic plan: only a predicate the query spells out
    lets it prove that the partial index holds the rows it wants."""
    if engine.dialect.name != "postgresql":
        return  # partial indexes are PostgreSQL's here (see migration 0017)
    add_subscribers(engine, 3)
    with engine.begin() as conn:
        edition = conn.execute(
            insert(Edition).values(digest="daily", period="p", subject="s", cutoff=utcnow())
            .returning(Edition.id)
        ).scalar_one()  # fmt: skip
        for subscriber in conn.scalars(select(Subscriber.id)).all():
            conn.execute(insert(Delivery).values(edition_id=edition, subscriber_id=subscriber))
    now = utcnow() + timedelta(minutes=1)
    pick = due_rows(
        Delivery,
        (Delivery.status == SendStatus.queued, Delivery.next_attempt_at <= now),
        (Delivery.next_attempt_at, Delivery.id),
        10,
        postgres=True,
    )
    compiled = pick.compile(dialect=psycopg_dialect(paramstyle="numeric_dollar"))
    values = ", ".join(_literal(compiled.params[k]) for k in compiled.positiontup or ())
    with engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        # Any usable index beats a disabled sequential scan; without one, the plan scans.
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql(f"PREPARE due_pick AS {compiled}")
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN EXECUTE due_pick({values})").scalars())
        found = conn.exec_driver_sql(f"EXECUTE due_pick({values})").scalars().all()
        conn.rollback()
    assert "ix_deliveries_due" in plan, plan
    assert len(found) == 3
