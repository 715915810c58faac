"""Our own database: engine and sessions (engine), the tables (models), the Alembic
migrations (migrations/), and copying one database into another (copy).

May import ``errors`` and ``config`` only. The package re-exports the engine's API, so
``from newsbroadcast import db; db.sessions(engine)`` reads as it always did.
"""

from newsbroadcast.db.engine import (
    CONNECT_TIMEOUT_SECONDS,
    MIGRATIONS,
    DatabaseWatch,
    alembic_config,
    is_postgres,
    log,
    make_engine,
    rowcount,
    sessions,
    upgrade,
    watch,
)

__all__ = [
    "MIGRATIONS",
    "CONNECT_TIMEOUT_SECONDS",
    "log",
    "rowcount",
    "make_engine",
    "is_postgres",
    "sessions",
    "alembic_config",
    "upgrade",
    "DatabaseWatch",
    "watch",
]
