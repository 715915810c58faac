"""What every command group shares: exit codes, the site's config, its database."""

from __future__ import annotations

import argparse

from sqlalchemy import Engine

from newsbroadcast import db
from newsbroadcast.config.model import Config, config_path, load_config
from newsbroadcast.runtime import logs

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def site_config(args: argparse.Namespace) -> Config:
    config = load_config(config_path(args.config))
    logs.protect(config)  # from here on, no configured secret appears in a log line
    return config


def open_engine(config: Config) -> Engine:
    """An engine on the configured database, migrated to the newest schema."""
    engine = db.make_engine(config.database_url, config.senders)
    db.upgrade(engine)
    return engine
