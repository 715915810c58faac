"""The YAML configuration: pydantic models, and loading with file:line errors.

Relative paths in the file are resolved against ``root``, which is itself relative to the
config file and defaults to ``..``: ``config/newsbroadcast.yaml`` sits in the site's folder.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from newsbroadcast.errors import ConfigError, Problem
from newsbroadcast.yamlsource import load_yaml

DEFAULT_CONFIG = Path("config/newsbroadcast.yaml")
CONFIG_ENV = "NEWSBROADCAST_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def _duration(value: Any) -> Any:
    """'90s', '15m', '2h', '1d', '1w' or a number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 15m, 2h or 1d)")


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Africa/Kigali or UTC)"
        ) from e
    return value


def _address(value: str) -> str:
    """Accepts 'a@b.org' or 'Display Name <a@b.org>'."""
    m = re.fullmatch(r"\s*(?:(.*?)\s*<([^<>]+)>|([^<>\s]+))\s*", value)
    if not m:
        raise ValueError(f"{value!r} is not an email address")
    addr = m.group(2) or m.group(3)
    try:
        validate_email(addr, check_deliverability=False)
    except EmailNotValidError as e:
        raise ValueError(f"{addr!r}: {e}") from e
    return value.strip()


TimeZone = Annotated[str, BeforeValidator(_timezone)]
Address = Annotated[str, BeforeValidator(_address)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Site(Model):
    name: str
    url: str = Field(pattern=r"^https?://")
    # Base of the links in emails (unsubscribe, preferences): where `newsbroadcast serve` is.
    public_url: str = Field(pattern=r"^https?://")
    sender: Address = Field(alias="from")
    reply_to: Address | None = None
    list_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z0-9.-]+$")
    unsubscribe_mailto: Address
    # Signs unsubscribe/preferences tokens. Comes from the environment, never from the file.
    secret: str = Field(min_length=16)
    language: str = "en"


class Database(Model):
    url: str = "sqlite:///var/newsbroadcast.db"


class FeedSource(Model):
    """RSS 2.0, Atom or JSON Feed, from a file path or an http(s) URL."""

    type: Literal["feed"]
    name: Name
    url: str
    poll_every: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=20)


Source = Annotated[FeedSource, Field(discriminator="type")]


class Smtp(Model):
    host: str
    port: int | None = None
    # starttls: upgrade a plain connection (port 587); tls: implicit TLS (port 465);
    # none: plain text, for a local relay or a test sink only.
    security: Literal["starttls", "tls", "none"] = "starttls"
    verify: bool = True
    username: str | None = None
    password: str | None = None
    timeout: Duration = timedelta(seconds=30)
    local_hostname: str | None = None

    @field_validator("username", "password", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None  # "${SMTP_USERNAME:-}" left empty means: no login

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class FileTransport(Model):
    dir: Path = Path("var/outbox")


class Dkim(Model):
    domain: str
    selector: str
    private_key_file: Path


class Email(Model):
    transport: Literal["file", "smtp"] = "file"
    file: FileTransport = FileTransport()
    smtp: Smtp | None = None
    dkim: Dkim | None = None
    max_attempts: int = Field(8, ge=1)
    retry_after: Duration = timedelta(minutes=1)  # first retry; doubles each attempt
    bounce_after: int = Field(3, ge=1)  # permanent failures before a subscriber is 'bounced'
    batch_size: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _smtp_needs_settings(self) -> Email:
        if self.transport == "smtp" and self.smtp is None:
            raise ValueError("transport is smtp but there is no smtp: section")
        return self


class Digest(Model):
    name: Name
    cron: str
    timezone: TimeZone = "UTC"
    subject: str = "{{ site.name }}: {{ edition.articles|length }} new stories"
    template: str = "digest"  # templates/email/<template>.html.j2 and .txt.j2
    max_items: int = Field(20, ge=1, le=500)
    # A send time missed while the service was down is made up only this late, never later.
    catch_up: Duration = timedelta(hours=1)
    tags: list[str] = []  # only articles with one of these tags; empty = all

    @field_validator("cron")
    @classmethod
    def _cron_is_valid(cls, cron: str) -> str:
        try:
            CronTrigger.from_crontab(cron, timezone=ZoneInfo("UTC"))
        except ValueError as e:
            raise ValueError(
                f"bad cron expression {cron!r}: {e} (five fields: "
                "minute hour day-of-month month day-of-week)"
            ) from e
        return cron

    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.timezone))


