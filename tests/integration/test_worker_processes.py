"""`worker --processes N` as a user runs it: real processes, a real SMTP sink on loopback,
SQLite and PostgreSQL. The supervisor's children share the work, stop on its SIGTERM, and
one that dies is started again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from newsbroadcast.db.engine import make_engine, upgrade
from tests.cli_runner import process_command, process_env, run_process
from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.smtp_sink import SmtpSink

DEADLINE = 120.0  # a give-up bound for a loaded machine, not a timing assertion
STARTED = re.compile(r"worker process (\d+) started \(pid (\d+)\)")


def test_processes_once_share_an_edition_and_send_each_message_once(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with SmtpSink() as sink:
        config = write_site(tmp_path, database_url, sink.port, email={"batch_size": 20})
        everyone = add_subscribers(engine, 300)
        plan_edition(service_for(config, engine))
        ran = run_process(config, "worker", "--processes", "2", "--once", cwd=tmp_path)
        received = Counter(r for m in sink.messages for r in m.recipients)
    engine.dispose()
    assert "sent 300, retry later 0, failed 0, skipped 0" in ran.stdout
    assert received == Counter(everyone)  # each one, once
    pids = {pid for _, pid in STARTED.findall(ran.stderr)}
    assert len(pids) == 2, ran.stderr


def test_processes_must_be_at_least_one(tmp_path: Path) -> None:
    config = write_site(tmp_path, f"sqlite:///{tmp_path / 'nb.db'}", 2525)
    ran = run_process(config, "worker", "--processes", "0", cwd=tmp_path, check=False)
    assert ran.returncode != 0 and "--processes must be at least 1" in ran.stderr


class Supervisor:
    """`worker --processes 2` in the background, its log read as it grows."""

    def __init__(self, config: Path) -> None:
        self.log = config.parent / "supervisor.log"
        self.process = subprocess.Popen(
            process_command(config, "worker", "--processes", "2"),
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            env=process_env(),
            cwd=config.parent,
        )

    def children(self) -> dict[int, int]:
        """The latest pid of each child, by number, as the supervisor logged them."""
        return {int(n): int(pid) for n, pid in STARTED.findall(self.log.read_text())}

    def wait_for(self, what: str, condition) -> None:  # type: ignore[no-untyped-def]
        end = time.monotonic() + DEADLINE
        while not condition():
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < end, f"never {what}: {self.log.read_text()[-3000:]}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=DEADLINE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    database = f"sqlite:///{tmp_path / 'nb.db'}"
    engine = make_engine(database)
    upgrade(engine)
    engine.dispose()
    config = write_site(tmp_path, database, 2525, scheduler={"dispatch_every": "0.2s"})
    running = Supervisor(config)
    yield running
    running.stop()


def _started(log: Path) -> int:
    return log.read_text().count("worker started")


def test_sigterm_to_the_supervisor_stops_every_child(supervisor: Supervisor) -> None:
    supervisor.wait_for("two children working", lambda: _started(supervisor.log) >= 2)
    pids = list(supervisor.children().values())
    assert len(pids) == 2
    assert supervisor.stop() == 0, supervisor.log.read_text()[-3000:]
    assert not any(_alive(pid) for pid in pids)
    assert supervisor.log.read_text().count("worker stopped") == 2


def test_a_child_that_dies_is_reported_and_started_again(supervisor: Supervisor) -> None:
    supervisor.wait_for("two children working", lambda: _started(supervisor.log) >= 2)
    before = supervisor.children()
    os.kill(before[1], signal.SIGKILL)
    supervisor.wait_for(
        "a new first child", lambda: supervisor.children().get(1, before[1]) != before[1]
    )
    supervisor.wait_for("the new child working", lambda: _started(supervisor.log) >= 3)
    log = supervisor.log.read_text()
    assert f"worker process 1 (pid {before[1]}) was killed by SIGKILL" in log
    assert supervisor.children()[2] == before[2]  # the other one was left alone
    assert supervisor.stop() == 0
