"""Digest emails: an edition rendered once, then one RFC 5322 message per recipient.

``prepare_edition`` renders the subject, the HTML part (CSS-inlined) and the text part once,
with unguessable placeholders where per-recipient values go. ``PreparedEdition.message``
then only joins precomputed pieces with a recipient's name, address and links, encodes the
parts as quoted-printable and writes the headers: no template runs per recipient.

Pure: no database, no network, no clock (``now`` is an argument).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import html
import re
import secrets
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, parseaddr
from typing import Any

import css_inline
import dkim
import jinja2
from markupsafe import Markup

from newsbroadcast.config.model import Config, Digest
from newsbroadcast.errors import ConfigError, PermanentSendError, Problem
from newsbroadcast.render import i18n
from newsbroadcast.render.templates import html_to_text, sanitize_html
from newsbroadcast.render.views import EditionView, Recipient, StoryView
from newsbroadcast.subscribers import tokens

__all__ = [
    "ArticleView",
    "PreparedEdition",
    "make_message_id",
    "prepare_edition",
    "recipient_links",
    "template_context",
]

CRLF = "\r\n"
# Long enough for any real subject; longer ones are cut (clients show ~60-130 characters)
# so a runaway article title cannot make a header line too long to send.
MAX_SUBJECT = 255
MAX_PREHEADER = 140
# Headers DKIM covers. Receivers (Gmail) expect both List-Unsubscribe headers to be signed,
# or one-click unsubscribe is not offered.
DKIM_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_SPACES = re.compile(r"[ \t]{2,}")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# Order matters: it is the order of the values handed to _Body.fill.
_SLOTS = ("name", "email", "unsubscribe_url", "preferences_url")


@dataclass(frozen=True)
class ArticleView:
    """A story as templates see it: ``summary_html`` is sanitised, URLs are http(s) or None."""

    title: str
    url: str | None
    summary_html: Markup
    summary_text: str
    published_at: datetime | None
    image: str | None
    author: str | None
    tags: tuple[str, ...]


def make_message_id(config: Config, digest: str, period: str, address: str) -> str:
    """``<hex>@<sender domain>``, without angle brackets: a keyed hash (the site's secret)
    of the site (``list_id``), the digest, the period and the address (letter case
    ignored, as subscribers are). Row ids are left out on purpose: they start again in a
    rebuilt database, and a receiver that drops Message-IDs it knows would drop a new
    edition. The same for the same edition and address, so a message resent after a crash
    is recognisably the same message; the key keeps outsiders from forging our ids."""
    seed = "\0".join(("message-id", config.site.list_id, digest, period, address.lower()))
    mac = hmac.new(config.site.secret.encode(), seed.encode(), hashlib.sha256).hexdigest()
    return f"{mac[:32]}@{_domain_of(config.site.sender)}"


def recipient_links(config: Config, subscriber_id: int) -> dict[str, str]:
    """The subscriber's signed links: ``unsubscribe_url``, ``preferences_url`` and
    ``unsubscribe_mailto``. They never expire: an old email's unsubscribe link must work."""
    base = config.site.public_url.rstrip("/")
    unsubscribe = tokens.sign(config.site.secret, "unsubscribe", subscriber_id)
    preferences = tokens.sign(config.site.secret, "preferences", subscriber_id)
    mailbox = _bare_address(config.site.unsubscribe_mailto)
    return {
        "unsubscribe_url": f"{base}/unsubscribe/{unsubscribe}",
        "preferences_url": f"{base}/preferences/{preferences}",
        "unsubscribe_mailto": f"mailto:{mailbox}?subject=unsubscribe%20{unsubscribe}",
    }


def template_context(
    env: jinja2.Environment,
    config: Config,
    digest: Digest,
    edition: EditionView,
    language: str | None = None,
) -> dict[str, Any]:
    """What the digest templates see, except the per-recipient values (``subscriber``,
    ``unsubscribe_url``, ``preferences_url``): ``site``, ``digest``, ``edition`` (with its
    ``articles``), ``subject`` and ``preheader``. Raises ConfigError for a bad subject."""
    articles = [_article_view(story, config.site.url) for story in edition.stories]
    site = {"name": config.site.name, "url": config.site.url, "language": config.site.language}
    edition_context = {
        "id": edition.id,
        "digest": edition.digest,
        "period": edition.period,
        "created_at": edition.created_at,
        "articles": articles,
    }
    context: dict[str, Any] = {
        "site": site,
        "digest": digest,
        "edition": edition_context,
        "language": language or config.site.language,
    }
    context["subject"] = _render_subject(env, digest, context)
    context["preheader"] = _preheader(articles)
    return context


def prepare_edition(
    env: jinja2.Environment,
    config: Config,
    digest: Digest,
    edition: EditionView,
    language: str | None = None,
    subject_prefix: str = "",
) -> PreparedEdition:
    """Render ``edition`` with ``digest``'s templates (``email/<template>.html.j2`` and
    ``.txt.j2``) once, in ``language`` (its catalog, else English: see render.i18n).
    Raises ConfigError, located in the template, when a template is missing or fails."""
    with i18n.language(env, language) as used:
        return _prepare(env, config, digest, edition, used, subject_prefix)


def _prepare(
    env: jinja2.Environment,
    config: Config,
    digest: Digest,
    edition: EditionView,
    language: str,
    subject_prefix: str,
) -> PreparedEdition:
    context = template_context(env, config, digest, edition, language)
    subject = context["subject"] = _one_line(subject_prefix + context["subject"])

    # A fresh random marker per edition: article text cannot contain it by accident or design.
    nonce = secrets.token_hex(8)
    sentinels = [f"nbslot{nonce}{i}x" for i in range(len(_SLOTS))]
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    variants: dict[bool, tuple[_Body, _Body]] = {}
    # Two variants, with and without a name, so `{% if subscriber.name %}` in a template
    # decides for real instead of always seeing the (truthy) placeholder.
    html_name = f"email/{digest.template}.html.j2"
    text_name = f"email/{digest.template}.txt.j2"
    for named in (True, False):
        per_recipient = {
            "subscriber": {"name": sentinels[0] if named else None, "email": sentinels[1]},
            "unsubscribe_url": sentinels[2],
            "preferences_url": sentinels[3],
        }
        page = _render(env, html_name, {**context, **per_recipient})
        try:
            page = inliner.inline(page)
        except (css_inline.InlineError, ValueError) as e:
            raise ConfigError([Problem(html_name, None, f"CSS could not be inlined: {e}")]) from e
        text = _render(env, text_name, {**context, **per_recipient})
        variants[named] = (_Body(page, sentinels), _Body(text, sentinels))

    # Derived from the content, not random: a preview of an edition carries the very bytes
    # the real send will. "=_" cannot occur in quoted-printable text, so it never collides.
    content = hashlib.sha256()
    for bodies in variants.values():
        for body in bodies:
            content.update(b"\0".join(body.literals))
    boundary = f"=_nb_{content.hexdigest()[:16]}"
    return PreparedEdition(
        config=config,
        digest=digest,
        period=edition.period,
        subject=subject,
        variants=variants,
        boundary=boundary,
    )


class PreparedEdition:
    """An edition rendered and CSS-inlined once; ``message`` is cheap per recipient."""

    def __init__(
        self,
        *,
        config: Config,
        digest: Digest,
        period: str,
        subject: str,
        variants: dict[bool, tuple[_Body, _Body]],
        boundary: str,
    ) -> None:
        self.subject = subject
        # Which edition this is, as receivers may see it (make_message_id): no row ids.
        self.digest = digest.name
        self.period = period
        self._config = config
        self._variants = variants
        site = config.site
        from_name, from_addr = parseaddr(site.sender)
        #: The bare address for the envelope's MAIL FROM.
        self.sender_address = from_addr
        static = [_header("From", _address(from_name, from_addr)), _header("Subject", subject)]
        if site.reply_to:
            static.append(_header("Reply-To", _address(*parseaddr(site.reply_to))))
        # One list per digest, so receivers (and filters) tell the daily from the weekly.
        list_name = _phrase(f"{site.name} {digest.name} digest")
        static.append(_header("List-Id", f"{list_name} <{digest.name}.{site.list_id}>"))
        self._head_static = "".join(static)
        # RFC 8058: with List-Unsubscribe (https), this asks receivers for one-click POSTs.
        self._head_tail = (
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
            + CRLF
            + "MIME-Version: 1.0"
            + CRLF
            + f'Content-Type: multipart/alternative; boundary="{boundary}"'
            + CRLF
            + CRLF
        ).encode("ascii")

        def part_head(subtype: str) -> bytes:
            # Each part's quoted-printable body ends with CRLF, which also serves as the
            # line break that must precede the next boundary line.
            return (
                "--"
                + boundary
                + CRLF
                + f'Content-Type: text/{subtype}; charset="utf-8"'
                + CRLF
                + "Content-Transfer-Encoding: quoted-printable"
                + CRLF
                + CRLF
            ).encode("ascii")

        self._text_open = part_head("plain")
        self._html_open = part_head("html")
        self._close = ("--" + boundary + "--" + CRLF).encode("ascii")
        self._dkim = _DkimSigner(config) if config.email.dkim else None

    def message(self, recipient: Recipient, message_id: str, now: datetime) -> bytes:
        """The whole message for ``recipient``: CRLF line endings, no line over 78 octets in
        the body, DKIM-signed when configured. Raises PermanentSendError for an address that
        cannot be written in a header (a non-ASCII local part)."""
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a Message-ID (no angle brackets, one @)")
        name = _one_line(recipient.name or "")
        address = _ascii_address(recipient.email)
        links = recipient_links(self._config, recipient.subscriber_id)
        raw = (name, address, links["unsubscribe_url"], links["preferences_url"])
        escaped = tuple(html.escape(value, quote=True) for value in raw)
        html_body, text_body = self._variants[bool(name)]
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)  # naive times in this project are UTC
        head = "".join(
            (
                self._head_static,
                _header("To", _address(name, address)),
                "Date: ",
                format_datetime(now),
                CRLF,
                "Message-ID: <",
                message_id,
                ">",
                CRLF,
                # Folded between the two URIs: long, and both must survive intact.
                "List-Unsubscribe: <",
                links["unsubscribe_url"],
                ">,",
                CRLF,
                " <",
                links["unsubscribe_mailto"],
                ">",
                CRLF,
            )
        ).encode("ascii")
        data = b"".join(
            (
                head,
                self._head_tail,
                self._text_open,
                text_body.fill_encoded(raw),
                self._html_open,
                html_body.fill_encoded(escaped),
                self._close,
            )
        )
        if self._dkim is not None:
            data = self._dkim.sign(data)
        return data


