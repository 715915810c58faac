"""The `newsbroadcast` command: parses arguments, calls the service, prints. Nothing more."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, func, select

from newsbroadcast import __version__, db
from newsbroadcast.config import Config, config_path, load_config
from newsbroadcast.errors import ConfigError, InputError, NewsBroadcastError
from newsbroadcast.models import (
    Delivery,
    Edition,
    Post,
    SourceState,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Migrations and the scheduler narrate every step at INFO; keep their warnings only.
    for noisy in ("alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.command is None:
        _parser().print_help()
        return EXIT_CONFIG
    try:
        return int(args.handler(args))
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except NewsBroadcastError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="newsbroadcast", description=__doc__)
    p.add_argument(
        "--config",
        help="config file (default: $NEWSBROADCAST_CONFIG, else config/newsbroadcast.yaml)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"newsbroadcast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the service on its schedule (Ctrl-C stops)")
    run.add_argument(
        "--once", action="store_true", help="one pass: poll, plan what is due, send, exit"
    )
    run.add_argument("--force", action="store_true", help="treat every digest as due")
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", help="validate the config and templates")
    check.set_defaults(handler=cmd_check)

    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", help="apply schema migrations").set_defaults(handler=cmd_db_upgrade)

    subs = sub.add_parser("subscribers", help="manage subscribers")
    ssub = subs.add_subparsers(dest="subscribers_command", required=True, metavar="ACTION")
    add = ssub.add_parser("add", help="add one active subscriber")
    add.add_argument("email")
    add.add_argument("--name")
    add.add_argument("--language", default="en")
    add.set_defaults(handler=cmd_subscribers_add)
    imp = ssub.add_parser("import", help="import a CSV file (email[,name[,language]])")
    imp.add_argument("file", type=Path)
    imp.add_argument("--quiet", action="store_true", help="print only problems")
    imp.set_defaults(handler=cmd_subscribers_import)
    lst = ssub.add_parser("list", help="list subscribers")
    lst.add_argument("--status", choices=[s.value for s in SubscriberStatus])
    lst.set_defaults(handler=cmd_subscribers_list)

    sub.add_parser("status", help="what was sent, what waits, how sources fare").set_defaults(
        handler=cmd_status
    )
    return p


def _config(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


def _engine(config: Config) -> Engine:
    """An engine on the configured database, migrated to the newest schema."""
    engine = db.make_engine(config.database_url)
    db.upgrade(engine)
    return engine


# --- commands -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from newsbroadcast.app import Service
    from newsbroadcast.scheduler import run_forever

    config = _config(args)
    service = Service(config)
    try:
        if args.once:
            report = service.run_once(force=args.force)
            polls_failed = [p for p in report.polls if p.error]
            print(
                f"polled {len(report.polls)} source(s) ({len(polls_failed)} failed), "
                f"{sum(p.new for p in report.polls)} new article(s); "
                f"{len(report.editions)} edition(s); sent {report.dispatch.sent}, "
                f"retry later {report.dispatch.retried}, failed {report.dispatch.failed}, "
                f"skipped {report.dispatch.skipped}"
            )
            for p in polls_failed:
                print(f"source {p.source}: {p.error}", file=sys.stderr)
            return EXIT_OK
        if args.force:
            service.plan_digests(force=True)
        run_forever(service)
        return EXIT_OK
    finally:
        service.close()


def cmd_check(args: argparse.Namespace) -> int:
    from newsbroadcast.checks import template_problems

    path = config_path(args.config)
    config = load_config(path)
    problems = template_problems(config)
    if problems:
        raise ConfigError(problems)
    backend = config.database_url.split(":", 1)[0].split("+", 1)[0]
    print(
        f"{path}: OK: {len(config.sources)} source(s), {len(config.digests)} digest(s), "
        f"{len(config.social)} channel(s), {config.email.transport} transport, {backend} database"
    )
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _config(args)
    _engine(config).dispose()
    print("database is up to date")
    return EXIT_OK


def cmd_subscribers_add(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers import add_subscriber

    config = _config(args)
    engine = _engine(config)
    with db.sessions(engine)() as session:
        sub, created = add_subscriber(
            session, args.email, utcnow(), name=args.name, language=args.language
        )
        session.commit()
        print(f"added {sub.email}" if created else f"{sub.email} is already there ({sub.status})")
    engine.dispose()
    return EXIT_OK


def cmd_subscribers_import(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers import import_csv

    config = _config(args)
    engine = _engine(config)
    with db.sessions(engine)() as session:
        report = import_csv(session, args.file, utcnow())
        session.commit()
    engine.dispose()
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if not args.quiet or report.problems:
        print(
            f"imported {report.added}, already there {report.existing}, "
            f"bad rows {len(report.problems)}"
        )
    return EXIT_FAILED if report.problems else EXIT_OK


def cmd_subscribers_list(args: argparse.Namespace) -> int:
    config = _config(args)
    engine = _engine(config)
    with db.sessions(engine)() as session:
        q = select(Subscriber).order_by(Subscriber.id)
        if args.status:
            q = q.where(Subscriber.status == args.status)
        for s in session.scalars(q):
            print(f"{s.id}\t{s.email}\t{s.status}\t{s.name or ''}\t{s.language}")
    engine.dispose()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    engine = _engine(config)
    with db.sessions(engine)() as session:
        for label, model in (("deliveries", Delivery), ("posts", Post)):
            counts = dict(
                session.execute(select(model.status, func.count()).group_by(model.status)).all()
            )
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            print(f"{label}: {shown}")
        subs = dict(
            session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            ).all()
        )
        print("subscribers: " + (", ".join(f"{k} {v}" for k, v in sorted(subs.items())) or "none"))
        print("last editions:")
        editions = session.scalars(select(Edition).order_by(Edition.id.desc()).limit(10)).all()
        for e in editions:
            sent = session.scalar(
                select(func.count()).where(Delivery.edition_id == e.id, Delivery.status == "sent")
            )
            total = session.scalar(select(func.count()).where(Delivery.edition_id == e.id))
            print(f"  #{e.id} {e.digest} {e.period} {e.status}: {sent}/{total} sent ({e.subject})")
        if not editions:
            print("  none yet")
        print("sources:")
        states = {s.name: s for s in session.scalars(select(SourceState))}
        for source in config.sources:
            s = states.get(source.name)
            if s is None:
                print(f"  {source.name}: never polled")
                continue
            health = "ok" if not s.last_error else f"ERROR {s.last_error}"
            print(
                f"  {source.name}: last poll {_when(s.last_polled_at)}, last success "
                f"{_when(s.last_success_at)}, {s.items_seen} items seen, {health}"
            )
    engine.dispose()
    return EXIT_OK


def _when(t: object) -> str:
    return "never" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"
