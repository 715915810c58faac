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
process's peak RSS (goal < 300 MB at 100,000).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, literal, select, text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from sink import start_sink  # noqa: E402

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


def child(args: argparse.Namespace) -> None:
    """One measured run, in a process of its own so its peak RSS is its own."""
    from newsbroadcast.db.engine import make_engine
    from newsbroadcast.db.models import Delivery, SendStatus
    from newsbroadcast.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        config = site(Path(tmp), args.url, args.port, args.connections)
        engine = make_engine(config.database_url)
        service = Service(config, engine=engine)
        insert_subscribers(engine, args.n)
        service.poll()
        start = time.perf_counter()
        planned = service.plan_digests(force=True)
        fanned = time.perf_counter()
        report = service.dispatch()
        elapsed = time.perf_counter() - start
        with service.sessions() as session:
            sent = session.scalar(select(func.count()).where(Delivery.status == SendStatus.sent))
        service.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "editions": len(planned),
                "sent": sent,
                "reported": report.sent,
                "fanout_s": fanned - start,
                "elapsed_s": elapsed,
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


def baseline(port: int, connections: int, count: int, data: bytes) -> float:
    """Messages per second of bare smtplib loops, one thread per connection."""
    per = [count // connections + (i < count % connections) for i in range(connections)]

    def loop(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for i in range(n):
                smtp.sendmail("digest@newsroom.example.org", [f"r{i}@example.org"], data)

    threads = [threading.Thread(target=loop, args=(n,)) for n in per]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / (time.perf_counter() - start)


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subscribers", type=int, nargs="+", default=[10_000])
    p.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    pg_base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    port, counter, stop_sink = start_sink()
    data = prebuilt_message(port)
    try:
        print(
            f"{args.connections} connections; message {len(data):,} bytes; the baseline is "
            "measured right before and right after each run (other load on the machine moves "
            "both)"
        )
        for database in args.databases:
            if database == "postgresql" and not pg_base:
                print("postgresql: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL)")
                continue
            for n in args.subscribers:
                base_count = min(n, 10_000)
                base_rate = baseline(port, args.connections, base_count, data)
                with tempfile.TemporaryDirectory() as tmp:
                    drop = None
                    if database == "sqlite":
                        url = f"sqlite:///{tmp}/bench.db"
                    else:
                        url, drop = postgres_schema(pg_base)  # type: ignore[arg-type]
                    try:
                        before = counter.value
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", "--url", url,
                             "--port", str(port), "--n", str(n),
                             "--connections", str(args.connections)],
                            capture_output=True, text=True, check=True,
                        ).stdout  # fmt: skip
                    finally:
                        if drop:
                            drop()
                result = json.loads(out.strip().splitlines()[-1])
                received = counter.value - before
                # Measured again after the run, and the two averaged: load from elsewhere on
                # the machine drifts over a run's minutes, and moves the baseline as much.
                base_after = baseline(port, args.connections, base_count, data)
                base_rate = (base_rate + base_after) / 2
                rate = n / result["elapsed_s"]
                ratio = rate / base_rate
                print(
                    f"{database:10} {n:>7,} subscribers: baseline {base_rate:,.0f} msg/s "
                    f"(mean of before and after); "
                    f"newsbroadcast {rate:7,.0f} msg/s end to end "
                    f"(fan-out {result['fanout_s']:.2f} s, total {result['elapsed_s']:.1f} s), "
                    f"ratio {ratio:.2f} (goal >= {GOAL_RATIO}: "
                    f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}), "
                    f"peak RSS {result['rss_mb']:.0f} MB"
                    + (
                        f" (goal < {GOAL_RSS_MB}: "
                        f"{'met' if result['rss_mb'] < GOAL_RSS_MB else 'NOT met'})"
                        if n >= 100_000
                        else ""
                    )
                    + f"; sink got {received:,}, recorded sent {result['sent']:,}"
                )
    finally:
        stop_sink()


if __name__ == "__main__":
    main()
