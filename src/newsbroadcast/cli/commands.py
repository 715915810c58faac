"""The `newsbroadcast` command: parses arguments, calls the service, prints. Nothing more."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from newsbroadcast import __version__
from newsbroadcast.cli import admin, subscribers
from newsbroadcast.cli.admin import cmd_check
from newsbroadcast.cli.articles import cmd_api_hash_token, cmd_articles_add, cmd_post_preview
from newsbroadcast.cli.common import EXIT_CONFIG, EXIT_FAILED
from newsbroadcast.cli.db import cmd_db_copy, cmd_db_upgrade
from newsbroadcast.cli.run import cmd_edition, cmd_run, cmd_worker
from newsbroadcast.cli.status import cmd_status
from newsbroadcast.cli.subscribers import (
    cmd_subscribers_add,
    cmd_subscribers_import,
    cmd_subscribers_list,
)
from newsbroadcast.db.models import SubscriberStatus
from newsbroadcast.errors import ConfigError, InputError, NewsBroadcastError
from newsbroadcast.runtime import logs


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


class _CommandParser(argparse.ArgumentParser):
    """A parser that takes the global options, so that they may come before or after the
    command: ``newsbroadcast check --config site.yaml`` is ``newsbroadcast --config
    site.yaml check``. Every command's parser is one (add_subparsers makes its parsers of
    its parent's class); there the options default to SUPPRESS, so that when one is not
    given after the command, what was given before it (or the top's default) stands."""

    def __init__(self, *args: Any, top: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config",
            default=None if top else argparse.SUPPRESS,
            help="config file (default: $NEWSBROADCAST_CONFIG, else config/newsbroadcast.yaml)",
        )
        self.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=False if top else argparse.SUPPRESS,
            help="debug logging",
        )


def _parser() -> argparse.ArgumentParser:
    # Typed as the base class: the command modules take its subparsers as theirs.
    p: argparse.ArgumentParser = _CommandParser(prog="newsbroadcast", description=__doc__, top=True)
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
    admin.add_parsers(sub)

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
    subscribers.register(sub, ssub)

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
    wrk.add_argument(
        "--processes", type=int, default=1, metavar="N",
        help="N sending processes (one per core), supervised by this one",
    )  # fmt: skip
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
    preview.add_argument(
        "--json", action="store_true", help="each network's payload as JSON, for machines"
    )
    preview.set_defaults(handler=cmd_post_preview)
    return p


# --- commands -----------------------------------------------------------------------------
