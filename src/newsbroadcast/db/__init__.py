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
    driver_reason,
    is_postgres,
    log,
    make_engine,
    rowcount,
    safe_url,
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
    "safe_url",
    "driver_reason",
]
