"""Delivery end to end against a bare smtplib loop, to the same SMTP sink, in one run.

    .venv/bin/python bench/delivery.py [--subscribers 10000 [100000 ...]]
        [--databases sqlite postgresql] [--connections 4]

The sink (aiosmtpd, loopback) runs in a process of its own and only counts.
Baseline: a bare smtplib loop sending one prebuilt ~20 KB digest over the same number of
connections (one thread each), right before and right after each run (the mean counts).
Measured, in a fresh process per run: newsbroadcast making
an edition and delivering it: fan-out (INSERT … SELECT), per-recipient message, SMTP, state
recorded per message; subscribers are inserted beforehand (not timed). PostgreSQL comes from
$BENCH_DATABASE_URL or $TEST_DATABASE_URL (a throwaway schema is made and dropped).
Prints messages per second, the ratio to the baseline (goal >= 0.8) and the measured
process's peak RSS (goal < 300 MB at 100,000); then the CPU per message of every party
(ours: the measured process and its worker children; PostgreSQL's backends; the sink's)
and the cores they kept busy, the same for the baseline, and for several --processes the
ceiling that CPU sets on this machine: cores / CPU per message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, func, insert, literal, select, text
from sqlalchemy.pool import NullPool

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from sink import SINKS, Sink, SinkUnavailable, process_cpu_seconds, start_sink  # noqa: E402

GOAL_RATIO = 0.8
GOAL_RSS_MB = 300
FEED = (
    """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Bench</title><link>https://newsroom.example.org/</link>
<description>bench</description>
"""
    + "".join(
        f"""<item><title>Story {n}: women officers lead border patrol training</title>
<link>https://newsroom.example.org/2026/03/story-{n}</link><guid>story-{n}</guid>
<pubDate>Mon, 02 Mar 2026 0{n}:00:00 GMT</pubDate>
<description>&lt;p&gt;Forty officers completed &lt;em&gt;twelve weeks&lt;/em&gt; of
training, the agency said.&lt;/p&gt;</description></item>
"""
        for n in range(10)
    )
    + "</channel></rss>\n"
)


def site_data(folder: Path, database_url: str, port: int, connections: int) -> dict[str, Any]:
    """The benchmark site's configuration (as the YAML would hold it); writes its feed."""
    (folder / "feed.xml").write_text(FEED, encoding="utf-8")
    return {
        "root": str(folder),
        "templates": str(ROOT / "templates"),
        "site": {
            "name": "Women in Uniform",
            "url": "https://newsroom.example.org",
            "public_url": "https://news.example.org",
            "from": "Women in Uniform <digest@newsroom.example.org>",
            "list_id": "digest.newsroom.example.org",
            "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
            "secret": "bench-secret-0123456789",
        },
        "database": {"url": database_url},
        "sources": [{"name": "newsroom", "type": "feed", "url": "feed.xml"}],
        "email": {
            "transport": "smtp",
            "batch_size": 500,
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "connections": connections,
            },
        },
        "digests": [{"name": "daily", "cron": "0 7 * * *", "max_items": 10}],
    }


def site(folder: Path, database_url: str, port: int, connections: int):  # type: ignore[no-untyped-def]
    from newsbroadcast.config.model import Config

    return Config.model_validate(site_data(folder, database_url, port, connections))


