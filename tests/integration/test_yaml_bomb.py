"""A YAML alias bomb is refused as a file:line problem by `check`, at start and by hot
reload: never a process growing to gigabytes."""

from __future__ import annotations

import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from newsbroadcast.config.model import load_config
from newsbroadcast.config.reload import ConfigWatcher
from newsbroadcast.service import Service
from tests.cli_runner import process_command, process_env
from tests.conftest import ROOT
from tests.integration.test_cli_run import SECRET, site  # noqa: F401  (the fixture)
from tests.unit.test_yaml_source import laughs

# Enough for the service to start; a loader that expands the bomb runs out long before.
MEMORY_CAP = 2 * 1024**3


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def with_bomb(config: Path, levels: int) -> int:
    """Append a bomb to ``config``; the line of the alias that blows the cap."""
    before = config.read_text()
    config.write_text(before + laughs(levels))
    # l2 repeats 90 values, l3 810, l4 7290: the cap is crossed in l4 (line 5 of the bomb).
    return before.count("\n") + 5


def test_check_and_run_refuse_a_billion_laughs_by_line(site: Path) -> None:  # noqa: F811
    config = site / "config/newsbroadcast.yaml"
    line = with_bomb(config, 9)
    env = process_env({"NEWSBROADCAST_SECRET": SECRET})
    for command in (["check"], ["run", "--once"]):
        # A process of its own: its memory is capped, so a bomb that got through would fail.
        result = subprocess.run(
            process_command(config, *command),
            capture_output=True,
            text=True,
            env=env,
            cwd=site,
            timeout=120,
            preexec_fn=cap_memory,
        )
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert result.stderr.startswith(f"{config}:{line}: alias *l3 repeats more than"), (
            command,
            result.stderr[-2000:],
        )
        assert "Traceback" not in result.stderr


def test_hot_reload_refuses_a_bomb_and_keeps_the_last_good_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSBROADCAST_SECRET", SECRET)  # the watcher reads the environment
    for part in ("config", "templates", "examples"):
        shutil.copytree(ROOT / part, tmp_path / part)
    config = tmp_path / "config/newsbroadcast.yaml"
    service = Service(load_config(config))
    try:
        good = service.config
        watcher = ConfigWatcher(service, config)
        # Small enough for a loader without a cap to finish, so this test fails rather
        # than hangs there.
        line = with_bomb(config, 6)
        outcome = watcher.look()
        assert outcome is not None and not outcome.applied
        assert [str(p).split(" repeats")[0] for p in outcome.problems] == [
            f"{config}:{line}: alias *l3"
        ]
        assert service.config is good
    finally:
        service.close()
