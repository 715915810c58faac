"""`db upgrade` and `db copy`. Thin: parse, call, print."""

from __future__ import annotations

import argparse

from newsbroadcast.cli.common import EXIT_OK, open_engine, site_config


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = site_config(args)
    open_engine(config).dispose()
    print("database is up to date")
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    from newsbroadcast.db.copy import copy_database, open_target

    config = site_config(args)
    source, target = open_engine(config), open_target(args.to)
    try:
        tables = copy_database(source, target, args.batch)
    finally:
        source.dispose()
        target.dispose()
    for t in tables:
        print(f"{t.table}: {t.rows} row(s), {t.copied} copied now")
    print("copy complete: every table holds as many rows as the source")
    return EXIT_OK
