"""Articles read from a table or view in another application's database, strictly read-only.

The connection is made read-only by the database itself, not only by our good manners:
SQLite is opened with ``mode=ro`` and ``PRAGMA query_only``; PostgreSQL sessions are set to
``READ ONLY`` transactions; MySQL/MariaDB likewise. Reading is incremental: rows from just
behind the stored position on, in batches ordered by (cursor, guid). Each poll reads again
the rows within ``lookback`` (a time, for a date/time cursor) or ``lookback_rows`` (any other)
of the position, so rows sharing the cursor's last value and rows committed late (after a
newer one was read) are not lost; the store dedupes them by guid. The new position is
returned in ``FetchResult.cursor`` and committed together with the articles.

A row that cannot be used (no title, a cell that is not what its column says) is listed in
``FetchResult.skipped`` as ``row <guid column>=<value>: why`` and the cursor moves past it:
one bad row must not block every row behind it. Rows with no cursor value and a second row
with the same guid are listed too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    MetaData,
    RowMapping,
    Table,
    Text,
    cast,
    create_engine,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import NullType

from newsbroadcast.config.model import SqlSource
from newsbroadcast.db.engine import driver_reason, safe_url
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
        # libpq's connect_timeout: an unreachable server fails this poll instead of hanging it;
        # statement_timeout: so does a query stuck behind the other application's lock (set in
        # the session, not in ``options``, which would replace the URL's own).
        engine = create_engine(url, connect_args={"connect_timeout": max(1, int(timeout))})
        statements = [
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            f"SET statement_timeout = {max(1, int(timeout * 1000))}",
        ]
    elif backend in ("mysql", "mariadb"):
        engine = create_engine(url, connect_args=_mysql_timeouts(parsed.get_driver_name(), timeout))
        statements = ["SET SESSION TRANSACTION READ ONLY"]
    else:
        raise ValueError(
            f"cannot make a {backend} connection read-only; supported: sqlite, postgresql, "
            "mysql/mariadb (or give us a database user that may only SELECT, and ask for it)"
        )

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()
        dbapi_conn.commit()  # the setting outlives this first (implicit) transaction

    return engine


def _mysql_timeouts(driver: str, timeout: float) -> dict[str, Any]:
    """The driver's own socket timeouts, so a silent server or a query stuck behind a lock
    fails this poll after ``timeout`` instead of hanging it (and the scheduler's thread)."""
    seconds = max(1, int(timeout))
    if driver in ("mysqldb", "pymysql", "mariadbconnector"):  # they take the same names
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}
    if driver == "mysqlconnector":
        return {"connection_timeout": seconds}
    return {}


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
        raise SourceError(source.name, f"database {safe_url(source.url)}: {e}") from e
    try:
        with engine.connect() as conn:
            table = _table(source, conn)
            result = _Read(source, table, conn.dialect.name, position).run(conn)
            conn.rollback()  # nothing to keep: the transaction only ever read
    except SourceError:
        raise
    except SQLAlchemyError as e:
        raise SourceError(
            source.name, f"database {safe_url(source.url)}: {driver_reason(e)}"
        ) from e
    finally:
        engine.dispose()
    return result


_DATELIKE = (sqltypes.Date, sqltypes.DateTime, sqltypes.Time)
_NEW = "_newsbroadcast_past_cursor"  # a computed column: is this row past the stored position
_NULLS_NAMED = 10  # rows with no cursor named one by one; the rest are counted


