"""Articles read from a table or view in another application's database, strictly read-only.

The connection is made read-only by the database itself, not only by our good manners:
SQLite is opened with ``mode=ro`` and ``PRAGMA query_only``; PostgreSQL sessions are set to
``READ ONLY`` transactions; MySQL/MariaDB likewise. Reading is incremental: only rows whose
``cursor`` column is past the stored position are read, in batches ordered by it. The new
position is returned in ``FetchResult.cursor`` and committed together with the articles.

A row that cannot be used (no title, a date that is not a date) is listed in
``FetchResult.skipped`` as ``row <cursor column>=<value>`` and the cursor moves past it: one
bad row must not block every row behind it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, MetaData, Table, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from newsbroadcast.config import SqlSource
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft, FetchResult
from newsbroadcast.sources.dates import as_utc, parse_date

__all__ = ["fetch_sql", "readonly_engine"]

log = logging.getLogger(__name__)


def readonly_engine(url: str, base_dir: Path, timeout: float = 20) -> Engine:
    """An engine on ``url`` whose every connection refuses writes.

    A relative SQLite path is resolved against ``base_dir``. Raises ``ValueError`` for a
    database we cannot make read-only (we would rather not read it than risk writing).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if not db or db == ":memory:":
            raise ValueError("an sql source needs a SQLite file, not an in-memory database")
        path = Path(db) if Path(db).is_absolute() else base_dir / db
        if not path.exists():
            raise ValueError(f"{path}: no such SQLite database")
        # mode=ro: SQLite itself refuses to write, and never creates a missing file.
        engine = create_engine(
            f"sqlite:///file:{quote(path.as_posix())}?mode=ro&uri=true",
            connect_args={"timeout": timeout},
        )

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA query_only = ON")

        return engine
    if backend == "postgresql":
        # libpq's connect_timeout: an unreachable server fails this poll instead of hanging it.
        engine = create_engine(url, connect_args={"connect_timeout": max(1, int(timeout))})
        statement = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
    elif backend in ("mysql", "mariadb"):
        engine = create_engine(url)
        statement = "SET SESSION TRANSACTION READ ONLY"
    else:
        raise ValueError(
            f"cannot make a {backend} connection read-only; supported: sqlite, postgresql, "
            "mysql/mariadb (or give us a database user that may only SELECT, and ask for it)"
        )

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_conn.commit()  # the setting outlives this first (implicit) transaction

    return engine


def fetch_sql(source: SqlSource, base_dir: Path, cursor: str | None) -> FetchResult:
    try:
        position = _load_cursor(cursor)
    except ValueError as e:
        raise SourceError(
            source.name, f"{e}; clear source_state.cursor to read from the start"
        ) from e
    try:
        engine = readonly_engine(source.url, base_dir, source.timeout.total_seconds())
    except (ValueError, SQLAlchemyError) as e:
        raise SourceError(source.name, f"database {_safe(source.url)}: {e}") from e
    try:
        with engine.connect() as conn:
            table = _table(source, conn)
            drafts: list[ArticleDraft] = []
            skipped: list[str] = []
            col = table.c[source.cursor]
            while len(drafts) + len(skipped) < source.max_rows:
                query = select(table).order_by(col).limit(source.batch_size)
                query = query.where(col.is_not(None))
                if position is not None:
                    query = query.where(col > position)
                rows = conn.execute(query).mappings().all()
                for row in rows:
                    outcome = _draft(source, row)
                    if isinstance(outcome, str):
                        skipped.append(f"row {source.cursor}={row[source.cursor]!r}: {outcome}")
                    else:
                        drafts.append(outcome)
                    position = row[source.cursor]
                if len(rows) < source.batch_size:
                    break
            conn.rollback()  # nothing to keep: the transaction only ever read
    except SourceError:
        raise
    except SQLAlchemyError as e:
        raise SourceError(
            source.name, f"database {_safe(source.url)}: {type(e).__name__}: {e}"
        ) from e
    finally:
        engine.dispose()
    return FetchResult(drafts=drafts, skipped=skipped, cursor=_dump_cursor(position))


def _table(source: SqlSource, conn: Any) -> Table:
    try:
        table = Table(source.table, MetaData(), schema=source.db_schema, autoload_with=conn)
    except NoSuchTableError as e:
        insp = inspect(conn)
        names = insp.get_table_names(schema=source.db_schema) + insp.get_view_names(
            schema=source.db_schema
        )
        raise SourceError(
            source.name,
            f"no table or view {source.table!r} in {_safe(source.url)} "
            f"(there are: {', '.join(sorted(names)) or 'none'})",
        ) from e
    wanted = {k: v for k, v in source.columns.model_dump().items() if v}
    wanted["cursor"] = source.cursor
    missing = [f"{k}: {v!r}" for k, v in wanted.items() if v not in table.c]
    if missing:
        raise SourceError(
            source.name,
            f"{source.table}: no such column(s) {', '.join(missing)} "
            f"(the table has: {', '.join(c.name for c in table.c)})",
        )
    return table


def _draft(source: SqlSource, row: Mapping[str, Any]) -> ArticleDraft | str:
    cols = source.columns

    def text(column: str | None) -> str:
        value = row[column] if column else None
        return "" if value is None else str(value).strip()

    guid = text(cols.guid)
    if not guid:
        return f"empty {cols.guid!r} (the guid column)"
    title = " ".join(text(cols.title).split())
    if not title:
        return f"empty {cols.title!r} (the title column)"
    url = text(cols.url) or None
    if url and not url.startswith(("http://", "https://")):
        return f"{cols.url!r} is not an http(s) URL: {url!r}"
    published = None
    if cols.published_at and row[cols.published_at] is not None:
        value = row[cols.published_at]
        try:
            if isinstance(value, datetime | date):
                published = as_utc(value, source.timezone)
            else:
                published = parse_date(str(value), zone=source.timezone)
        except (ValueError, OverflowError) as e:
            return f"{cols.published_at!r} is not a date: {e}"
    return ArticleDraft(
        guid=guid,
        title=title,
        url=url,
        summary=text(cols.summary),
        body=text(cols.body),
        image=text(cols.image) or None,
        author=text(cols.author) or None,
        tags=_tags(row[cols.tags] if cols.tags else None),
        published_at=published,
    )


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                value = stripped.strip("[]").split(",")
        else:
            value = stripped.split(",")
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(dict.fromkeys(" ".join(str(t).split()) for t in items if str(t).strip()))


# The cursor is stored as JSON with its kind, so a timestamp comes back as a timestamp.
def _dump_cursor(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return json.dumps({"int": int(value)})
    if isinstance(value, int):
        return json.dumps({"int": value})
    if isinstance(value, Decimal):
        return json.dumps({"decimal": str(value)})
    if isinstance(value, float):
        return json.dumps({"float": value})
    if isinstance(value, datetime):
        return json.dumps({"datetime": value.isoformat()})
    if isinstance(value, date):
        return json.dumps({"date": value.isoformat()})
    return json.dumps({"str": str(value)})


def _load_cursor(stored: str | None) -> Any:
    if not stored:
        return None
    try:
        ((kind, value),) = json.loads(stored).items()
    except (ValueError, AttributeError) as e:
        raise ValueError(f"unreadable cursor {stored!r}") from e
    return {
        "int": int,
        "decimal": Decimal,
        "float": float,
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
        "str": str,
    }[kind](value)


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"
