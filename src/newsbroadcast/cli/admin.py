"""The admin's commands: `config schema`, `preview`, `init`, and the extra output of `check`.

Thin like cli/commands.py: parse, call, print. Return values are exit codes.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from newsbroadcast import db
from newsbroadcast.cli.common import EXIT_FAILED, EXIT_OK
from newsbroadcast.config.model import Config, config_path, load_config
from newsbroadcast.db.models import utcnow
from newsbroadcast.errors import ConfigError
from newsbroadcast.runtime import logs


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cfg = sub.add_parser("config", help="configuration helpers")
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    schema = csub.add_parser("schema", help="write the config's JSON Schema (for editors)")
    schema.add_argument("--out", type=Path, help="file to write (default: standard output)")
    schema.set_defaults(handler=cmd_config_schema)

    preview = sub.add_parser(
        "preview", help="render a digest's next edition as it would go out (sends nothing)"
    )
    preview.add_argument("digest", metavar="DIGEST")
    preview.add_argument(
        "--subscriber", metavar="EMAIL", help="as this subscriber gets it (language, name)"
    )
    preview.add_argument(
        "--out", type=Path, metavar="DIR", help="write message.eml, body.html, body.txt, headers"
    )
    preview.add_argument(
        "--send-test", metavar="ADDRESS", help="send one copy marked [TEST] to ADDRESS"
    )
    preview.set_defaults(handler=cmd_preview)

    init = sub.add_parser("init", help="make a new site folder: config/, templates/, examples/")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--force", action="store_true", help="write into non-empty folders")
    init.set_defaults(handler=cmd_init)


def cmd_config_schema(args: argparse.Namespace) -> int:
    from newsbroadcast.config.jsonschema import schema_text, write_schema

    if args.out is None:
        sys.stdout.write(schema_text())
    else:
        print(f"wrote {write_schema(args.out)}")
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    from newsbroadcast.cli.common import site_config
    from newsbroadcast.dispatch.preview import preview_digest, send_test
    from newsbroadcast.render.templates import make_environment
    from newsbroadcast.transports import make_transport

    config = site_config(args)
    engine = db.make_engine(config.database_url)
    try:
        # Read-only: no migration, no commit. A database never migrated has nothing to show.
        with db.sessions(engine)() as session:
            env = make_environment(config.path(config.templates))
            now = utcnow()
            preview = preview_digest(config, session, env, args.digest, now, args.subscriber)
            session.rollback()
            print(
                f"digest {preview.digest}: next edition (#{preview.edition_id} probably), "
                f"{preview.stories} stories, for {preview.recipient.email} "
                f"in {preview.language}",
                file=sys.stderr,
            )
            if args.out is not None:
                for path in preview.write(args.out):
                    print(f"wrote {path}")
            elif not args.send_test:
                sys.stdout.write(preview.headers() + "\n" + preview.text())
            if args.send_test:
                reply = send_test(
                    config,
                    session,
                    env,
                    make_transport(config),
                    args.digest,
                    args.send_test,
                    now,
                    args.subscriber,
                )
                session.rollback()
                print(f"test copy sent to {args.send_test}: {reply}")
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from newsbroadcast.cli.scaffold import init_site

    made = init_site(args.dir, force=args.force)
    for folder in made:
        print(f"made {folder}/")
    print(
        "next:\n"
        f"  cd {args.dir}\n"
        f"  export NEWSBROADCAST_SECRET={secrets.token_urlsafe(32)}   # keep it; not in a file\n"
        "  newsbroadcast check\n"
        "  newsbroadcast run --once --dry-run"
    )
    return EXIT_OK


def print_check_extras(config: Config, connect: bool) -> int:
    """The schedule and, with ``connect``, the network checks; EXIT_FAILED if one fails."""
    from newsbroadcast.config.checks import connect_checks, schedule_lines, warnings

    for line in schedule_lines(config, utcnow()):
        print(line)
    for warning in warnings(config):
        print(f"warning: {warning}")
    if not connect:
        return EXIT_OK
    failed = False
    for result in connect_checks(config):
        print(f"{result.what}: {'OK' if result.ok else 'FAILED'}: {result.detail}")
        failed = failed or not result.ok
    return EXIT_FAILED if failed else EXIT_OK


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
    return print_check_extras(config, args.connect)
