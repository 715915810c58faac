"""`pip install newsbroadcast` without extras is the SQLite user's install: it must run.

Builds the wheel from this source tree, installs it in a fresh virtual environment (no
psycopg, no test extras) and runs the first commands a new user runs. Slow-ish (pip fetches
the dependencies, from its cache when warm), so it is marked ``install``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import newsbroadcast

# The tree whose code this test run imports (PYTHONPATH=src in a worktree).
TREE = Path(newsbroadcast.__file__).resolve().parents[2]
SECRET = "plain-install-secret-0123456789"

pytestmark = pytest.mark.install


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Nothing of the test environment may leak in: no PYTHONPATH, no database URL.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env |= {"NEWSBROADCAST_SECRET": SECRET, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("NEWSBROADCAST_CONFIG", None)
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900
    )
    if result.returncode != 0:
        raise AssertionError(f"{args} exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_a_wheel_without_extras_inits_and_runs_on_sqlite(tmp_path: Path) -> None:
    # Build from a copy: a build in the tree itself leaves build/ and *.egg-info behind.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(TREE / name, tree / name)
    # site/ holds links to config/, templates/, examples/: copied as the files they name.
    shutil.copytree(
        TREE / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", tree)
    [wheel] = (tmp_path / "dist").glob("newsbroadcast-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, nb = venv / "bin/python", venv / "bin/newsbroadcast"
    run(python, "-m", "pip", "install", "-q", wheel)
    probe = "import importlib.util as u; print(u.find_spec('psycopg') is None)"
    assert run(python, "-c", probe).stdout.strip() == "True", "psycopg is in the fresh venv"

    run(nb, "init", "site", cwd=tmp_path)
    site = tmp_path / "site"
    run(nb, "check", cwd=site)
    run(nb, "subscribers", "import", "examples/subscribers.csv", cwd=site)
    once = run(nb, "run", "--once", cwd=site)
    assert "Traceback" not in once.stderr
    assert "failed 0" in once.stdout, once.stdout
    assert list((site / "var/outbox").glob("*.eml")), once.stdout