class _Body:
    """A rendered body cut at the placeholders: literal pieces (UTF-8, CRLF line endings)
    between which the recipient's values go."""

    def __init__(self, rendered: str, sentinels: list[str]) -> None:
        pattern = re.compile("(" + "|".join(map(re.escape, sentinels)) + ")")
        pieces = pattern.split(_NEWLINES.sub(CRLF, rendered))
        index = {s: i for i, s in enumerate(sentinels)}
        self.literals = [p.encode("utf-8") for p in pieces[0::2]]
        self.slots = [index[p] for p in pieces[1::2]]
        # Quoted-printable once per edition, not per recipient: each piece is encoded on its
        # own and the recipient's values are joined in between with soft line breaks
        # ("=" CRLF), which decode to nothing, so the decoded body is exactly ``fill``'s.
        self.encoded = [_qp_piece(p) for p in self.literals[:-1]]
        self.encoded.append(_quoted_printable(self.literals[-1]))

    def fill(self, values: tuple[str, ...]) -> bytes:
        encoded = [v.encode("utf-8") for v in values]
        out = [self.literals[0]]
        for slot, literal in zip(self.slots, self.literals[1:], strict=True):
            out.append(encoded[slot])
            out.append(literal)
        return b"".join(out)

    def fill_encoded(self, values: tuple[str, ...]) -> bytes:
        """``fill(values)`` as quoted-printable (CRLF-terminated), from the pieces encoded
        once: only the values are encoded here."""
        encoded = [_qp_piece(v.encode("utf-8")) for v in values]
        out = [self.encoded[0]]
        for slot, literal in zip(self.slots, self.encoded[1:], strict=True):
            if encoded[slot]:
                out += (_SOFT_BREAK, encoded[slot], _SOFT_BREAK)
            out.append(literal)
        return b"".join(out)