class ChannelBase(Model):
    """What every social channel has: a name, a template, filters and flood protection."""

    name: Name
    template: str = "default.txt.j2"  # under templates/social/
    # Articles first seen before the channel was added are never announced, except the
    # newest `backfill`; and none published more than `max_age` ago (an old feed's archive).
    backfill: int = Field(0, ge=0)
    max_age: Duration = timedelta(days=2)
    tags: list[str] = []  # only articles with one of these tags; empty = all


class FileChannel(ChannelBase):
    """Writes each post as one JSON line to ``dir/<channel name>.jsonl``."""

    type: Literal["file"]
    dir: Path = Path("var/posts")
    max_length: int = Field(500, ge=20)


Channel = Annotated[FileChannel, Field(discriminator="type")]


class Scheduler(Model):
    dispatch_every: Duration = timedelta(seconds=5)
    lease: Duration = timedelta(minutes=5)  # a claim not finished by then is taken again


class Config(Model):
    root: Path = Path("..")
    templates: Path = Path("templates")
    site: Site
    database: Database = Database()
    sources: list[Source] = []
    email: Email = Email()
    digests: list[Digest] = []
    social: list[Channel] = []
    scheduler: Scheduler = Scheduler()

    # Set by load_config: where the file was, for resolving relative paths.
    config_file: Path | None = Field(None, exclude=True)

    @field_validator("sources", "digests", "social")
    @classmethod
    def _unique_names(cls, items: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise ValueError(f"the name {item.name!r} is used twice")
            seen.add(item.name)
        return items

    @property
    def base_dir(self) -> Path:
        anchor = self.config_file.parent if self.config_file else Path.cwd()
        return (anchor / self.root).resolve()

    def path(self, p: Path | str) -> Path:
        """A path from the config, made absolute against ``root``."""
        return self.base_dir / p

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against ``root``."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    def digest(self, name: str) -> Digest:
        for d in self.digests:
            if d.name == name:
                return d
        raise KeyError(name)


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """--config, else $NEWSBROADCAST_CONFIG, else config/newsbroadcast.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Read and validate ``path``. Raises ConfigError with every problem found, each located."""
    located = load_yaml(path, env)
    if not isinstance(located.data, dict):
        raise ConfigError([Problem(located.file, 1, "the top level must be a mapping of keys")])
    problems = list(located.problems)
    try:
        config = Config.model_validate({**located.data, "config_file": path.resolve()})
    except ValidationError as e:
        # An unset variable already has its message; its empty value's errors would repeat it.
        noted = {p.line for p in problems}
        for err in e.errors():
            loc = err["loc"]
            if err["type"] == "union_tag_invalid":
                loc = (*loc, "type")
            line = located.line_of(loc)
            if line not in noted:
                # Say where as the admin wrote it: no union tags, but the missing key.
                shown = located.in_file(err["loc"])
                if err["loc"] and err["loc"][-1] not in shown[-1:]:
                    shown = (*shown, err["loc"][-1])
                problems.append(Problem(located.file, line, _message(err, shown)))
        raise ConfigError(sorted(problems, key=lambda p: p.line or 0)) from e
    if problems:
        raise ConfigError(problems)
    return config


def _message(err: Any, where: tuple[str | int, ...]) -> str:
    loc = ".".join(str(p) for p in where)
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc!r}"
    if kind == "missing":
        return f"missing required key {loc!r}"
    if kind == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        return f"{loc}: unknown type {err['input'].get('type')!r} (expected one of {expected})"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg
