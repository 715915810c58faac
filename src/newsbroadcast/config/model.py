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
    WithJsonSchema,
    field_validator,
    model_validator,
)

from newsbroadcast.config.yamlfile import load_yaml
from newsbroadcast.errors import ConfigError, Problem

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


# In the JSON Schema as the admin writes it ("15m", or seconds), not pydantic's ISO 8601.
_DURATION_SCHEMA = {
    "anyOf": [{"type": "string", "pattern": _DURATION.pattern}, {"type": "number", "minimum": 0}],
    "description": "a duration: 30s, 15m, 2h, 1d, 1w, or a number of seconds",
}
Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
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
    # Secrets used before a rotation: links already sent and signed with them still verify.
    previous_secrets: list[str] = []
    language: str = "en"

    @property
    def secrets(self) -> list[str]:
        """Every secret a token may be signed with, the current one first."""
        return [self.secret, *self.previous_secrets]


class Database(Model):
    url: str = "sqlite:///var/newsbroadcast.db"


class FeedSource(Model):
    """RSS 2.0, Atom or JSON Feed, from a file path or an http(s) URL."""

    type: Literal["feed"]
    name: Name
    url: str
    poll_every: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=20)


class HtmlSelectors(Model):
    """CSS selectors; all but ``item`` apply inside one item. ``sel@attr`` reads an
    attribute (``time@datetime``, ``img@src``), otherwise the element's text is used."""

    item: str
    title: str
    link: str = "a@href"
    date: str | None = None
    summary: str | None = None
    image: str | None = None


class HtmlPages(Model):
    """Pagination: follow a "next" link, or fill ``{page}`` (2, 3, …) into a URL pattern."""

    next: str | None = None
    pattern: str | None = Field(None, pattern=r"\{page\}")
    max_pages: int = Field(1, ge=1, le=100)


class HtmlSource(Model):
    """A "latest news" listing page read with CSS selectors."""

    type: Literal["html"]
    name: Name
    url: str = Field(pattern=r"^https?://")
    selectors: HtmlSelectors
    date_formats: list[str] = []  # strptime formats, tried in order; none: dateutil guesses
    date_timezone: TimeZone = "UTC"  # for dates written without an offset
    day_first: bool = False  # 03/04/2025 is 3 April (dateutil guessing only)
    pages: HtmlPages = HtmlPages()
    # Read each new story's own page for og:title/description/image, article:published_time.
    fetch_articles: bool = False
    delay: Duration = timedelta(seconds=1)  # between two requests to one host
    poll_every: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=20)


class SitemapSource(Model):
    """A Google News sitemap (or a sitemap index of them)."""

    type: Literal["sitemap"]
    name: Name
    url: str = Field(pattern=r"^https?://")
    max_sitemaps: int = Field(20, ge=1, le=1000)  # children of an index read per poll
    delay: Duration = timedelta(seconds=1)
    poll_every: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=20)


class SqlColumns(Model):
    """Which column of the foreign table holds each article field."""

    guid: str
    title: str
    url: str | None = None
    summary: str | None = None
    body: str | None = None
    image: str | None = None
    author: str | None = None
    tags: str | None = None  # comma-separated text, a JSON list or an array column
    published_at: str | None = None


class SqlSource(Model):
    """Rows of a table or view in another application's database, read strictly read-only."""

    type: Literal["sql"]
    name: Name
    url: str  # any SQLAlchemy URL; put the password in the environment: ${NEWS_DB_URL}
    table: str
    db_schema: str | None = Field(None, alias="schema")
    columns: SqlColumns
    cursor: str  # an increasing column (an id or a timestamp): only rows past it are read
    timezone: TimeZone = "UTC"  # of timestamps stored without an offset
    batch_size: int = Field(500, ge=1, le=100_000)
    max_rows: int = Field(10_000, ge=1)  # per poll; a backlog is read over several polls
    # Each poll reads again the rows just behind the cursor (deduped by guid): rows with the
    # cursor's last value and rows committed late, after a newer one was read. For a
    # date/time cursor, those within `lookback` of it; for any other, the last `lookback_rows`.
    lookback: Duration = timedelta(minutes=10)
    lookback_rows: int = Field(100, ge=1)
    poll_every: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(seconds=20)


Source = Annotated[FeedSource | HtmlSource | SitemapSource | SqlSource, Field(discriminator="type")]


