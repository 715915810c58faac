"""`db copy`: the sample site moved from its SQLite file into another database (PostgreSQL,
and a SQLite file), interrupted and resumed, then run there: nothing is sent twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.db.copy import copy_database, open_target
from newsbroadcast.db.engine import make_engine
from newsbroadcast.db.models import (
    Base,
    Subscriber,
    SubscriberDigest,
    SubscriberTopic,
    Suppression,
    utcnow,
)
from tests.integration.test_cli_run import nb, outbox, posts, site

__all__ = ["site"]  # the sample-site fixture, shared with the CLI's tests


class Interrupted(Exception):
    """Stands for a kill between two committed batches."""


def everything(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows, in key order."""
    with engine.connect() as conn:
        return {
            t.name: [dict(r) for r in conn.execute(select(t).order_by(*t.primary_key)).mappings()]
            for t in Base.metadata.sorted_tables
        }


def running_site(site: Path) -> Engine:
    """The sample site after one pass, with preferences and a suppression."""
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    assert "1 edition(s)" in nb(site, "run", "--once").stdout
    engine = make_engine(f"sqlite:///{site / 'var/newsbroadcast.db'}")
    with engine.begin() as conn:
        first = conn.scalar(select(Subscriber.id).order_by(Subscriber.id))
        conn.execute(
            SubscriberDigest.__table__.insert(), {"subscriber_id": first, "digest": "daily"}
        )
        conn.execute(SubscriberTopic.__table__.insert(), [
            {"subscriber_id": first, "topic": topic} for topic in ("police", "military")
        ])  # fmt: skip
        conn.execute(Suppression.__table__.insert(), {
            "email_hash": "ab" * 32, "reason": "complaint", "created_at": utcnow(),
        })  # fmt: skip
    return engine


def switch_database(site: Path, url: str) -> None:
    """What setting DATABASE_URL does for the sample config (the tests' runner unsets it)."""
    path = site / "config/newsbroadcast.yaml"
    default = '"${DATABASE_URL:-sqlite:///var/newsbroadcast.db}"'
    assert default in path.read_text()
    path.write_text(path.read_text().replace(default, f'"{url}"'))


def test_a_copied_site_keeps_its_history_resumes_and_sends_nothing_again(
    site: Path, database_url: str
) -> None:
    source = running_site(site)
    before = everything(source)
    assert before["deliveries"] and before["posts"] and before["source_state"]
    sent, announced = len(outbox(site)), len(posts(site))

    # Killed part way: what is committed stays, the rest is not there yet.
    target = open_target(database_url)
    batches = 0

    def killed_after_a_few(table: str, rows: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 4:
            raise Interrupted(table)

    with pytest.raises(Interrupted):
        copy_database(source, target, batch=2, on_batch=killed_after_a_few)
    partial = everything(target)
    assert 0 < sum(map(len, partial.values())) < sum(map(len, before.values()))

    # Run again (the real command): it continues, doubling nothing.
    done = nb(site, "db", "copy", "--to", database_url, "--batch", "3")
    assert "copy complete" in done.stdout, done.stdout
    assert everything(target) == before  # every row, ids and all, once
    assert "Traceback" not in done.stderr

    # The site runs on the new database: nothing already sent goes out again.
    switch_database(site, database_url)
    again = nb(site, "run", "--once")
    assert "0 edition(s); sent 0" in again.stdout, again.stdout
    assert (len(outbox(site)), len(posts(site))) == (sent, announced)
    # New rows get new ids (PostgreSQL's sequences were moved past the copied ones).
    nb(site, "subscribers", "add", "newcomer@example.org")
    with target.connect() as conn:
        ids = list(conn.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    assert ids[-1] == max(r["id"] for r in before["subscribers"]) + 1
    source.dispose()
    target.dispose()


def test_a_wrong_target_is_one_line_without_traceback(site: Path) -> None:
    nb(site, "db", "upgrade")
    wrong = nb(site, "db", "copy", "--to", "nosuchdb://somewhere/x", check=False)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: --to nosuchdb://somewhere/x: ")
    assert "Traceback" not in wrong.stderr
    same = nb(site, "db", "copy", "--to", "sqlite:///var/newsbroadcast.db", check=False)
    assert same.returncode == 2 and "the database being copied" in same.stderr
