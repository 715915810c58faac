"""Logging: JSON lines for machines, readable lines for people, never a secret.

``setup`` picks the format from where stderr goes: a terminal gets
``2026-03-02 07:00:01 INFO newsbroadcast.planner: edition 4 planned … edition_id=4``; a
pipe or a file (systemd, docker, a log shipper) gets one JSON object per line with the same
fields. ``NEWSBROADCAST_LOG_FORMAT=json|text`` overrides the guess.

Fields given with ``extra={...}`` (``edition_id``, ``post_id``, ``deliveries`` …) are kept as
fields. Every configured secret value (``protect``), and passwords in URLs, are replaced by
``***`` in the message, the fields and tracebacks alike, whatever logger wrote them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import BaseModel

__all__ = ["protect", "redact", "secret_values", "setup"]

FORMAT_ENV = "NEWSBROADCAST_LOG_FORMAT"
# Marks our handler on the root logger, so a second setup replaces it and no other.
_HANDLER_NAME = "newsbroadcast"
MASK = "***"
# Field names whose values are credentials wherever they appear in the config.
_SECRET_FIELD = re.compile(r"secret|password|token|consumer_key|api_key|private_key$", re.I)
# user:password@ in any URL a library prints (database URLs, proxies).
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")
# Attributes every LogRecord has: anything else came from `extra` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Short values would blank out ordinary words; real secrets are longer than this.
_MIN_SECRET = 4

_secrets: set[str] = set()
_lock = threading.Lock()


def protect(values: Iterable[str] | BaseModel) -> None:
    """Never log these values (or a config's secrets) from now on."""
    found = secret_values(values) if isinstance(values, BaseModel) else list(values)
    with _lock:
        _secrets.update(v for v in found if v and len(v) >= _MIN_SECRET)


def secret_values(model: BaseModel) -> list[str]:
    """Every credential in a config: fields named like one (``secret``, ``password``,
    ``token``, ``previous_secrets``, ``consumer_key`` …) and the passwords in URLs."""
    found: list[str] = []

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name), secret or bool(_SECRET_FIELD.search(name)))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, secret)
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, secret or bool(_SECRET_FIELD.search(str(key))))
        elif isinstance(node, str):
            if secret:
                found.append(node)
            found.extend(m.group(2) for m in _URL_PASSWORD.finditer(node))

    walk(model, False)
    return found


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple | set):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in fields(record).items():
            entry.setdefault(key, _clean(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={_clean(v)}" for k, v in fields(record).items())
        return redact(f"{line} {extra}" if extra else line)


class _StderrHandler(logging.StreamHandler[IO[str]]):
    """Writes to whatever ``sys.stderr`` is at the moment of writing (it may be replaced,
    and the old one closed, while threads still log: test runners do that)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def setup(verbose: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Install our handler on the root logger (replacing the one an earlier call installed,
    leaving any other alone); returns it. Without ``stream``: standard error."""
    chosen = os.environ.get(FORMAT_ENV, "").lower()
    shown = stream or sys.stderr
    as_json = chosen == "json" or (chosen != "text" and not _is_terminal(shown))
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
