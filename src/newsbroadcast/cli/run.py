"""`run`, `worker`, `serve` and `edition pause|resume|cancel`: running the sends, the web
app, and steering them. Thin: parse, call, print.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from newsbroadcast import db
from newsbroadcast.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, open_engine, site_config
from newsbroadcast.config.model import CONFIG_ENV, config_path
from newsbroadcast.db.models import utcnow


def cmd_run(args: argparse.Namespace) -> int:
    from newsbroadcast.runtime.scheduler import run_forever
    from newsbroadcast.service import Service

    config = site_config(args)
    service = Service(config, dry_run=args.dry_run)
    try:
        if args.once:
            from contextlib import nullcontext

            from newsbroadcast.runtime.progress import ProgressBar

            # The progress bar reads from its own thread; a dry run has one connection.
            with nullcontext() if args.dry_run else ProgressBar(service.sessions):
                report = service.run_once(force=args.force)
            polls_failed = [p for p in report.polls if p.error]
            # Which ones failed, on the summary line itself: a cron mail shows just that.
            failed = "; failed: " + ", ".join(f"{f.kind} {f.name}" for f in report.failures)
            print(
                f"polled {len(report.polls)} source(s) ({len(polls_failed)} failed), "
                f"{sum(p.new for p in report.polls)} new article(s); "
                f"{len(report.editions)} edition(s); sent {report.dispatch.sent}, "
                f"retry later {report.dispatch.retried}, failed {report.dispatch.failed}, "
                f"skipped {report.dispatch.skipped}" + (failed if report.failures else "")
            )
            for failure in report.failures:
                print(failure, file=sys.stderr)
            if args.dry_run:
                print(
                    f"dry run: {service.tally.messages} message(s) rendered and "
                    f"{service.tally.posts} post(s) made, none sent; database unchanged"
                )
            return EXIT_OK if report.ok else EXIT_FAILED
        if args.force:
            service.plan_digests(force=True)
        run_forever(service, watch=config_path(args.config))
        return EXIT_OK
    finally:
        service.close()


def cmd_worker(args: argparse.Namespace) -> int:
    from newsbroadcast.dispatch.worker import run_worker
    from newsbroadcast.runtime import metrics
    from newsbroadcast.runtime.progress import ProgressBar
    from newsbroadcast.service import Service

    if args.processes < 1:
        print("error: --processes must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if args.processes > 1:
        return _worker_processes(args)
    service = Service(site_config(args))
    stop_metrics = None
    try:
        if args.metrics_port is not None:
            metrics.watch_queue(service.sessions)
            stop_metrics = metrics.serve(args.metrics_port, args.metrics_addr).stop
        if args.once:
            with ProgressBar(service.sessions):
                report = run_worker(service, once=True)
            print(
                f"sent {report.sent}, retry later {report.retried}, failed {report.failed}, "
                f"skipped {report.skipped}"
            )
        else:
            run_worker(service)
        return EXIT_OK
    finally:
        if stop_metrics is not None:
            stop_metrics()
        service.close()


def _worker_processes(args: argparse.Namespace) -> int:
    """`worker --processes N`: this process supervises N `worker` processes."""
    import signal
    import threading

    from newsbroadcast.dispatch.processes import run_processes
    from newsbroadcast.runtime import metrics
    from newsbroadcast.service import Service

    config = site_config(args)  # a config that does not load fails here, not N times
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()  # run_processes passes SIGTERM on to each child

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    where = str(config_path(args.config).resolve())
    command = [sys.executable, "-m", "newsbroadcast", "--config", where, "worker"]
    if args.once:
        command.append("--once")
    if args.verbose:
        command.append("--verbose")
    service = None
    stop_metrics = None
    try:
        if args.metrics_port is not None:
            # The queue's gauges, read from the database, are the same from any process;
            # the children's own counters are not gathered here.
            service = Service(config)
            metrics.watch_queue(service.sessions)
            stop_metrics = metrics.serve(args.metrics_port, args.metrics_addr).stop
        report = run_processes(command, args.processes, once=args.once, stopping=stopping)
    finally:
        if stop_metrics is not None:
            stop_metrics()
        if service is not None:
            service.close()
    if args.once:
        d = report.dispatch
        print(f"sent {d.sent}, retry later {d.retried}, failed {d.failed}, skipped {d.skipped}")
    for death in report.deaths:
        print(death, file=sys.stderr)
    return EXIT_FAILED if args.once and report.deaths else EXIT_OK


def cmd_edition(args: argparse.Namespace) -> int:
    from newsbroadcast.outbox.steering import cancel_edition, pause_edition, resume_edition

    config = site_config(args)
    engine = open_engine(config)
    try:
        with db.sessions(engine)() as session:
            eid = args.edition_id
            if args.edition_command == "pause":
                done = pause_edition(session, eid, "by hand")
                print(f"edition {eid} paused" if done else f"edition {eid} was not sending")
            elif args.edition_command == "resume":
                done = resume_edition(session, eid)
                print(f"edition {eid} resumed" if done else f"edition {eid} was not paused")
            else:
                skipped = cancel_edition(session, eid, utcnow())
                print(f"edition {eid} cancelled; {skipped} waiting deliveries skipped")
    finally:
        engine.dispose()
    return EXIT_OK


def register_serve(commands: Any) -> None:
    """Add `serve` to the `newsbroadcast` parser; flags left out take the web: section's."""
    serve = commands.add_parser("serve", help="the subscriber web app (sign-up, preferences, …)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, help="processes (default: web.workers)")
    serve.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help="close a connection whose request headers are not in by then (web.header_timeout)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=float,
        metavar="SECONDS",
        help="close a connection idle this long between requests (web.keepalive_timeout)",
    )
    serve.add_argument(
        "--max-connections", type=int, help="open connections per worker (web.max_connections)"
    )
    serve.add_argument(
        "--metrics-port", type=int, help="serve /metrics on this port (web.metrics_port)"
    )
    serve.add_argument("--metrics-addr", help="address for the metrics port (web.metrics_addr)")
    serve.set_defaults(handler=cmd_serve)


# Each worker process of `serve --workers N` builds its app from the config file.
APP_FACTORY = "newsbroadcast.web.server:app_from_environment"


def cmd_serve(args: argparse.Namespace) -> int:
    from newsbroadcast.runtime import metrics
    from newsbroadcast.web import create_app
    from newsbroadcast.web.server import ServeOptions, serve

    config = site_config(args)
    options = ServeOptions.from_web(
        config.web,
        host=args.host,
        port=args.port,
        workers=args.workers,
        header_timeout=args.header_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
    )
    engine = open_engine(config)  # migrated here once, before any worker starts
    metrics_port = args.metrics_port if args.metrics_port is not None else config.web.metrics_port
    stop_metrics = None
    try:
        if metrics_port is not None:
            # The queue depth comes from the database, so one metrics server for all the
            # workers tells the same as each would.
            metrics.watch_queue(db.sessions(engine))
            addr = args.metrics_addr or config.web.metrics_addr
            stop_metrics = metrics.serve(metrics_port, addr).stop
        if options.workers > 1:
            os.environ[CONFIG_ENV] = str(config_path(args.config).resolve())
            serve(APP_FACTORY, options)
        else:
            serve(create_app(config, engine=engine), options)
        return EXIT_OK
    finally:
        if stop_metrics is not None:
            stop_metrics()
        engine.dispose()
