"""Crash safety and many processes on one PostgreSQL, with real subprocesses: `worker`
killed with SIGKILL at random moments of a 10,000-recipient edition, and two `run`
processes firing the same digest at once. The SMTP sink runs in a thread of the test."""

from __future__ import annotations

import email
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsbroadcast.db.engine import make_engine, sessions, upgrade
from newsbroadcast.db.models import Delivery, Edition
from tests.cli_runner import process_command, process_env
from tests.integration.delivery_site import (
    add_subscribers,
    nb,
    plan_edition,
    service_for,
    write_site,
)
from tests.smtp_sink import SmtpSink

on_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
CONNECTIONS = 4
RECIPIENTS = 10_000
KILLS = 4
DEADLINE = 300.0  # a give-up bound for a loaded machine, not a timing assertion


def _counts(url_sessions, edition_id: int) -> Counter[str]:  # type: ignore[no-untyped-def]
    with url_sessions() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.edition_id == edition_id)
            .group_by(Delivery.status)
        ).all()
        return Counter(dict(rows))


def _start_worker(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        process_command(config_path, "worker"),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=process_env(),
        cwd=config_path.parent,
    )


@pytest.mark.postgres
@on_postgres
def test_kill_9_at_random_moments_loses_nothing_and_repeats_at_most_the_wire(
    database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    engine = make_engine(database_url)
    upgrade(engine)
    with SmtpSink() as sink:
        config_path = write_site(
            tmp_path, database_url, sink.port,
            smtp={"connections": CONNECTIONS},
            email={"batch_size": 50},
            scheduler={"lease": "6s", "dispatch_every": "0.1s"},
        )  # fmt: skip
        everyone = add_subscribers(engine, RECIPIENTS)
        edition = plan_edition(service_for(config_path, engine))
        log = tmp_path / "workers.log"
        kills = 0
        for _ in range(KILLS):
            worker = _start_worker(config_path, log)
            target = len(sink.messages) + rng.randint(0, 1500)  # 0: killed while starting
            end = time.monotonic() + DEADLINE
            while len(sink.messages) < target and worker.poll() is None:
                assert time.monotonic() < end, f"no progress (seed {seed})"
                time.sleep(0.002)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
        # The last worker finishes the edition, then stops cleanly on SIGTERM.
        worker = _start_worker(config_path, log)
        end = time.monotonic() + DEADLINE
        while _counts(sessions(engine), edition)["sent"] < RECIPIENTS:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < end, (
                f"edition not finished (seed {seed}): {_counts(sessions(engine), edition)}"
            )
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]
        received = list(sink.messages)

    # Every recipient has exactly one delivery, and it is `sent`.
    assert _counts(sessions(engine), edition) == {"sent": RECIPIENTS}
    # The sink lost nobody…
    copies: dict[str, list[str]] = defaultdict(list)
    for m in received:
        (rcpt,) = m.recipients
        copies[rcpt].append(email.message_from_bytes(m.data)["Message-ID"])
    assert sorted(copies) == sorted(everyone), f"seed {seed}"
    # …and repeated at most the message on the wire of each connection at each kill, with
    # the same Message-ID, so a receiver can drop the copy.
    duplicates = {r: ids for r, ids in copies.items() if len(ids) > 1}
    assert sum(len(ids) - 1 for ids in duplicates.values()) <= kills * CONNECTIONS, (
        f"seed {seed}: {duplicates}"
    )
    assert all(len(set(ids)) == 1 for ids in duplicates.values()), duplicates
    engine.dispose()


@pytest.mark.postgres
@on_postgres
def test_two_schedulers_firing_the_same_digest_make_one_edition(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with SmtpSink() as sink:
        config_path = write_site(
            tmp_path, database_url, sink.port, smtp={"connections": 2}, cron="* * * * *"
        )
        everyone = add_subscribers(engine, 400)
        runs = [
            subprocess.Popen(
                process_command(config_path, "run", "--once"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=process_env(),
                cwd=tmp_path,
            )
            for _ in range(2)
        ]
        outputs = [r.communicate(timeout=120) for r in runs]
        assert [r.returncode for r in runs] == [0, 0], outputs
        with sessions(engine)() as session:
            assert session.scalar(select(func.count()).select_from(Edition)) == 1
        assert Counter(sink.recipients()) == Counter(everyone)  # one copy each
        status = nb(config_path, "status").stdout
        assert "editions in progress: none" in status
        assert "400/400 sent" in status
    engine.dispose()


def test_edition_commands_pause_resume_cancel(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with SmtpSink() as sink:
        config_path = write_site(tmp_path, database_url, sink.port)
        add_subscribers(engine, 5)
        edition = plan_edition(service_for(config_path, engine))
        assert "paused" in nb(config_path, "edition", "pause", str(edition)).stdout
        status = nb(config_path, "status").stdout
        assert f"#{edition} daily" in status and "paused: 0/5 sent, 5 queued" in status
        assert "sent 0," in nb(config_path, "worker", "--once").stdout
        assert "resumed" in nb(config_path, "edition", "resume", str(edition)).stdout
        nb(config_path, "edition", "pause", str(edition))
        cancelled = nb(config_path, "edition", "cancel", str(edition)).stdout
        assert "5 waiting deliveries skipped" in cancelled
        assert "sent 0," in nb(config_path, "worker", "--once").stdout
        assert sink.messages == []
        again = subprocess.run(
            process_command(config_path, "edition", "cancel", str(edition)),
            capture_output=True, text=True, env=process_env(), cwd=tmp_path,
        )  # fmt: skip
        assert again.returncode == 2 and "already cancelled" in again.stderr
    engine.dispose()
