"""What admins write, and checking it.

model (the pydantic models, ``load_config``), yamlfile (YAML with line numbers, anchors
bounded), jsonschema (the schema for editors), checks (``check``'s deeper probes), reload
(hot reload of a running service). May import ``errors``; checks and reload also import what
they try out (render, sources, channels). Never the database or the outbox. The package
re-exports the public surface: ``Config``, ``load_config``, ``config_path``.
"""

from newsbroadcast.config.model import (
    Config,
    config_path,
    load_config,
)

__all__ = [
    "Config",
    "config_path",
    "load_config",
]
