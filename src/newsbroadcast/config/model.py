"""The YAML configuration: pydantic models, and loading with file:line errors.

Relative paths in the file are resolved against ``root``, which is itself relative to the
config file and defaults to ``..``: ``config/newsbroadcast.yaml`` sits in the site's folder.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
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


def _bare_address(value: str) -> str:
    """Accepts 'a@b.org' only: an envelope address has no display name."""
    value = value.strip()
    if "<" in value or " " in value:
        raise ValueError(f"{value!r}: write the bare address (bounces@example.org), no name")
    return _address(value)


TimeZone = Annotated[str, BeforeValidator(_timezone)]
Address = Annotated[str, BeforeValidator(_address)]
BareAddress = Annotated[str, BeforeValidator(_bare_address)]
# A VERP token (subscribers/verp.py) is 35 characters after the "+"; an address's local part
# may have 64 (RFC 5321 4.5.3.1.1).
VERP_LOCAL_MAX = 64 - 1 - 35
FEEDBACK_ID_FIELDS = ("digest", "kind", "site")


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
    # In every digest's footer: what the site is about, and the sender's postal address
    # (the US CAN-SPAM Act asks commercial email for a valid physical postal address).
    description: str | None = None
    postal_address: str | None = None

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
    # Connections kept open at once by each dispatcher, messages back-to-back on each (all
    # served by the dispatcher's one thread: dispatch/multiplex.py).
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
    # The envelope sender (MAIL FROM), where bounces go; default: site.from's address.
    return_path: BareAddress | None = None
    # Each message's own return path, return_path's local part + "+" + a signed token that
    # names the message (VERP): a bounce names its delivery even when its report does not.
    verp: bool = False
    # Google's Feedback-ID (fields joined by ":", the last one the sender's id). Placeholders:
    # {digest} (the digest's name; "confirm" for confirmations), {kind} (digest or
    # confirmation) and {site} (site.list_id). E.g. "{digest}:{kind}:{site}".
    feedback_id: str | None = None

    @model_validator(mode="after")
    def _smtp_needs_settings(self) -> Email:
        if self.transport == "smtp" and self.smtp is None:
            raise ValueError("transport is smtp but there is no smtp: section")
        return self

    @model_validator(mode="after")
    def _verp_needs_return_path(self) -> Email:
        if self.verp and self.return_path is None:
            raise ValueError("verp is on but there is no return_path (e.g. bounces@example.org)")
        if self.verp and self.return_path is not None:
            local = self.return_path.rpartition("@")[0]
            if "+" in local or len(local) > VERP_LOCAL_MAX:
                raise ValueError(
                    f"return_path {self.return_path!r}: with verp its local part must have no "
                    f"'+' and at most {VERP_LOCAL_MAX} characters (the token takes the rest of "
                    "the 64 an address may have)"
                )
        return self

    @field_validator("feedback_id")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as e:
            raise ValueError(f"{value!r}: {e} (write placeholders as {{digest}})") from e
        unknown = fields - set(FEEDBACK_ID_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}} in {value!r} "
                f"(known: {', '.join('{' + f + '}' for f in FEEDBACK_ID_FIELDS)})"
            )
        if not value.isascii() or any(c.isspace() for c in value):
            raise ValueError(f"{value!r}: only ASCII without spaces may be in a Feedback-ID")
        return value


class Digest(Model):
    name: Name
    cron: str
    timezone: TimeZone = "UTC"
    subject: str = (
        "{{ site.name }}: {% trans count=edition.articles|length %}{{ count }} new story"
        "{% pluralize %}{{ count }} new stories{% endtrans %}"
    )
    template: str = "digest"  # templates/email/<template>.html.j2 and .txt.j2
    max_items: int = Field(20, ge=1, le=500)
    # Each story's summary is shortened to about this many characters (at a sentence's or
    # word's end) before its "Read more" link; 0 shows it whole.
    excerpt: int = Field(300, ge=0)
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
    # At most this many of the story's tags become hashtags (valid ones only, each once).
    max_hashtags: int = Field(3, ge=0)
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
    # The posts' language when the story's source gives none; default: site.language.
    language: str | None = None
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
    # ISO 639 code of posts whose story's source gives no language; default: the account's.
    language: str | None = None
    spoiler_text: str | None = None  # a content warning shown before each post
    timeout: Duration = timedelta(seconds=30)


Channel = Annotated[
    FileChannel | BlueskyChannel | TelegramChannel | WebhookChannel | XChannel | MastodonChannel,
    Field(discriminator="type"),
]


class Web(Model):
    """`newsbroadcast serve`: the subscriber pages (sign-up, preferences, unsubscribe, archive)."""

    # Offered on the sign-up and preferences pages, and what pages negotiate Accept-Language
    # among; empty = site.language first, then English and every language with a catalog.
    languages: list[str] = []
    topics: list[str] = []  # article tags a subscriber may choose; none chosen = everything
    confirm_within: Duration = timedelta(days=2)  # a confirmation link's lifetime
    # At most one confirmation email per address this often, whoever asks.
    resend_after: Duration = timedelta(minutes=10)
    # Sign-ups accepted from one client (IP address) per window.
    signups_per_client: int = Field(5, ge=1)
    signup_window: Duration = timedelta(hours=1)
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed. Only when the connection comes from one of them; the
    # client is then the rightmost X-Forwarded-For entry that is not one of them (a client
    # can write the entries to the left, not the one its proxy appends). Empty: the socket's.
    trusted_proxies: list[IPvAnyNetwork] = []
    # `serve` in production: processes, and how long a connection may take to send a
    # request's headers (slow clients hold a connection each) or stay idle between requests.
    workers: int = Field(1, ge=1, le=64)
    header_timeout: Duration = timedelta(seconds=10)
    keepalive_timeout: Duration = timedelta(seconds=5)
    # Open connections per worker; more are closed at once (with a 503).
    max_connections: int = Field(1000, ge=1)
    # /metrics is not on the subscribers' port unless a bearer token is set
    # (${METRICS_TOKEN}); `serve` can serve it on a port of its own instead.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_addr: str = "127.0.0.1"
    metrics_token: str | None = Field(None, repr=False, min_length=16)

    @model_validator(mode="before")
    @classmethod
    def _replaced_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and "trust_forwarded_for" in data:
            raise ValueError(
                "web.trust_forwarded_for was replaced by web.trusted_proxies: list the "
                "addresses of your reverse proxies instead, e.g. trusted_proxies: [127.0.0.1]"
            )
        return data

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None  # "${METRICS_TOKEN:-}" left empty: no /metrics on this port

    @field_validator("header_timeout", "keepalive_timeout")
    @classmethod
    def _some_time(cls, timeout: timedelta) -> timedelta:
        if timeout <= timedelta(0):
            raise ValueError("must be more than 0 (e.g. 10s)")
        return timeout


class Mailbox(Model):
    """Where unsubscribe requests (to site.unsubscribe_mailto) and bounces arrive: a Maildir
    the mail server (or fetchmail/getmail from an IMAP account) delivers into."""

    maildir: Path
    check_every: Duration = timedelta(minutes=5)
    # Soft bounces (4.x.x, delayed) before an address is treated as bounced.
    soft_bounce_limit: int = Field(5, ge=1)


TopicArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:\S+$")]


class SesWebhook(Model):
    """Amazon SES notifications through an SNS topic (``POST /webhooks/ses``)."""

    # Only notifications from these topics are taken (AWS: reject unexpected TopicArns).
    topic_arns: list[TopicArn] = Field(min_length=1)
    # Visit the SubscribeURL of a (signed) SubscriptionConfirmation for one of topic_arns.
    confirm_subscriptions: bool = True


class PostmarkWebhook(Model):
    """Postmark's Bounce and SpamComplaint webhooks (``POST /webhooks/postmark``). Postmark
    signs nothing: set the webhook URL with basic auth (``https://user:pass@host/...``),
    or with ``?token=...``, or both."""

    username: str | None = None
    password: str | None = Field(None, min_length=16)
    token: str | None = Field(None, min_length=16)

    @model_validator(mode="after")
    def _some_secret(self) -> PostmarkWebhook:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is None and self.token is None:
            raise ValueError("set username and password (basic auth) or token, or both")
        return self


class MailgunWebhook(Model):
    """Mailgun webhooks (``POST /webhooks/mailgun``), events failed and complained."""

    signing_key: str = Field(min_length=16)  # "HTTP webhook signing key" in Mailgun
    max_age: Duration = timedelta(minutes=10)  # older (or replayed) signatures are refused


class SendgridWebhook(Model):
    """SendGrid's Signed Event Webhook (``POST /webhooks/sendgrid``)."""

    public_key: str  # the verification key SendGrid shows (base64 DER)
    max_age: Duration = timedelta(minutes=10)

    @field_validator("public_key")
    @classmethod
    def _an_ecdsa_key(cls, value: str) -> str:
        # Checked here so `config check` finds a key pasted wrong, not the first webhook.
        try:
            key = load_der_public_key(base64.b64decode(value.strip(), validate=True))
        except (ValueError, binascii.Error):
            raise ValueError("not a base64 DER public key (copy it from SendGrid)") from None
        if not isinstance(key, EllipticCurvePublicKey):
            raise ValueError("not an elliptic-curve (ECDSA) public key")
        return value.strip()


class GenericWebhook(Model):
    """``POST /webhooks/bounce`` with ``Authorization: Bearer <token>`` (or ``?token=``)."""

    token: str = Field(min_length=16)


class Webhooks(Model):
    ses: SesWebhook | None = None
    postmark: PostmarkWebhook | None = None
    mailgun: MailgunWebhook | None = None
    sendgrid: SendgridWebhook | None = None
    generic: GenericWebhook | None = None


class ImapMailbox(Model):
    """An IMAP account read over TLS (port 993) or STARTTLS (port 143)."""

    kind: Literal["imap"]
    host: str
    port: int | None = None
    # No clear-text choice: the password and every bounce would cross the network bare.
    tls: Literal["tls", "starttls"] = "tls"
    verify: bool = True  # check the server's certificate (against ca_file if given)
    ca_file: Path | None = None  # a private CA to trust instead of the system's
    user: str
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the variable's name
    folder: str = "INBOX"
    # What happens to a message once handled: "flag" (marked \Seen, left in the folder),
    # "delete" (\Deleted and expunged) or "move:<folder>" (created if missing).
    processed: str = Field("flag", pattern=r"^(flag|delete|move:.+)$")
    timeout: Duration = timedelta(seconds=30)

    @field_validator("folder", "processed")
    @classmethod
    def _ascii_folder(cls, value: str) -> str:
        # Other names need IMAP's modified UTF-7; quotes and backslashes its escaping.
        if not value.isascii() or any(c in value for c in '"\\\r\n'):
            raise ValueError(f"{value!r}: a folder name here must be ASCII, without quotes")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 993, "starttls": 143}[self.tls]


