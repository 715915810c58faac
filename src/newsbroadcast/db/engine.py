"""Engine, sessions and schema upgrades (Alembic) for SQLite and PostgreSQL alike, and the
one place that tells when the database stops (and starts again) answering."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.errors import ConfigError, Problem

MIGRATIONS = Path(__file__).with_name("migrations")
# A PostgreSQL server that does not answer a connection attempt within this is down.
CONNECT_TIMEOUT_SECONDS = 10

log = logging.getLogger("newsbroadcast.db")


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE, DELETE or INSERT touched. ``Session.execute`` is typed as
    returning a plain Result, but for these statements it is a CursorResult, which alone
    counts rows."""
    return cast(CursorResult[Any], result).rowcount


def make_engine(url: str, senders: int = 1) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, and SQLite is set up for
    one writer with waiting readers (WAL, a busy timeout) and enforced foreign keys.

    ``senders``: SMTP connections one dispatcher keeps (``email.smtp.connections``). Each
    holds a pooled connection through its batch, all in one thread (dispatch/multiplex.py),
    so the pool keeps one for each of them besides the usual five: a connection that had
    to wait for another's to come back would wait on itself."""
    parsed = make_url(url)
    pool = {"pool_size": 5 + senders}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses nothing when the process is killed (only on power loss
            # may the last commits roll back), and it saves an fsync per recorded send.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _savepoint_inside_a_transaction(conn: Connection, _name: str | None) -> None:
            # The sqlite3 module begins a transaction only before INSERT, UPDATE or DELETE,
            # not before SAVEPOINT. A savepoint that comes first is then a transaction of
            # its own and its RELEASE commits: other connections see half of the caller's
            # work (an edition without its deliveries, which the dispatcher then closes as
            # done) and a rollback no longer undoes it. Begin the enclosing one first.
            dbapi_conn: Any = conn.connection.driver_connection
            if dbapi_conn.isolation_level is not None and not dbapi_conn.in_transaction:
                dbapi_conn.execute("BEGIN")

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)
    except ModuleNotFoundError as e:
        # A plain `pip install newsbroadcast` is for SQLite: the driver is an extra.
        raise ConfigError(
            [
                Problem(
                    "database.url",
                    None,
                    f"{parsed.drivername} needs the Python package {e.name!r}, which is not "
                    "installed (for PostgreSQL: pip install 'newsbroadcast[postgres]')",
                )
            ]
        ) from e


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to call on every start."""
    command.upgrade(alembic_config(engine), "head")


class DatabaseWatch:
    """Says in one line when the database stops answering and in one when it answers again.

    Every repeating step (the scheduler's jobs, a worker's passes) goes through the one
    watch of its engine: ``reachable()`` before it runs (False while the database is down:
    skip this run, the next one tries again) and ``failed(error)`` when it fails (True: the
    database is unreachable, which has been said once; False: the step's own failure, for
    the caller to log as usual). Whether the database answers is asked of the database
    itself (``SELECT 1``), not guessed from the error's type or text.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._down_since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def reachable(self) -> bool:
        if self._down_since is None:
            return True
        reason = self._probe()
        if reason is not None:
            log.debug("database still unreachable: %s", reason)
            return False
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.info("database reachable again after %.0fs", time.monotonic() - since)
        return True

    def failed(self, error: BaseException) -> bool:
        if self._down_since is not None:
            return True  # a step that was already running when the database went away
        reason = self._probe()
        if reason is None:
            return False
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            log.error(
                "database unreachable: %s; retrying",
                reason,
                extra={"database": self.engine.url.render_as_string(hide_password=True)},
            )
        return True

    def _probe(self) -> str | None:
        """None when the database answers, else why not (one line)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as e:
            cause = e.orig if isinstance(e, DBAPIError) and e.orig is not None else e
            return (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return None


_watches: weakref.WeakKeyDictionary[Engine, DatabaseWatch] = weakref.WeakKeyDictionary()
_watches_lock = threading.Lock()


def watch(engine: Engine) -> DatabaseWatch:
    """The one watch of ``engine``: every step using it shares what it knows."""
    with _watches_lock:
        found = _watches.get(engine)
        if found is None:
            found = _watches[engine] = DatabaseWatch(engine)
        return found


def safe_url(url: object) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)  # type: ignore[arg-type]
    except (ArgumentError, TypeError, ValueError):
        return "(unparsable URL)"


def driver_reason(e: SQLAlchemyError) -> str:
    """The driver's own words, on one line: SQLAlchemy's message adds the SQL and a link."""
    cause: BaseException = e.orig if isinstance(e, DBAPIError) and e.orig is not None else e
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[0]}"