class Api(Model):
    """The push API (``POST /api/articles``). Tokens are stored hashed: ``sha256:<hex>``
    (``newsbroadcast api hash-token`` makes one)."""

    tokens: list[Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = []
    source: Name = "push"  # the source name pushed articles are stored under


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
    # Connections kept open at once by each dispatcher, messages back-to-back on each.
    connections: int = Field(1, ge=1, le=64)

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


class RateLimit(Model):
    """A provider's sending limit, held for all dispatchers together (state in the database).
    Sliding windows: at most ``per_second`` in any second, ``per_hour`` in any hour."""

    per_second: int | None = Field(None, ge=1)
    per_hour: int | None = Field(None, ge=1)


class AutoPause(Model):
    """Pause an edition when, of its last ``window`` messages, this share was refused."""

    window: int = Field(200, ge=1)
    failure_share: float = Field(0.5, gt=0, le=1)


class Email(Model):
    transport: Literal["file", "smtp"] = "file"
    file: FileTransport = FileTransport()
    smtp: Smtp | None = None
    dkim: Dkim | None = None
    # Refusals of one message (4xx replies to it) before it is given up; an outage, a lost
    # connection or a crash never counts.
    max_attempts: int = Field(8, ge=1)
    retry_after: Duration = timedelta(minutes=1)  # first retry; doubles each attempt
    # While the server is down, tries are spaced retry_after, doubling, at most this far apart.
    outage_wait_max: Duration = timedelta(minutes=5)
    bounce_after: int = Field(3, ge=1)  # permanent failures before a subscriber is 'bounced'
    batch_size: int = Field(200, ge=1)
    rate_limit: RateLimit = RateLimit()
    auto_pause: AutoPause | None = AutoPause()  # null turns it off

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


class Pace(Model):
    """At most one post per ``every`` on a channel, and only ``between`` two local times
    ("07:00-21:00"; "22:00-06:00" spans midnight) in ``timezone``. Held in the database, so it
    holds for every dispatcher and across restarts."""

    every: Duration = timedelta(0)
    between: str | None = Field(None, pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$")
    timezone: TimeZone = "UTC"

    @field_validator("between")
    @classmethod
    def _real_times(cls, value: str | None) -> str | None:
        for hm in value.split("-") if value else ():
            hours, minutes = (int(x) for x in hm.split(":"))
            if hours > 24 or minutes > 59 or (hours == 24 and minutes):
                raise ValueError(f"{hm!r} is not a time of day (write e.g. 07:00-21:00)")
        return value


class ChannelBase(Model):
    """What every social channel has: a name, a template, filters and flood protection."""

    name: Name
    template: str = "default.txt.j2"  # under templates/social/
    # Articles first seen before the channel was added are never announced, except the
    # newest `backfill`; and none published more than `max_age` ago (an old feed's archive).
    backfill: int = Field(0, ge=0)
    max_age: Duration = timedelta(days=2)
    tags: list[str] = []  # only articles with one of these tags; empty = all
    pace: Pace | None = None  # e.g. {every: 10m, between: "07:00-21:00", timezone: UTC}
    # Refusals of one post (an answer to it) before it is given up; the network being
    # unreachable or the server asking us to wait never counts.
    max_attempts: int = Field(8, ge=1)
    retry_after: Duration = timedelta(minutes=1)  # first retry; doubles each attempt
    outage_wait_max: Duration = timedelta(minutes=5)  # tries while unreachable: at most this apart


class FileChannel(ChannelBase):
    """Writes each post as one JSON line to ``dir/<channel name>.jsonl``."""

    type: Literal["file"]
    dir: Path = Path("var/posts")
    max_length: int = Field(500, ge=20)


class BlueskyChannel(ChannelBase):
    """Posts to a Bluesky (AT Protocol) account with an app password."""

    type: Literal["bluesky"]
    service: str = Field("https://bsky.social", pattern=r"^https?://")  # the account's PDS
    handle: str  # or the account's DID; put it in the environment: ${BLUESKY_HANDLE}
    app_password: str = Field(repr=False)  # ${BLUESKY_APP_PASSWORD}, never in the file
    # The login is kept here and refreshed (createSession is rate-limited hard); mode 0600.
    session_file: Path | None = None  # default: var/bluesky-<name>.session
    language: str | None = None  # the posts' language; default: site.language
    link_card: bool = True  # an external embed with title, description and thumbnail
    timeout: Duration = timedelta(seconds=30)


class TelegramChannel(ChannelBase):
    """Sends each post with the Bot API's sendMessage to a channel the bot administers."""

    type: Literal["telegram"]
    api_url: str = Field("https://api.telegram.org", pattern=r"^https?://")
    token: str = Field(repr=False)  # ${TELEGRAM_BOT_TOKEN}
    chat_id: str = Field(pattern=r"^(@[A-Za-z0-9_]{4,}|-?\d+)$")  # @channel or -100…
    link_preview: bool = True
    silent: bool = False  # disable_notification
    # Telegram cannot tell whether a request whose answer was lost went through. false: such
    # a post is marked failed, never sent twice; true: it is sent again, never lost.
    resend_unconfirmed: bool = False
    timeout: Duration = timedelta(seconds=30)


class WebhookChannel(ChannelBase):
    """POSTs each post as JSON, signed with HMAC-SHA256 when a secret is set."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    format: Literal["generic", "slack", "discord"] = "generic"
    secret: str | None = Field(None, repr=False)  # ${WEBHOOK_SECRET}; empty: unsigned
    max_length: int | None = Field(None, ge=20)  # default: slack 4000, discord 2000, 4000
    timeout: Duration = timedelta(seconds=30)

    @field_validator("secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class XChannel(ChannelBase):
    """Posts to X with OAuth 1.0a user context (the app's keys and the account's token)."""

    type: Literal["x"]
    consumer_key: str = Field(repr=False)  # ${X_CONSUMER_KEY}
    consumer_secret: str = Field(repr=False)  # ${X_CONSUMER_SECRET}
    access_token: str = Field(repr=False)  # ${X_ACCESS_TOKEN}
    access_token_secret: str = Field(repr=False)  # ${X_ACCESS_TOKEN_SECRET}
    timeout: Duration = timedelta(seconds=30)


class MastodonChannel(ChannelBase):
    """Posts statuses to a Mastodon account with an access token."""

    type: Literal["mastodon"]
    api_base_url: str = Field(pattern=r"^https?://")  # the instance, e.g. https://mastodon.social
    access_token: str = Field(repr=False)  # ${MASTODON_ACCESS_TOKEN}
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str | None = None  # ISO 639 code of the posts; default: the account's
    spoiler_text: str | None = None  # a content warning shown before each post
    timeout: Duration = timedelta(seconds=30)


Channel = Annotated[
    FileChannel | BlueskyChannel | TelegramChannel | WebhookChannel | XChannel | MastodonChannel,
    Field(discriminator="type"),
]


class Web(Model):
    """`newsbroadcast serve`: the subscriber pages (sign-up, preferences, unsubscribe, archive)."""

    # Offered on the sign-up and preferences pages; empty = only site.language.
    languages: list[str] = []
    topics: list[str] = []  # article tags a subscriber may choose; none chosen = everything
    confirm_within: Duration = timedelta(days=2)  # a confirmation link's lifetime
    # At most one confirmation email per address this often, whoever asks.
    resend_after: Duration = timedelta(minutes=10)
    # Sign-ups accepted from one client (IP address) per window.
    signups_per_client: int = Field(5, ge=1)
    signup_window: Duration = timedelta(hours=1)
    # Behind a reverse proxy, the client is the first X-Forwarded-For address; only trust it
    # when the proxy sets it.
    trust_forwarded_for: bool = False


class Mailbox(Model):
    """Where unsubscribe requests (to site.unsubscribe_mailto) and bounces arrive: a Maildir
    the mail server (or fetchmail/getmail from an IMAP account) delivers into."""

    maildir: Path
    check_every: Duration = timedelta(minutes=5)
    # Soft bounces (4.x.x, delayed) before an address is treated as bounced.
    soft_bounce_limit: int = Field(5, ge=1)


class Scheduler(Model):
    dispatch_every: Duration = timedelta(seconds=5)
    lease: Duration = timedelta(minutes=5)  # a claim not finished by then is taken again
    # `run` looks at config/ and templates/ this often and reloads a valid change; 0: never.
    watch_every: Duration = timedelta(seconds=2)
    # In `run`, one dispatch step stops claiming batches after this long (and after at most
    # half the shortest digest catch_up), so polls, digest plans and reloads get their turn
    # during a big send; the next step goes on. `run --once` and `worker` send all that is due.
    dispatch_budget: Duration = timedelta(seconds=30)

    @field_validator("dispatch_budget")
    @classmethod
    def _some_time(cls, budget: timedelta) -> timedelta:
        if budget <= timedelta(0):
            raise ValueError("must be more than 0 (e.g. 30s)")
        return budget


class Retention(Model):
    """How long per-subscriber history is kept. Delivery rows (who was sent which edition)
    older than ``deliveries`` are folded into per-edition counts of each outcome, as for an
    erased subscriber: `status` and the archive show the same numbers, and years of
    history do not weigh on every send. Unset: kept for ever."""

    deliveries: Duration | None = None

    @field_validator("deliveries")
    @classmethod
    def _positive(cls, keep: timedelta | None) -> timedelta | None:
        if keep is not None and keep <= timedelta(0):
            raise ValueError("must be more than 0 (e.g. 90d), or left out to keep every row")
        return keep


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
    web: Web = Web()
    mailbox: Mailbox | None = None
    api: Api = Api()
    retention: Retention = Retention()

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