class _DkimSigner:
    """The DKIM key read and checked once per edition, not once per message."""

    def __init__(self, config: Config) -> None:
        settings = config.email.dkim
        assert settings is not None
        key_file = config.path(settings.private_key_file)
        problem_at = str(config.config_file or "configuration")
        try:
            # dkimpy's PEM parser expects LF line endings; a key saved on Windows has CRLF.
            key = key_file.read_bytes().replace(b"\r\n", b"\n")
            dkim.crypto.parse_pem_private_key(key)
        except OSError as e:
            raise ConfigError(
                [
                    Problem(
                        problem_at,
                        None,
                        f"email.dkim.private_key_file: cannot read {key_file}: {e.strerror}",
                    )
                ]
            ) from e
        except dkim.crypto.UnparsableKeyError as e:
            raise ConfigError(
                [
                    Problem(
                        problem_at,
                        None,
                        f"email.dkim.private_key_file: {key_file}"
                        f" is not a PEM RSA private key ({e})",
                    )
                ]
            ) from e
        self._key = key
        self._selector = settings.selector.encode("ascii")
        self._domain = settings.domain.encode("ascii")
        # Only headers every message has: Reply-To is there exactly when configured.
        self._headers = [
            h.encode("ascii") for h in DKIM_HEADERS if h != "reply-to" or config.site.reply_to
        ]

    def sign(self, message: bytes) -> bytes:
        # relaxed/relaxed: a relay that rewraps headers or trims trailing spaces must not
        # break the signature.
        signature = dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self._headers,
        )
        return signature + message


