"""The `newsbroadcast` command, called as a user calls it: in this process (fast, for the
commands' logic) or as a real process (signals, crashes, `python -m newsbroadcast` itself).

Both take the config file, the arguments, the folder to run in and extra environment, and
return what the process would: exit code, standard output, standard error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsbroadcast.cli import main

# What the user's shell may hold that would pick another site or database than the test's.
_FOREIGN_ENV = ("DATABASE_URL", "NEWSBROADCAST_CONFIG")


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _checked(ran: Ran, check: bool) -> Ran:
    if check and ran.returncode != 0:
        raise AssertionError(f"exit {ran.returncode}\n{ran.stdout}\n{ran.stderr}")
    return ran


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """The CLI installs its handler on the root logger and sets levels, as a process's
    start does; put back what was there, so one call does not leak into the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in ("alembic", "apscheduler")}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                handler.close()
        # As it was, in order: the CLI also removes a handler of its own left by an earlier
        # call, which must come back.
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in named.items():
            logging.getLogger(name).setLevel(old)


def run_cli(
    config: Path | None,
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    check: bool = True,
) -> Ran:
    """``newsbroadcast --config <config> <args>`` (``config`` None: no --config) in this
    process, in ``cwd`` (None: here), with ``env`` added to the environment (None: unset); cwd,
    environment and logging are as before afterwards."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, _logging_restored():
        for name in _FOREIGN_ENV:
            patch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*_config_option(config), *args])
            except SystemExit as e:  # argparse: usage errors, --help, --version
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return _checked(Ran(code, out.getvalue(), err.getvalue()), check)


def _config_option(config: Path | None) -> list[str]:
    return [] if config is None else ["--config", str(config)]


def process_command(config: Path | None, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsbroadcast", *_config_option(config), *args]


def process_env(env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment less the foreign settings, with ``env`` (None: unset)."""
    full: dict[str, str | None] = {**os.environ, **(env or {})}
    for name in _FOREIGN_ENV:
        full.pop(name, None)
    return {name: value for name, value in full.items() if value is not None}


def run_process(
    config: Path | None,
    *args: str,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    check: bool = True,
) -> Ran:
    """The same as a real `python -m newsbroadcast` process."""
    result = subprocess.run(
        process_command(config, *args),
        capture_output=True,
        text=True,
        env=process_env(env),
        cwd=cwd,
        timeout=120,
    )
    return _checked(Ran(result.returncode, result.stdout, result.stderr), check)