class Pop3Mailbox(Model):
    """A POP3 account read over TLS (port 995) or STLS (port 110); handled messages are deleted
    (POP3 has no flags); one that cannot be handled stays on the server."""

    kind: Literal["pop3"]
    host: str
    port: int | None = None
    tls: Literal["tls", "starttls"] = "tls"
    verify: bool = True
    ca_file: Path | None = None
    user: str
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    processed: Literal["delete"] = "delete"
    timeout: Duration = timedelta(seconds=30)

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 995, "starttls": 110}[self.tls]


class MaildirMailbox(Model):
    """A Maildir the mail server (or fetchmail/getmail) delivers into; handled messages are
    flagged Seen and moved to cur/, never deleted."""

    kind: Literal["maildir"]
    path: Path


BounceMailbox = Annotated[ImapMailbox | Pop3Mailbox | MaildirMailbox, Field(discriminator="kind")]


class Bounces(Model):
    """Where bounces, complaints (ARF) and mailto unsubscribes arrive: a mailbox read on a
    schedule, and webhooks of email providers."""

    mailbox: BounceMailbox | None = None
    check_every: Duration = timedelta(minutes=5)
    # Soft bounces (4.x.x, delayed) before an address is treated as bounced.
    soft_bounce_limit: int = Field(5, ge=1)
    # Bounces and complaints that email providers post to /webhooks/….
    webhooks: Webhooks = Webhooks()


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
    mailbox: Mailbox | None = None  # the older spelling of bounces: {mailbox: {kind: maildir}}
    bounces: Bounces = Bounces()
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

    @model_validator(mode="after")
    def _one_mailbox(self) -> Config:
        # The older section carries its own check_every and soft_bounce_limit: with either
        # also under bounces:, one would be silently ignored.
        both = {"mailbox", "check_every", "soft_bounce_limit"} & self.bounces.model_fields_set
        if self.mailbox is not None and both:
            raise ValueError(
                f"both mailbox: and bounces: ({', '.join(sorted(both))}) are set; keep "
                "bounces: (mailbox: {maildir: X} is bounces: {mailbox: {kind: maildir, path: X}})"
            )
        return self

    @property
    def senders(self) -> int:
        """SMTP connections each dispatcher keeps open at once (1 for the file outbox)."""
        email = self.email
        return email.smtp.connections if email.transport == "smtp" and email.smtp else 1

    @property
    def bounce_settings(self) -> Bounces | None:
        """The mailbox settings, from ``bounces:`` or from the older ``mailbox:`` section;
        None when no mailbox is read."""
        if self.bounces.mailbox is not None:
            return self.bounces
        if self.mailbox is None:
            return None
        old = self.mailbox
        return self.bounces.model_copy(
            update={
                "mailbox": MaildirMailbox(kind="maildir", path=old.maildir),
                "check_every": old.check_every,
                "soft_bounce_limit": old.soft_bounce_limit,
            }
        )

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
