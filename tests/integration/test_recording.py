"""SentRecorder on a real PostgreSQL: the asynchronous record of a sent delivery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from newsbroadcast.db.engine import make_engine, upgrade
from newsbroadcast.db.models import Delivery, Edition, SendStatus, utcnow
from newsbroadcast.outbox.recording import RecordError, SentRecorder
from tests.conftest import postgres_schema
from tests.integration.delivery_site import add_subscribers
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def tashkent() -> Iterator[Engine]:
    """A migrated PostgreSQL schema whose sessions run in Asia/Tashkent (UTC+5), as a
    server set up with its machine's local time zone would."""
    with postgres_schema("-ctimezone=Asia/Tashkent") as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


def queued_deliveries(engine: Engine, count: int) -> list[int]:
    add_subscribers(engine, count)
    with engine.begin() as conn:
        edition = conn.execute(
            insert(Edition)
            .values(digest="daily", period="p", subject="s", cutoff=utcnow())
            .returning(Edition.id)
        ).scalar_one()
        rows = conn.execute(
            text(
                "INSERT INTO deliveries (edition_id, subscriber_id, status, attempts, "
                "next_attempt_at, created_at) SELECT :e, id, 'sending', 1, now(), now() "
                "FROM subscribers ORDER BY id RETURNING id"
            ),
            {"e": edition},
        )
        return sorted(rows.scalars())


@contextlib.contextmanager
def recorder(engine: Engine) -> Iterator[tuple[Session, SentRecorder]]:
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        Session(connection) as session,
        contextlib.closing(SentRecorder(session, overlap=True)) as r,
    ):
        yield session, r


def recorded(engine: Engine) -> dict[int, tuple[str, datetime | None, str | None]]:
    with Session(engine) as session:
        rows = session.execute(select(Delivery.id, Delivery.status, Delivery.sent_at,
                                      Delivery.message_id))  # fmt: skip
        return {r.id: (r.status, r.sent_at, r.message_id) for r in rows}


def test_sent_at_is_stored_as_utc_whatever_the_server_time_zone(tashkent: Engine) -> None:
    with tashkent.connect() as conn:
        assert conn.scalar(text("SHOW timezone")) == "Asia/Tashkent"
    [delivery] = queued_deliveries(tashkent, 1)
    at = datetime(2026, 11, 29, 7, 30, 15, 250000, tzinfo=UTC)
    with recorder(tashkent) as (_, r):
        r.record(delivery, at, "250 2.0.0 Ok", "m1@example.org")
    assert recorded(tashkent)[delivery] == (SendStatus.sent, at, "m1@example.org")


def test_a_statement_on_the_session_waits_for_the_record_in_flight(tashkent: Engine) -> None:
    """The session stays usable between records: its next statement (here one that
    drops every prepared statement, as psycopg itself does after a ROLLBACK) settles the
    record first, and the records after it still land."""
    first, second = queued_deliveries(tashkent, 2)
    at = utcnow()
    with recorder(tashkent) as (session, r):
        r.record(first, at, "250 Ok", "m1@example.org")
        assert session.scalar(select(Delivery.status).where(Delivery.id == first)) == "sent"
        session.execute(text("DEALLOCATE ALL"))
        r.record(second, at, "250 Ok", "m2@example.org")
    assert {d: row[0] for d, row in recorded(tashkent).items()} == {first: "sent", second: "sent"}


def test_a_record_on_a_connection_that_went_silent_fails_at_its_deadline() -> None:
    """A half-open connection (the proxy forwards nothing more, closes nothing): the record
    fails as a RecordError after its deadline instead of waiting forever, the connection is
    discarded, and the delivery stays claimed, not marked sent."""
    with postgres_schema() as url:
        direct = make_engine(url)
        upgrade(direct)
        [delivery] = queued_deliveries(direct, 1)
        parsed = make_url(url)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        proxied = make_engine(parsed.set(port=proxy.port).render_as_string(hide_password=False))
        try:
            with (
                proxied.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
                Session(connection) as session,
            ):
                r = SentRecorder(session, overlap=True, within=1)
                silent = connection.connection.driver_connection
                proxy.stall()
                r.record(delivery, utcnow(), "250 Ok", "m1@example.org")
                with pytest.raises(RecordError, match="no answer from PostgreSQL within 1s"):
                    r.settle()
                assert silent is not None and silent.closed  # dropped, never pooled again
                with pytest.raises(RecordError):  # the recorder is done with
                    r.record(delivery, utcnow(), "250 Ok", "m1@example.org")
                r.close()
                proxy.cut()  # the worker's next statement finds its own way to the server
                proxy.restore()
                assert session.scalar(text("SELECT 1")) == 1
            assert recorded(direct)[delivery] == (SendStatus.sending, None, None)
        finally:
            proxy.close()
            proxied.dispose()
            direct.dispose()


def test_a_wait_abandoned_midway_is_read_at_close_and_the_connection_stays_clean(
    tashkent: Engine,
) -> None:
    """The worker stops while a record is in flight (its step is closed at the wait):
    closing the recorder still reads the record's result, so the row is `sent` and the
    session's next statement runs instead of failing with a command in progress."""
    with tashkent.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION slow_record() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$"
        ))  # fmt: skip
        conn.execute(text(
            "CREATE TRIGGER slow_record BEFORE UPDATE ON deliveries FOR EACH ROW "
            "WHEN (NEW.status = 'sent') EXECUTE FUNCTION slow_record()"
        ))  # fmt: skip
    [delivery] = queued_deliveries(tashkent, 1)
    with recorder(tashkent) as (session, r):
        r.record(delivery, utcnow(), "250 Ok", "m1@example.org")
        steps = r.settle_steps()
        next(steps)  # waiting for PostgreSQL, which sleeps in the trigger
        steps.close()
        r.close()
        assert session.scalar(text("SELECT 1")) == 1
    assert recorded(tashkent)[delivery][0] == SendStatus.sent
