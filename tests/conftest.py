"""Shared fixtures. `database_url` runs a test on a real SQLite file and on a real PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (`.ci/run` sets it); each test gets a schema of its
own, dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from newsbroadcast.db.engine import make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent


def _postgres_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


@contextlib.contextmanager
def postgres_schema(options: str = "") -> Iterator[str]:
    """The URL of a fresh schema on TEST_DATABASE_URL's server, dropped afterwards (skips
    the test without one). ``options``: more ``-c name=value`` settings for its sessions."""
    base = _postgres_url()
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set (CI sets it; see .ci/run)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    settings = quote(f"-csearch_path={schema} {options}".strip())
    try:
        yield f"{base}{sep}options={settings}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'newsbroadcast.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database: SQLite file or PostgreSQL schema."""
    eng = make_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()