def _article_view(story: StoryView, site_url: str) -> ArticleView:
    url = _web_url(story.url)
    summary = sanitize_html(story.summary or "", base_url=url or site_url)
    return ArticleView(
        title=_one_line(story.title),
        url=url,
        summary_html=Markup(summary),
        summary_text=html_to_text(summary),
        published_at=story.published_at,
        image=_web_url(story.image),
        author=_one_line(story.author or "") or None,
        tags=story.tags,
    )


def _web_url(url: str | None) -> str | None:
    # Feeds are outside input: a `javascript:` or `data:` link must never become an href.
    if not url:
        return None
    url = url.strip()
    return url if re.match(r"(?i)https?://[^\s\"'<>]+$", url) else None


def _render_subject(env: jinja2.Environment, digest: Digest, context: dict[str, Any]) -> str:
    # A subject is a header, not HTML: never escaped, whatever the environment's default.
    source = "{% autoescape false %}" + digest.subject + "{% endautoescape %}"
    where = f"digests[{digest.name}].subject"
    try:
        subject = env.from_string(source).render(context)
    except jinja2.TemplateError as e:
        raise ConfigError([Problem(where, None, f"the subject template fails: {e}")]) from e
    subject = _one_line(subject)
    if len(subject) > MAX_SUBJECT:
        subject = subject[: MAX_SUBJECT - 1].rstrip() + "…"
    return subject or str(context["site"]["name"])


