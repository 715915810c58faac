"""Scaling: 1, 2 and 4 `newsbroadcast worker` processes on one PostgreSQL database, against
an SMTP sink that answers each message after a fixed delay (as a remote MTA would).

    TEST_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/scaling.py
        [--messages 600] [--delay 0.01] [--workers 1 2 4]

Each worker keeps one SMTP connection. The workers are started with the edition paused and
the clock starts when it is resumed, so process start-up is not measured. Prints messages
per second for each worker count and the speed-up against one worker, measured in this run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from sqlalchemy import func, select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from delivery import insert_subscribers, postgres_schema, site_data  # noqa: E402
from sink import start_sink  # noqa: E402


def run(base_url: str, port: int, workers: int, messages: int) -> float:
    from newsbroadcast.config.model import load_config
    from newsbroadcast.db.models import Delivery, SendStatus
    from newsbroadcast.outbox.steering import pause_edition, resume_edition
    from newsbroadcast.service import Service

    url, drop = postgres_schema(base_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            data = site_data(folder, url, port, 1)
            data["email"]["batch_size"] = 10
            data["scheduler"] = {"dispatch_every": "0.05s", "lease": "1m"}
            config_path = folder / "config.yaml"
            config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
            service = Service(load_config(config_path))
            insert_subscribers(service.engine, messages)
            service.poll()
            (planned,) = service.plan_digests(force=True)
            pause_edition(service.sessions(), planned.edition_id)
            logs = [folder / f"worker{i}.log" for i in range(workers)]
            env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
            for log in logs:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "newsbroadcast",
                            "--config",
                            str(config_path),
                            "worker",
                        ],
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=folder,
                    )  # fmt: skip
                )
            while not all("worker started" in log.read_text() for log in logs):
                time.sleep(0.05)
            start = time.perf_counter()
            resume_edition(service.sessions(), planned.edition_id)
            sent = select(func.count()).where(Delivery.status == SendStatus.sent)
            while True:
                with service.sessions() as session:
                    if session.scalar(sent) == messages:
                        break
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            service.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
        drop()
    return messages / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=600)
    p.add_argument("--delay", type=float, default=0.01, help="sink's seconds per message")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = p.parse_args()
    logging.getLogger("newsbroadcast").setLevel(logging.ERROR)  # "edition paused" is ours
    base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not base:
        raise SystemExit("set BENCH_DATABASE_URL or TEST_DATABASE_URL to a PostgreSQL URL")
    sink = start_sink(delay=args.delay)
    port, stop_sink = sink.port, sink.stop
    try:
        print(
            f"{args.messages} messages, sink answers each after {args.delay * 1000:.0f} ms, "
            f"one SMTP connection per worker, {os.cpu_count()} CPU cores"
        )
        first = None
        for n in args.workers:
            rate = run(base, port, n, args.messages)
            first = first or rate
            print(
                f"{n} worker(s): {rate:6.1f} msg/s, speed-up {rate / first:.2f}x "
                f"(linear would be {n / args.workers[0]:.0f}x)"
            )
    finally:
        stop_sink()


if __name__ == "__main__":
    main()