class _Read:
    """One poll of the table: the rows from just behind the stored position to the end (or
    ``max_rows`` past it), each row judged on its own.

    Values are read *raw* where the driver would judge a cell and fail the whole batch on a
    bad one: on SQLite every column (any cell may hold any value, whatever the declared
    type; SQLAlchemy's DATETIME, NUMERIC, JSON converters raise on one that does not fit),
    elsewhere the date/time columns, as text (psycopg raises on 'infinity' or a year past
    9999). Positions are compared in the database, in its own order, never in Python.
    """

    def __init__(self, source: SqlSource, table: Table, dialect: str, position: Any) -> None:
        self.source = source
        self.sqlite = dialect == "sqlite"
        self.position = position
        column = table.c[source.cursor]
        # Compared as it is stored on SQLite: a typed comparison would convert our value.
        self.col = type_coerce(column, NullType()) if self.sqlite else column
        self.guid_col = table.c[source.columns.guid]
        self.dated_cursor = isinstance(column.type, _DATELIKE)
        self.cursor_type = column.type
        wanted = [source.cursor, *(v for v in source.columns.model_dump().values() if v)]
        self.table = table
        self.columns = [self._raw(table.c[name]) for name in dict.fromkeys(wanted)]
        self.drafts: dict[str, ArticleDraft] = {}
        self.skipped: list[str] = []

    def _raw(self, col: ColumnElement[Any]) -> ColumnElement[Any]:
        if self.sqlite:
            return type_coerce(col, NullType()).label(col.name)
        if isinstance(col.type, _DATELIKE):
            return cast(col, Text).label(col.name)
        return col

    def _bound(self, value: Any) -> ColumnElement[Any]:
        """``value``, as ``_raw`` read it, as something the cursor column compares with."""
        if self.sqlite:
            return literal(value, NullType())
        if self.dated_cursor:
            return cast(literal(str(value), Text()), self.cursor_type)
        return literal(value, self.cursor_type)

    def run(self, conn: Connection) -> FetchResult:
        self._report_null_cursors(conn)
        past = literal(True) if self.position is None else self.col > self._bound(self.position)
        query = select(*self.columns, past.label(_NEW)).where(self.col.is_not(None))
        query = query.order_by(self.col, self.guid_col).limit(self.source.batch_size)
        since = self._lookback(conn)
        offset = 0
        last: Any = None  # the last row's cursor value, and how many rows in a row had it
        run = 0
        newest: Any = None  # the cursor value of the last row read past the position
        fresh = 0
        stop_at: Any = None
        more = False
        while True:
            page = query if since is None else query.where(since)
            rows = conn.execute(page.offset(offset)).mappings().all()
            for row in rows:
                value = row[self.source.cursor]
                if stop_at is not None and value != stop_at:
                    more = True  # max_rows reached: the rest waits for the next poll
                    break
                run = run + 1 if run and value == last else 1
                last = value
                self._take(row)
                if row[_NEW] and (not self.dated_cursor or _moment(value) is not None):
                    newest = value  # past a bad row too: it must not block those behind it
                if row[_NEW]:
                    fresh += 1
                    if fresh >= self.source.max_rows and stop_at is None:
                        stop_at = value  # but read every row with this same value first
            else:
                if len(rows) == self.source.batch_size:
                    # Rows sharing the last value may go on in the next page: start at that
                    # value and step over those already read.
                    since, offset = self.col >= self._bound(last), run
                    continue
            break
        position = self.position if newest is None else newest
        return FetchResult(
            drafts=list(self.drafts.values()),
            skipped=self.skipped,
            cursor=_dump_cursor(position),
            more=more,
        )

    def _lookback(self, conn: Connection) -> ColumnElement[bool] | None:
        """Where this poll starts: just behind the stored position (None: the beginning)."""
        if self.position is None:
            return None
        at = self.col >= self._bound(self.position)
        if self.dated_cursor and (moment := _moment(self.position)) is not None:
            try:
                earlier = _shaped_like(self.position, moment - self.source.lookback)
            except OverflowError:
                return at
            return or_(self.col >= self._bound(earlier), at)
        back = (
            select(self._raw(self.table.c[self.source.cursor]))
            .where(self.col <= self._bound(self.position))
            .order_by(self.col.desc())
            .limit(1)
            .offset(self.source.lookback_rows - 1)
        )
        start = conn.execute(back).scalar()
        return None if start is None else self.col >= self._bound(start)

    def _take(self, row: RowMapping) -> None:
        """Make ``row`` a draft, or note why it cannot be one. Only rows past the
        stored position are reported: those behind it were reported when first read."""
        name = self._name(row)
        problem: str | None = None
        value = row[self.source.cursor]
        if self.dated_cursor and _moment(value) is None:
            problem = f"{self.source.cursor!r} (the cursor column) is not a date: {value!r}"
        outcome = problem or _draft(self.source, row)
        if isinstance(outcome, str):
            (self.skipped.append if row[_NEW] else _debug)(f"row {name}: {outcome}")
            return
        if outcome.guid in self.drafts and row[_NEW]:
            self.skipped.append(
                f"row {name}: another row has the same {self.source.columns.guid!r}; "
                "the later one is taken"
            )
        self.drafts.pop(outcome.guid, None)  # the later row is the story as it is now
        self.drafts[outcome.guid] = outcome

    def _name(self, row: RowMapping) -> str:
        guid = row[self.source.columns.guid]
        if guid is None or not str(guid).strip():
            return f"{self.source.cursor}={row[self.source.cursor]!r}"
        return f"{self.source.columns.guid}={guid!r}"

    def _report_null_cursors(self, conn: Connection) -> None:
        """Rows without a cursor value cannot be placed, so are never read: say so, on
        every poll, until someone gives them one."""
        missing = self.col.is_(None)
        guids = conn.execute(
            select(self._raw(self.guid_col))
            .where(missing)
            .order_by(self.guid_col)
            .limit(_NULLS_NAMED)
        ).scalars()
        named = 0
        for guid in guids:
            named += 1
            self.skipped.append(
                f"row {self.source.columns.guid}={guid!r}: no {self.source.cursor!r} "
                "(the cursor column), so it is never read"
            )
        if named == _NULLS_NAMED:
            total = conn.execute(select(func.count()).select_from(self.table).where(missing))
            rest = (total.scalar() or 0) - named
            if rest:
                self.skipped.append(f"… and {rest} more rows with no {self.source.cursor!r}")


def _debug(message: str) -> None:
    log.debug("%s (behind the cursor: reported when first read)", message)


def _moment(value: Any) -> datetime | None:
    """A cursor value read raw, as a datetime; None when it is not one."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _shaped_like(raw: Any, moment: datetime) -> str:
    """``moment`` written the way ``raw`` is (SQLite compares the text as stored)."""
    if isinstance(raw, str) and len(raw.strip()) == 10:
        return moment.date().isoformat()
    sep = raw[10] if isinstance(raw, str) and len(raw) > 10 and raw[10] in "T " else " "
    return moment.isoformat(sep)


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
            f"no table or view {source.table!r} in {safe_url(source.url)} "
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


def _draft(source: SqlSource, row: RowMapping) -> ArticleDraft | str:
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
        except (ValueError, OverflowError):
            return f"{cols.published_at!r} is not a date: {value!r}"
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
    readers: dict[str, Callable[[Any], Any]] = {
        "int": int,
        "decimal": Decimal,
        "float": float,
        # Written by versions that read typed values; now positions are kept as read, raw.
        "datetime": lambda v: datetime.fromisoformat(v).isoformat(" "),
        "date": str,
        "str": str,
    }
    return readers[kind](value)
