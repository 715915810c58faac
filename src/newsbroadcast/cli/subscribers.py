"""The subscribers' commands: `serve` (their web app; cli/run.py has it), `mailbox process`
(their replies), `subscribers add|import|list|export|data|remove|suppress|erase`. Thin:
parse, call, print."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from sqlalchemy import select

from newsbroadcast import db
from newsbroadcast.cli import run
from newsbroadcast.cli.common import EXIT_FAILED, EXIT_OK, open_engine, site_config
from newsbroadcast.db.models import Subscriber, SubscriberStatus, utcnow
from newsbroadcast.errors import InputError

__all__ = ["register"]


def register(commands: Any, subscriber_actions: Any) -> None:
    """Add the commands to the `newsbroadcast` parser (``commands``) and to its
    `subscribers` group (``subscriber_actions``)."""
    run.register_serve(commands)

    mbox = commands.add_parser("mailbox", help="unsubscribe requests and bounces")
    msub = mbox.add_subparsers(dest="mailbox_command", required=True, metavar="ACTION")
    msub.add_parser("process", help="read new messages of the configured mailbox").set_defaults(
        handler=cmd_mailbox_process
    )

    exp = subscriber_actions.add_parser("export", help="every subscriber as CSV on stdout")
    exp.add_argument("--status", choices=[s.value for s in SubscriberStatus])
    exp.set_defaults(handler=cmd_subscribers_export)
    data = subscriber_actions.add_parser("data", help="all data about one subscriber, as JSON")
    data.add_argument("email")
    data.set_defaults(handler=cmd_subscribers_data)
    rem = subscriber_actions.add_parser("remove", help="unsubscribe an address now")
    rem.add_argument("email")
    rem.set_defaults(handler=cmd_subscribers_remove)
    sup = subscriber_actions.add_parser(
        "suppress", help="never add or mail this address again (also unsubscribes it)"
    )
    sup.add_argument("email")
    sup.add_argument("--reason", default="by hand")
    sup.set_defaults(handler=cmd_subscribers_suppress)
    era = subscriber_actions.add_parser(
        "erase", help="delete a subscriber; only anonymous delivery counts remain"
    )
    era.add_argument("email")
    era.add_argument(
        "--allow-resubscribe",
        action="store_true",
        help="do not keep the address's hash on the suppression list",
    )
    era.set_defaults(handler=cmd_subscribers_erase)


def _open(args: argparse.Namespace) -> Any:
    from newsbroadcast.cli.common import open_engine, site_config

    config = site_config(args)
    return config, open_engine(config)


def _subscriber(session: Any, address: str) -> Subscriber:
    from newsbroadcast.subscribers.lifecycle import find_by_email

    sub = find_by_email(session, address)
    if sub is None:
        raise InputError(f"no subscriber with the address {address!r}")
    return sub


def cmd_mailbox_process(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.mailbox import process_mailbox

    config, engine = _open(args)
    if config.bounce_settings is None:
        raise InputError("no mailbox is configured (bounces.mailbox)")
    try:
        report = process_mailbox(config, db.sessions(engine), utcnow)
    finally:
        engine.dispose()
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(
        f"read {report.read}: unsubscribed {report.unsubscribed}, complaints "
        f"{report.complaints}, hard bounces {report.hard_bounces}, soft bounces "
        f"{report.soft_bounces}, ignored {report.ignored}, unreadable {report.unreadable}"
    )
    return 0


def cmd_subscribers_export(args: argparse.Namespace) -> int:
    site_config, engine = _open(args)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["email", "name", "language", "status", "created_at", "confirmed_at"])
    with db.sessions(engine)() as session:
        q = select(Subscriber).order_by(Subscriber.id).execution_options(yield_per=500)
        if args.status:
            q = q.where(Subscriber.status == args.status)
        for s in session.scalars(q):
            confirmed = s.confirmed_at.isoformat() if s.confirmed_at else ""
            out.writerow(
                [s.email, s.name or "", s.language, s.status, s.created_at.isoformat(), confirmed]
            )
    engine.dispose()
    return 0


def cmd_subscribers_data(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.lifecycle import export_data

    site_config, engine = _open(args)
    with db.sessions(engine)() as session:
        data = export_data(session, _subscriber(session, args.email))
    engine.dispose()
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def cmd_subscribers_remove(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.lifecycle import unsubscribe

    site_config, engine = _open(args)
    with db.sessions(engine)() as session:
        sub = _subscriber(session, args.email)
        unsubscribe(session, sub.id, utcnow())
        session.commit()
        print(f"{sub.email} is {sub.status}")
    engine.dispose()
    return 0


def cmd_subscribers_suppress(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.lifecycle import find_by_email, unsubscribe
    from newsbroadcast.subscribers.registry import normalize_email
    from newsbroadcast.subscribers.suppressions import suppress

    address = normalize_email(args.email)
    site_config, engine = _open(args)
    with db.sessions(engine)() as session:
        added = suppress(session, address, args.reason, utcnow())
        sub = find_by_email(session, address)
        if sub is not None:
            unsubscribe(session, sub.id, utcnow())
        session.commit()
    engine.dispose()
    print(f"{address} suppressed" if added else f"{address} was already suppressed")
    return 0


def cmd_subscribers_erase(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.lifecycle import erase

    site_config, engine = _open(args)
    with db.sessions(engine)() as session:
        sub = _subscriber(session, args.email)
        counted = erase(session, sub, utcnow(), keep_suppressed=not args.allow_resubscribe)
        session.commit()
    engine.dispose()
    print(f"erased; {counted} deliveries kept as anonymous counts")
    return 0


def cmd_subscribers_add(args: argparse.Namespace) -> int:
    from newsbroadcast.subscribers.registry import add_subscriber

    config = site_config(args)
    engine = open_engine(config)
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
    config = site_config(args)
    engine = open_engine(config)
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
    config = site_config(args)
    engine = open_engine(config)
    with db.sessions(engine)() as session:
        q = select(Subscriber).order_by(Subscriber.id)
        if args.status:
            q = q.where(Subscriber.status == args.status)
        for s in session.scalars(q):
            print(f"{s.id}\t{s.email}\t{s.status}\t{s.name or ''}\t{s.language}")
    engine.dispose()
    return EXIT_OK