def insert_subscribers(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` active subscribers in one INSERT … SELECT: setup memory stays flat too."""
    from newsbroadcast.db.models import Subscriber

    now = datetime.now(UTC)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            numbers = select(func.generate_series(1, count).label("n")).subquery()
        else:
            conn.execute(
                text(
                    "CREATE TEMP TABLE bench_n AS WITH RECURSIVE c(n) AS "
                    "(SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :count) SELECT n FROM c"
                ),
                {"count": count},
            )
            numbers = text("bench_n").columns(n=Subscriber.id.type).subquery()
        address = literal("r") + func.cast(numbers.c.n, Subscriber.email.type) + "@example.org"
        when = literal(now, Subscriber.created_at.type)
        rows = select(
            address, address, literal("en"), literal("active"), literal(0), when, when, when
        )
        conn.execute(
            insert(Subscriber).from_select(
                [
                    "email",
                    "email_key",
                    "language",
                    "status",
                    "bounce_count",
                    "created_at",
                    "updated_at",
                    "confirmed_at",
                ],
                rows.select_from(numbers),
            )  # fmt: skip
        )


# While worker children run: how often their backends' CPU is read from /proc, and how
# often pg_stat_activity is asked for new backends (a query, so less often).
# A reading costs about 0.15 ms of CPU, a query about 0.7 ms: about 1% of a core.
SAMPLE_EVERY = 0.02
DISCOVER_EVERY = 0.2


class PostgresCpu:
    """CPU time of the PostgreSQL backends serving this run (those whose application_name
    is the run's own: worker children have it too, in the URL of their YAML), read from
    /proc: PostgreSQL on loopback is on this machine.

    A backend is read while it lives: at the start, at each ``used()``, and every
    SAMPLE_EVERY inside ``sampling()``, which the run wraps around worker children (their
    backends end with them, before the last ``used()``). Limits: what a backend used after
    its last reading (up to SAMPLE_EVERY of its time, and its exit) is lost, and one that
    lived less than DISCOVER_EVERY may be missed: six busy backends ending at different
    times were counted 1-2% short of the postmaster's figure below. Not done instead: the
    postmaster's cutime + cstime (its reaped children) counts all of each ended backend,
    but also every other session's that ended meanwhile (other tests on this shared
    server, autovacuum workers), which nothing here could tell apart from ours."""

    def __init__(self, engine, application: str) -> None:  # type: ignore[no-untyped-def]
        # ``engine`` must be AUTOCOMMIT: pg_stat_activity is read once per transaction.
        self.engine, self.application = engine, application
        self.live: set[int] = set()  # pids to read again
        self.last: dict[int, float] = {}  # each backend's latest reading
        self.overhead = 0.0  # CPU seconds of the sampling thread (this process's, not ours)
        with self.engine.connect() as conn:
            self._refresh(conn)
        self.start = dict(self.last)

    def _refresh(self, conn) -> None:  # type: ignore[no-untyped-def]
        """Add the backends now in pg_stat_activity, and read all that still live."""
        self.live.update(
            conn.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                {"a": self.application},
            )
        )
        self._read()

    def _read(self) -> None:
        for pid in list(self.live):
            try:
                self.last[pid] = process_cpu_seconds(pid)
            except OSError:  # ended (its last reading stays), or not on this machine
                self.live.discard(pid)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _sample(self, stop: threading.Event) -> None:
        began = time.thread_time()
        with self.engine.connect() as conn:  # one connection: no backend started per query
            discover_at = 0.0
            while not stop.is_set():
                if time.monotonic() >= discover_at:
                    self._refresh(conn)
                    discover_at = time.monotonic() + DISCOVER_EVERY
                else:
                    self._read()
                stop.wait(SAMPLE_EVERY)
        self.overhead += time.thread_time() - began

    def used(self) -> float | None:
        """CPU seconds of the run's backends since the start; None if none was seen."""
        with self.engine.connect() as conn:
            self._refresh(conn)
        if not self.last:
            return None
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())


def _process_cpu() -> float:
    """This process's and its waited-for children's CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child(args: argparse.Namespace) -> None:
    """One measured run, in a process of its own so its peak RSS is its own."""
    from newsbroadcast.db.engine import make_engine
    from newsbroadcast.db.models import Delivery, SendStatus
    from newsbroadcast.service import Service

    url = args.url
    application = f"nbbench{uuid.uuid4().hex[:8]}"
    if url.startswith("postgresql"):
        url += ("&" if "?" in url else "?") + f"application_name={application}"
    with tempfile.TemporaryDirectory() as tmp:
        config = site(Path(tmp), url, args.port, args.connections)
        engine = make_engine(config.database_url)
        service = Service(config, engine=engine)
        insert_subscribers(engine, args.n)
        service.poll()
        postgres = None
        if engine.dialect.name == "postgresql":
            monitor = create_engine(args.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            postgres = PostgresCpu(monitor, application)
        cpu = _process_cpu()
        start = time.perf_counter()
        planned = service.plan_digests(force=True)
        fanned = time.perf_counter()
        fanout_cpu = _process_cpu() - cpu
        fanout_pg = postgres.used() if postgres else None
        sent_reported = 0
        if not args.fanout_only:
            if args.worker_processes:
                # Every count of a --processes list, 1 included, runs as `worker --once`
                # children, so each pays the same start-up and the speed-ups compare alike.
                from newsbroadcast.dispatch.processes import run_processes

                config_file = Path(tmp) / "bench.yaml"
                data = site_data(Path(tmp), url, args.port, args.connections)
                config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
                command = [sys.executable, "-m", "newsbroadcast", "--config", str(config_file),
                           "worker", "--once"]  # fmt: skip
                # Their backends end with them: read while they run.
                with postgres.sampling() if postgres else contextlib.nullcontext():
                    done = run_processes(command, args.processes, once=True)
                sent_reported = done.dispatch.sent
            else:
                sent_reported = service.dispatch().sent
        elapsed = time.perf_counter() - start
        # The sampling thread's CPU is the bench's, not ours.
        cpu = _process_cpu() - cpu - (postgres.overhead if postgres else 0.0)
        pg_cpu = postgres.used() if postgres else None
        with service.sessions() as session:
            sent = session.scalar(select(func.count()).where(Delivery.status == SendStatus.sent))
        service.close()
        if postgres:
            postgres.engine.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "editions": len(planned),
                "sent": sent,
                "reported": sent_reported,
                "fanout_s": fanned - start,
                "fanout_cpu_s": fanout_cpu,
                "fanout_pg_cpu_s": fanout_pg,
                "elapsed_s": elapsed,
                "cpu_s": cpu,
                "pg_cpu_s": pg_cpu,
                "pg_backends": len(postgres.last) if postgres else 0,
                "rss_mb": rss_mb,
            }
        )
    )


def prebuilt_message(port: int) -> bytes:
    """One message of the very edition the measured runs send (same feed, same templates)."""
    from newsbroadcast.db.models import Article
    from newsbroadcast.render.email import prepare_edition
    from newsbroadcast.render.mime import make_message_id
    from newsbroadcast.render.views import EditionView, Recipient, story_view
    from newsbroadcast.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        config = site(Path(tmp), f"sqlite:///{tmp}/message.db", port, 1)
        service = Service(config)
        service.poll()
        with service.sessions() as session:
            articles = session.scalars(select(Article).order_by(Article.id)).all()
            now = datetime.now(UTC)
            view = EditionView(1, "daily", "bench", now, [story_view(a) for a in articles])
        ready = prepare_edition(service.templates, config, config.digests[0], view)
        service.close()
    who = Recipient(1, "r1@example.org", None)
    return ready.message(who, make_message_id(config, "daily", "bench", who.email), now)


@dataclass
class Baseline:
    """One baseline measurement: ``messages`` in ``elapsed`` seconds, and the CPU seconds
    it took: the smtplib threads' own (``cpu``) and the sink's."""

    messages: int
    elapsed: float
    cpu: float
    sink_cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed


def baseline(sink: Sink, connections: int, count: int, data: bytes) -> Baseline:
    """Bare smtplib loops, one thread per connection."""
    per = [count // connections + (i < count % connections) for i in range(connections)]
    spent = [0.0] * connections  # each loop thread's CPU: not the sink's reader thread's

    def loop(number: int, n: int) -> None:
        began = time.thread_time()
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            for i in range(n):
                smtp.sendmail("digest@newsroom.example.org", [f"r{i}@example.org"], data)
        spent[number] = time.thread_time() - began

    threads = [threading.Thread(target=loop, args=(i, n)) for i, n in enumerate(per)]
    sink_cpu = sink.cpu_seconds()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return Baseline(count, elapsed, sum(spent), sink.cpu_seconds() - sink_cpu)


def postgres_schema(base: str) -> tuple[str, Callable[[], None]]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure(
    args: argparse.Namespace, sink: Sink, database: str, pg_base: str | None, n: int, processes: int
) -> dict[str, Any]:
    """One run in a fresh process (and a fresh database); its JSON result, plus what the
    sink counted."""
    with tempfile.TemporaryDirectory() as tmp:
        drop = None
        if database == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            url, drop = postgres_schema(pg_base)  # type: ignore[arg-type]
        try:
            before, sink_cpu = sink.received(), sink.cpu_seconds()
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--url", url,
                 "--port", str(sink.port), "--n", str(n),
                 "--connections", str(args.connections), "--processes", str(processes)]
                + (["--fanout-only"] if args.fanout_only else [])
                + (["--worker-processes"] if len(args.processes) > 1 else []),
                capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(f"the measured run failed:\n{out.stderr}")
        finally:
            if drop:
                drop()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["received"] = sink.received() - before
    # The whole child's life, but the sink only works while the run sends.
    result["sink_cpu_s"] = sink.cpu_seconds() - sink_cpu
    return result


def _cpu_line(parts: dict[str, float], messages: int, elapsed: float) -> tuple[str, float]:
    """ "a 0.100 + b 0.020 = 0.120 ms; 1.20 cores busy of 2" for CPU seconds by party, and
    the total CPU seconds per message."""
    total = sum(parts.values())
    terms = " + ".join(f"{who} {cpu * 1000 / messages:.3f}" for who, cpu in parts.items())
    busy = f"{total / elapsed:.2f} cores busy of {os.cpu_count()}"
    return f"{terms} = {total * 1000 / messages:.3f} ms; {busy}", total / messages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subscribers", type=int, nargs="+", default=[10_000])
    p.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--connections", type=int, default=4, help="SMTP connections per process")
    p.add_argument("--sink", choices=SINKS, default="aiosmtpd")
    p.add_argument(
        "--processes", type=int, nargs="+", default=[1],
        help="sending processes (`worker --processes N`); several: the speed-up to the first",
    )  # fmt: skip
    p.add_argument("--runs", type=int, default=1, help="runs per case; the median is printed")
    p.add_argument(
        "--fanout-only", action="store_true",
        help="only plan the edition (fan-out) and report its time and peak memory",
    )  # fmt: skip
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-processes", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.processes = args.processes[0]
        child(args)
        return

    pg_base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    try:
        sink = start_sink(args.sink, backlog=max(64, args.connections * max(args.processes)))
    except SinkUnavailable as e:
        print(f"skipped: {e}")
        return
    data = prebuilt_message(sink.port)
    try:
        print(
            f"sink: {sink.how}; {args.connections} connection(s) per process; message "
            f"{len(data):,} bytes; {args.runs} run(s) per case, medians shown; the baseline "
            "(bare smtplib, same sink, same number of connections) is measured right before "
            f"and right after each run; load average {os.getloadavg()[0]:.2f} at start"
        )
        for database in args.databases:
            if database == "postgresql" and not pg_base:
                print("postgresql: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL)")
                continue
            for n in args.subscribers:
                first_rate = None
                for processes in args.processes:
                    case = report(args, sink, data, database, pg_base, n, processes)
                    if len(args.processes) > 1 and case:
                        rate, per_message = case
                        first_rate = first_rate or rate
                        print(
                            f"  {processes} process(es): {rate / first_rate:.2f}x the rate of "
                            f"{args.processes[0]}; "
                            + ceiling(per_message, first_rate, f"the rate of {args.processes[0]}")
                        )
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        sink.stop()


def report(
    args: argparse.Namespace,
    sink: Sink,
    data: bytes,
    database: str,
    pg_base: str | None,
    n: int,
    processes: int,
) -> tuple[float, float] | None:
    """Run one case ``args.runs`` times and print it; its median rate (msg/s) and that
    run's CPU seconds per message (all parties)."""
    results, baselines, loads = [], [], []
    connections = args.connections * processes
    base_count = min(n, 10_000)
    for _ in range(args.runs):
        if not args.fanout_only:
            before = baseline(sink, connections, base_count, data)
        results.append(measure(args, sink, database, pg_base, n, processes))
        if not args.fanout_only:
            # Measured again after the run, and the two averaged: load from elsewhere on
            # the machine drifts over a run's minutes, and moves the baseline as much.
            after = baseline(sink, connections, base_count, data)
            baselines.append((before.rate + after.rate) / 2)
            loads += [before, after]
    pick = sorted(results, key=lambda r: r["elapsed_s"])[len(results) // 2]  # the median run
    rss = pick["rss_mb"]
    rss_note = f" (goal < {GOAL_RSS_MB}: {'met' if rss < GOAL_RSS_MB else 'NOT met'})"
    if args.fanout_only:
        print(
            f"{database:10} {n:>9,} subscribers: fan-out {pick['fanout_s']:.2f} s, "
            f"our CPU {pick['fanout_cpu_s']:.2f} s, PostgreSQL CPU "
            + ("n/a" if pick["fanout_pg_cpu_s"] is None else f"{pick['fanout_pg_cpu_s']:.2f} s")
            + f", peak RSS {rss:.0f} MB; {pick['sent']} sent (none expected)"
        )
        return None
    rate = n / pick["elapsed_s"]
    base_rate = median(baselines)
    each = [n / r["elapsed_s"] / b for r, b in zip(results, baselines, strict=True)]
    ratio = median(each)
    ratios = [f"{r:.2f}" for r in each]
    print(
        f"{database:10} {n:>7,} subscribers, {processes} process(es): baseline "
        f"{base_rate:,.0f} msg/s; newsbroadcast {rate:7,.0f} msg/s end to end "
        f"(fan-out {pick['fanout_s']:.2f} s, total {pick['elapsed_s']:.1f} s), "
        f"ratio {ratio:.2f} (goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'NOT met'}); "
        f"peak RSS {rss:.0f} MB"
        + (rss_note if n >= 100_000 else "")
        + f"; sink got {pick['received']:,}, recorded sent {pick['sent']:,}"
        + (f"; ratios {', '.join(ratios)}" if args.runs > 1 else "")
    )
    parts = {"ours": pick["cpu_s"]}
    if pick["pg_cpu_s"] is not None:
        parts[f"PostgreSQL's ({pick['pg_backends']} backends)"] = pick["pg_cpu_s"]
    parts["sink's"] = pick["sink_cpu_s"]
    line, per_message = _cpu_line(parts, n, pick["elapsed_s"])
    print(f"  CPU per message: {line}")
    sent = sum(b.messages for b in loads)
    elapsed = sum(b.elapsed for b in loads)
    smtplib_cpu = {"smtplib": sum(b.cpu for b in loads), "sink's": sum(b.sink_cpu for b in loads)}
    line, base_per_message = _cpu_line(smtplib_cpu, sent, elapsed)
    print(f"  baseline CPU per message: {line}; {ceiling(base_per_message, base_rate, 'its rate')}")
    return rate, per_message


def ceiling(per_message: float, rate: float, of: str) -> str:
    """The rate ``per_message`` CPU seconds allow with every core of this machine busy (and
    only with this), and that over ``rate`` (the rate ``of`` whom)."""
    cores = os.cpu_count() or 1
    most = cores / per_message
    return (
        f"ceiling {cores} cores / {per_message * 1000:.3f} ms = {most:,.0f} msg/s: "
        f"at most {most / rate:.2f}x {of} on this machine"
    )


if __name__ == "__main__":
    main()
