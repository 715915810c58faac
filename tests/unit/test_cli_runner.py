"""The in-process CLI runner leaves no trace of one call in the next test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tests.cli_runner import run_cli


def test_a_call_in_process_leaves_logging_environment_and_folder_as_they_were(
    tmp_path: Path,
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    alembic = logging.getLogger("alembic").level
    folder, environment = Path.cwd(), dict(os.environ)

    ran = run_cli(None, "api", "hash-token", cwd=tmp_path, env={"NEWSBROADCAST_SECRET": "s"})

    assert ran.returncode == 0 and "token" in ran.stdout
    assert root.handlers == handlers and root.level == level
    assert logging.getLogger("alembic").level == alembic
    assert Path.cwd() == folder and dict(os.environ) == environment


def test_usage_errors_come_back_as_the_exit_code_and_standard_error() -> None:
    ran = run_cli(None, "no-such-command", check=False)
    assert ran.returncode == 2 and "invalid choice" in ran.stderr