def _preheader(articles: list[ArticleView]) -> str:
    text = " · ".join(a.title for a in articles[:3])
    return text if len(text) <= MAX_PREHEADER else text[: MAX_PREHEADER - 1].rstrip() + "…"


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError([Problem(e.filename or name, e.lineno, e.message or str(e))]) from e
    except jinja2.TemplateNotFound as e:
        raise ConfigError(
            [Problem(name, None, f"template not found (looked under {_search_path(env)})")]
        ) from e
    except jinja2.TemplateError as e:
        raise ConfigError([Problem(name, _template_line(e, name), str(e))]) from e


def _template_line(error: Exception, name: str) -> int | None:
    # Jinja rewrites tracebacks so that template frames carry the template's file and line.
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.replace("\\", "/").endswith(name):
            return frame.lineno
    return None


def _search_path(env: jinja2.Environment) -> str:
    loader = env.loader
    paths = getattr(loader, "searchpath", None)
    return ", ".join(map(str, paths)) if paths else "the template loader"


def _one_line(value: str) -> str:
    """``value`` with every control character (CR, LF, tab, …) made a space: safe in a
    header and in a single line of text."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()


def _header(name: str, value: str) -> str:
    """``Name: value`` CRLF-terminated; non-ASCII as RFC 2047 encoded words, long lines folded."""
    value = _one_line(value)
    if not value.isascii():
        encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
        return f"{name}: {encoded}{CRLF}"
    return _fold(f"{name}: {value}")


def _fold(line: str, width: int = 78) -> str:
    # Fold at spaces so lines stay near 78 octets; a word longer than that stays whole
    # (lines up to 998 octets are legal, and subjects are capped well below).
    if len(line) <= width:
        return line + CRLF
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return (CRLF + " ").join(out) + CRLF


def _address(name: str, address: str) -> str:
    if not name:
        return address
    if name.isascii():
        # Always quoted: a quoted name is never read as syntax, not even as an encoded word.
        return f"{_quoted(name)} <{address}>"
    # Encoded words are a whole phrase of their own: they must not be inside quotes.
    return f"{Header(name, 'utf-8').encode(linesep=CRLF)} <{address}>"


def _phrase(text: str) -> str:
    text = _one_line(text)
    if not text.isascii():
        return Header(text, "utf-8").encode(linesep=CRLF)
    return _quoted(text)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ascii_address(address: str) -> str:
    address = _one_line(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in address for c in ' <>(),;:"'):
        raise PermanentSendError(f"{address!r} is not an email address we can write to")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise PermanentSendError(f"{address!r}: the domain is not a valid name") from e
    if not local.isascii():
        # Would need SMTPUTF8 end to end, which this sender does not negotiate.
        raise PermanentSendError(f"{address!r}: non-ASCII mailbox names are not supported")
    return f"{local}@{domain}"


@functools.lru_cache(maxsize=64)
def _domain_of(address: str) -> str:
    return _bare_address(address).rpartition("@")[2]


@functools.lru_cache(maxsize=64)
def _bare_address(address: str) -> str:
    # Cached: parsing a configured address is slow next to building a whole message.
    return parseaddr(address)[1]


_SOFT_BREAK = b"=\r\n"


def _qp_piece(piece: bytes) -> bytes:
    """Quoted-printable of a piece that more text follows on the same line: no line
    break added at its end, soft breaks CRLF like the rest."""
    if not piece:
        return b""
    return _quoted_printable(piece + b"\r\n")[:-2]


def _quoted_printable(body: bytes) -> bytes:
    # binascii keeps the input's line endings and picks CRLF for its soft breaks when the
    # first line ending it meets is CRLF: a final CRLF guarantees one exists.
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)
