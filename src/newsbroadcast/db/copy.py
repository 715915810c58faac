"""`newsbroadcast db copy --to URL`: a whole site from its database into another one.

For moving a site from SQLite to PostgreSQL (or back, or to a new server) without losing
what it knows: articles, subscribers with their preferences, suppressions, editions,
deliveries, posts, channel and source state; every table of db/models.py.

- The target is migrated first; rows are copied as they are, ids included, so every
  foreign key holds, and parents before children.
- In batches, each committed: memory stays flat and an interruption loses one batch.
- Resumable: running the command again continues. A table starts again from the highest
  (first) key the target already holds, and a row already there is skipped, never doubled.
- At the end PostgreSQL's id sequences are moved past the highest id (new rows must not
  collide with copied ones), and every table's rows are counted on both sides.

Stop the service (`run`, `worker`, `serve`) while copying: a row changed on the source
after it was copied would not be copied again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, Table, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from newsbroadcast import db
from newsbroadcast.db.models import Base
from newsbroadcast.errors import CopyError, InputError

log = logging.getLogger("newsbroadcast.dbcopy")

DEFAULT_BATCH = 1000


@dataclass(frozen=True)
class TableCopied:
    table: str
    rows: int  # in the source, and now in the target
    copied: int  # of which this run wrote


def open_target(url: str) -> Engine:
    """An engine on ``url``; InputError (naming the URL without its password) if it
    cannot be one."""
    try:
        return db.make_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise InputError(
            f"--to {db.safe_url(url)}: not a database URL SQLAlchemy can use: {e}"
        ) from e


def copy_database(
    source: Engine,
    target: Engine,
    batch: int = DEFAULT_BATCH,
    on_batch: Callable[[str, int], None] | None = None,
) -> list[TableCopied]:
    """Copy every table of ``source`` into ``target`` (see the module's docstring).

    ``on_batch(table, rows)`` is called after each committed batch. Raises InputError when
    both are one database, CopyError when a database fails (run again to continue) or
    the counts differ at the end.
    """
    if batch < 1:
        raise InputError(f"--batch must be at least 1, not {batch}")
    if _same_database(source, target):
        raise InputError(f"--to {db.safe_url(target.url)} is the database being copied")
    try:
        db.upgrade(target)
    except DBAPIError as e:
        raise CopyError(f"cannot prepare {db.safe_url(target.url)}: {db.driver_reason(e)}") from e
    report = []
    for table in Base.metadata.sorted_tables:
        report.append(_copy_table(source, target, table, batch, on_batch))
    try:
        if db.is_postgres(target):
            _move_sequences(target)
    except DBAPIError as e:
        raise CopyError(
            f"moving {db.safe_url(target.url)}'s id sequences: {db.driver_reason(e)}"
        ) from e
    _check_counts(source, target, report)
    return report


def _copy_table(
    source: Engine,
    target: Engine,
    table: Table,
    batch: int,
    on_batch: Callable[[str, int], None] | None,
) -> TableCopied:
    key = list(table.primary_key.columns)
    try:
        with target.connect() as out:
            before = _count(out, table)
            resume = _resume_from(out, table)
        with source.connect() as src:
            for rows in _batches(src, table, key, batch, resume):
                with target.begin() as out:
                    out.execute(_insert_missing(target, table), rows)
                if on_batch is not None:
                    on_batch(table.name, len(rows))
            total = _count(src, table)
        with target.connect() as out:
            after = _count(out, table)
    except DBAPIError as e:
        raise CopyError(
            f"copying table {table.name}: {db.driver_reason(e)}; run the command again to continue"
        ) from e
    log.info("table %s: %d rows, %d copied now", table.name, total, after - before)
    return TableCopied(table.name, total, after - before)


def _batches(
    src: Connection, table: Table, key: Sequence[Any], batch: int, resume: Any
) -> Iterator[list[dict[str, Any]]]:
    """The source's rows in key order, ``batch`` at a time (keyset pages, no OFFSET)."""
    query = select(table).order_by(*key).limit(batch)
    if resume is not None:
        query = query.where(key[0] >= resume)
    last: tuple[Any, ...] | None = None
    while True:
        page = query if last is None else query.where(tuple_(*key) > tuple_(*last))
        rows = [dict(r) for r in src.execute(page).mappings()]
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][c.name] for c in key)


def _resume_from(out: Connection, table: Table) -> Any:
    """Where an interrupted copy of ``table`` continues: the highest first key column the
    target holds, when that column is a number (copies go in key order, so every row
    below it is there). Text keys sort differently on SQLite and PostgreSQL, so such a
    table is read again whole, its copied rows skipped."""
    first = next(iter(table.primary_key.columns))
    if not isinstance(first.type, Integer):
        return None
    return out.scalar(select(func.max(first)))


def _insert_missing(target: Engine, table: Table) -> Any:
    module = postgresql if db.is_postgres(target) else sqlite
    return module.insert(table).on_conflict_do_nothing()


def _move_sequences(target: Engine) -> None:
    with target.begin() as out:
        for table in Base.metadata.sorted_tables:
            column = table.autoincrement_column
            if column is None:
                continue
            # The next id is one past the highest copied one (1 for an empty table).
            out.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence(:table, :column), "
                    f'COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, false)'
                ),
                {"table": table.name, "column": column.name},
            )


def _check_counts(source: Engine, target: Engine, report: list[TableCopied]) -> None:
    differ = []
    with source.connect() as src, target.connect() as out:
        for table in Base.metadata.sorted_tables:
            have, got = _count(src, table), _count(out, table)
            if have != got:
                differ.append(f"{table.name}: {have} in the source, {got} in the target")
    if differ:
        raise CopyError(
            "the copy is not complete: "
            + "; ".join(differ)
            + " (was the service still running, or the target not empty?)"
        )


def _count(conn: Connection, table: Table) -> int:
    return conn.scalar(select(func.count()).select_from(table)) or 0


def _same_database(a: Engine, b: Engine) -> bool:
    def where(e: Engine) -> str:
        if e.dialect.name == "sqlite" and e.url.database not in (None, "", ":memory:"):
            return str(Path(e.url.database).resolve())  # a relative path names it too
        return e.url.render_as_string(hide_password=False)

    return where(a) == where(b)
