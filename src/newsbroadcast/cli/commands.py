"""The `newsbroadcast` command: parses arguments, calls the service, prints. Nothing more."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from newsbroadcast import __version__, db
from newsbroadcast.cli import admin as cli_admin
from newsbroadcast.cli import lifecycle as lifecycle_cli
from newsbroadcast.config.model import Config, config_path, load_config
from newsbroadcast.db.models import (
    Article,
    Delivery,
    Edition,
    Post,
    SendStatus,
    SourceState,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsbroadcast.errors import ConfigError, InputError, NewsBroadcastError
from newsbroadcast.runtime import logs

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # JSON lines when stderr is not a terminal, readable lines when it is; no secrets.
    logs.setup(verbose=args.verbose)
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
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="plan and render everything, send nothing, change nothing in the database",
    )
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", help="validate the config and templates")
    check.add_argument(
        "--connect",
        action="store_true",
        help="also log in to the SMTP server and check each social channel's credentials",
    )
    check.set_defaults(handler=cmd_check)
    cli_admin.add_parsers(sub)

    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", help="apply schema migrations").set_defaults(handler=cmd_db_upgrade)
    dbcopy = dbsub.add_parser("copy", help="copy the whole site into another database")
    dbcopy.add_argument("--to", required=True, metavar="URL", help="the target database's URL")
    dbcopy.add_argument("--batch", type=int, default=1000, help="rows per commit (1000)")
    dbcopy.set_defaults(handler=cmd_db_copy)

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
    imp.add_argument("--delimiter", help="between fields: , ; \\t | (default: found from the file)")
    imp.add_argument("--encoding", default="utf-8", help="the file's encoding (default: utf-8)")
    imp.set_defaults(handler=cmd_subscribers_import)
    lst = ssub.add_parser("list", help="list subscribers")
    lst.add_argument("--status", choices=[s.value for s in SubscriberStatus])
    lst.set_defaults(handler=cmd_subscribers_list)
    # serve, mailbox, subscribers export|data|remove|suppress|erase
    lifecycle_cli.register(sub, ssub)

    arts = sub.add_parser("articles", help="add articles by hand")
    asub = arts.add_subparsers(dest="articles_command", required=True, metavar="ACTION")
    aadd = asub.add_parser("add", help="store the article at URL, from its page's metadata")
    aadd.add_argument("--url", required=True)
    aadd.add_argument("--source", default="manual", help="source name to store it under")
    aadd.set_defaults(handler=cmd_articles_add)
    api = sub.add_parser("api", help="push API helpers")
    apisub = api.add_subparsers(dest="api_command", required=True, metavar="ACTION")
    hasher = apisub.add_parser(
        "hash-token", help="make a token (or hash one read from stdin) for api.tokens"
    )
    hasher.add_argument("--stdin", action="store_true", help="hash the token given on stdin")
    hasher.set_defaults(handler=cmd_api_hash_token)

    wrk = sub.add_parser("worker", help="run only the dispatcher (many may share PostgreSQL)")
    wrk.add_argument("--once", action="store_true", help="send everything due now, then exit")
    wrk.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    wrk.add_argument("--metrics-addr", default="127.0.0.1", help="address for --metrics-port")
    wrk.set_defaults(handler=cmd_worker)
    edp = sub.add_parser("edition", help="pause, resume or cancel an edition being sent")
    esub = edp.add_subparsers(dest="edition_command", required=True, metavar="ACTION")
    for action, text in (
        ("pause", "stop sending; queued deliveries wait"),
        ("resume", "send a paused edition again, from where it stopped"),
        ("cancel", "stop for good; queued deliveries are skipped"),
    ):
        act = esub.add_parser(action, help=text)
        act.add_argument("edition_id", type=int, metavar="ID")
        act.set_defaults(handler=cmd_edition)

    sub.add_parser("status", help="what was sent, what waits, how sources fare").set_defaults(
        handler=cmd_status
    )

    post = sub.add_parser("post", help="social posts")
    postsub = post.add_subparsers(dest="post_command", required=True, metavar="ACTION")
    preview = postsub.add_parser("preview", help="what each channel would post (posts nothing)")
    preview.add_argument("article_id", type=int, nargs="?", metavar="ARTICLE_ID")
    preview.set_defaults(handler=cmd_post_preview)
    return p


def _config(args: argparse.Namespace) -> Config:
    config = load_config(config_path(args.config))
    logs.protect(config)  # from here on, no configured secret appears in a log line
    return config


def _engine(config: Config) -> Engine:
    """An engine on the configured database, migrated to the newest schema."""
    engine = db.make_engine(config.database_url)
    db.upgrade(engine)
    return engine


# --- commands -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from newsbroadcast.runtime.scheduler import run_forever
    from newsbroadcast.service import Service

    config = _config(args)
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

    service = Service(_config(args))
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


def cmd_edition(args: argparse.Namespace) -> int:
    from newsbroadcast.outbox.steering import cancel_edition, pause_edition, resume_edition

    config = _config(args)
    engine = _engine(config)
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


def cmd_check(args: argparse.Namespace) -> int:
    from newsbroadcast.config.checks import source_problems, template_problems, trial_problems

    path = config_path(args.config)
    config = load_config(path)
    problems = source_problems(config) + (template_problems(config) or trial_problems(config))
    if problems:
        raise ConfigError(problems)
    logs.protect(config)
    backend = config.database_url.split(":", 1)[0].split("+", 1)[0]
    print(
        f"{path}: OK: {len(config.sources)} source(s), {len(config.digests)} digest(s), "
        f"{len(config.social)} channel(s), {config.email.transport} transport, {backend} database"
    )
    return cli_admin.print_check_extras(config, args.connect)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _config(args)
    _engine(config).dispose()
    print("database is up to date")
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    from newsbroadcast.db.copy import copy_database, open_target

    config = _config(args)
    source, target = _engine(config), open_target(args.to)
    try:
        tables = copy_database(source, target, args.batch)
    finally:
        source.dispose()
        target.dispose()
    for t in tables:
        print(f"{t.table}: {t.rows} row(s), {t.copied} copied now")
    print("copy complete: every table holds as many rows as the source")
    return EXIT_OK


def cmd_subscribers_add(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.registry import add_subscriber

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
    from newsbroadcast.subscribers.lifecycle import languages
    from newsbroadcast.subscribers.registry import import_csv

    delimiter = {"\\t": "\t", "tab": "\t"}.get(args.delimiter or "", args.delimiter)
    if delimiter is not None and len(delimiter) != 1:
        raise InputError(f"--delimiter takes one character, not {args.delimiter!r}")
    config = _config(args)
    engine = _engine(config)
    with db.sessions(engine)() as session:
        report = import_csv(
            session,
            args.file,
            utcnow(),
            languages=languages(config),
            delimiter=delimiter,
            encoding=args.encoding,
        )
        session.commit()
    engine.dispose()
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if not args.quiet or report.problems:
        print(
            f"imported {report.added}, already there {report.existing}, "
            f"bad rows {len(report.problems)}, suppressed {report.suppressed}"
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


def cmd_articles_add(args: argparse.Namespace) -> int:
    from newsbroadcast.articles.ingest import user_agent
    from newsbroadcast.articles.push import draft_from_page, record_failure, store_pushed

    config = _config(args)
    engine = _engine(config)
    sessions = db.sessions(engine)
    try:
        try:
            draft = draft_from_page(args.url, None, user_agent(config))
        except NewsBroadcastError as e:
            record_failure(sessions, args.source, utcnow(), str(e))
            raise
        stored = store_pushed(sessions, args.source, [draft], utcnow())
    finally:
        engine.dispose()
    verb = "added" if stored.created else "updated" if stored.updated else "already there"
    print(f"{verb}: {draft.title} <{draft.url}>")
    return EXIT_OK


def cmd_api_hash_token(args: argparse.Namespace) -> int:
    import secrets

    from newsbroadcast.articles.push import hash_token

    if args.stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise InputError("no token on stdin")
    else:
        token = secrets.token_urlsafe(32)
        print(f"token (give it to the client; it is not stored): {token}")
    print(f"for api.tokens in the config: {hash_token(token)}")
    return EXIT_OK


def cmd_post_preview(args: argparse.Namespace) -> int:
    from newsbroadcast.dispatch.post_preview import preview_posts
    from newsbroadcast.service import Service

    service = Service(_config(args))
    try:
        article, previews = preview_posts(service, args.article_id)
    finally:
        service.close()
    print(f"article {article.id}: {article.title}")
    for p in previews:
        verdict = "fits" if not p.problem and p.length <= p.limit else "TOO LONG"
        print(f"\n== {p.channel} ({p.kind}): {p.length}/{p.limit} {verdict} ==")
        print(p.problem or p.text)
    return EXIT_OK if all(not p.problem for p in previews) else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    engine = _engine(config)
    with db.sessions(engine)() as session:
        for label, model in (("deliveries", Delivery), ("posts", Post)):
            counts = dict(
                session.execute(select(model.status, func.count()).group_by(model.status))
                .tuples()
                .all()
            )
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            print(f"{label}: {shown}")
        subs = dict(
            session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
            .tuples()
            .all()
        )
        print("subscribers: " + (", ".join(f"{k} {v}" for k, v in sorted(subs.items())) or "none"))
        from newsbroadcast.outbox.steering import progress

        running = progress(session, utcnow())
        print("editions in progress:" if running else "editions in progress: none")
        for p in running:
            print(f"  {p.line()}")
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
        # Pushed articles (the API, `articles add`) have a state but no configured source.
        names = [src.name for src in config.sources] + sorted(
            set(states) - {src.name for src in config.sources}
        )
        for name in names:
            s = states.get(name)
            if s is None:
                print(f"  {name}: never polled")
                continue
            health = "ok" if not s.last_error else f"ERROR {s.last_error}"
            print(
                f"  {name}: last poll {_when(s.last_polled_at)}, last success "
                f"{_when(s.last_success_at)}, {s.items_seen} items seen, {health}"
            )
            problems = (s.last_problems or "").splitlines()
            for problem in problems[:5]:
                print(f"    left out: {problem}")
            if len(problems) > 5:
                print(f"    … and {len(problems) - 5} more (see the log)")
            for note in (s.notes or "").splitlines()[:5]:
                print(f"    note: {note}")
        _print_failures(session, config)
    engine.dispose()
    return EXIT_OK


def _print_failures(session: Session, config: Config) -> None:
    """Channels and digests that cannot be planned, and the newest posts that failed."""
    from newsbroadcast.runtime.failures import current_failures

    # A channel or digest taken out of the configuration has no failure any more.
    configured = {("channel", c.name) for c in config.social} | {
        ("digest", d.name) for d in config.digests
    }
    steps = [f for f in current_failures(session) if (f.kind, f.name) in configured]
    failed_posts = select(Post, Article.title).join(Article, Article.id == Post.article_id)
    failed_posts = failed_posts.where(Post.status == SendStatus.failed)
    posts = session.execute(failed_posts.order_by(Post.id.desc()).limit(11)).all()
    print("failures:" if steps or posts else "failures: none")
    for f in steps:
        print(
            f"  {f.kind} {f.name}: failing since {_when(f.since)}, last {_when(f.last_at)}: "
            f"{f.error}"
        )
    for post, title in posts[:10]:
        print(
            f"  post of article {post.article_id} on {post.channel} ({title}), "
            f"planned {_when(post.created_at)}: {post.last_error}"
        )
    if len(posts) > 10:
        print("  … and more failed posts (newest shown)")


def _when(t: object) -> str:
    return "never" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"
