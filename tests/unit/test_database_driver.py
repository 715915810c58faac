"""A PostgreSQL URL on an install without its driver says what to install."""

from __future__ import annotations

import sys

import pytest

from newsbroadcast.db.engine import make_engine
from newsbroadcast.errors import ConfigError


def test_a_missing_postgresql_driver_is_a_config_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if never installed
    with pytest.raises(ConfigError) as caught:
        make_engine("postgresql+psycopg://reader@127.0.0.1:5432/news")
    [problem] = caught.value.problems
    assert "'psycopg', which is not installed" in problem.message
    assert "pip install 'newsbroadcast[postgres]'" in problem.message
