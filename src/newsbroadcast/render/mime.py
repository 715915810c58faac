"""One RFC 5322 message per recipient, from an edition rendered once.

``PreparedEdition.message`` only joins precomputed pieces with a recipient's name, address
and links, encodes the parts as quoted-printable and writes the headers: no template runs
per recipient. Also the Message-ID (from content, never row ids) and the signed links.
Pure: no database, no network, no clock (``now`` is an argument).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import html
import re
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, parseaddr

from newsbroadcast.config.model import Config, Digest
from newsbroadcast.errors import PermanentSendError
from newsbroadcast.render.dkim import DkimSigner
from newsbroadcast.render.views import Recipient
from newsbroadcast.subscribers import tokens

CRLF = "\r\n"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_SPACES = re.compile(r"[ \t]{2,}")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# Printable ASCII but the specials _ascii_address refuses (space included): the address as
# given is the address written, and a last "@" splits it as rpartition does.
_PLAIN_ADDRESS = re.compile(r"[!#-\'*-+\--9=?-~]+@[!#-\'*-+\--9=?A-~]+")
# What quoted-printable (binascii, a piece alone on its line) leaves as it is: printable
# ASCII but "=", at most 75 characters (no soft break), not ending in a space, not a lone ".".
_QP_PLAIN = re.compile(r"(?!\.\Z)[ !-<>-~]{0,74}[!-<>-~]")
_HTML_SPECIAL = re.compile(r"[&<>\"']")
_SECOND = timedelta(seconds=1)
# Order matters: it is the order of the values handed to Body.fill.
SLOTS = ("name", "email", "unsubscribe_url", "preferences_url")


def make_message_id(config: Config, digest: str, period: str, address: str) -> str:
    """``<hex>@<sender domain>``, without angle brackets: a keyed hash (the site's secret)
    of the site (``list_id``), the digest, the period and the address (letter case
    ignored, as subscribers are). Row ids are left out on purpose: they start again in a
    rebuilt database, and a receiver that drops Message-IDs it knows would drop a new
    edition. The same for the same edition and address, so a message resent after a crash
    is recognisably the same message; the key keeps outsiders from forging our ids."""
    mac = _edition_mac(config.site.secret, config.site.list_id, digest, period).copy()
    mac.update(address.lower().encode())
    return f"{mac.hexdigest()[:32]}@{_domain_of(config.site.sender)}"


@functools.lru_cache(maxsize=64)
def _edition_mac(secret: str, list_id: str, digest: str, period: str) -> hmac.HMAC:
    """The Message-ID's HMAC with the key and the edition's part of the seed fed in, once
    per edition rather than per message (callers ``copy()`` it; threads may share it)."""
    seed = "\0".join(("message-id", list_id, digest, period, ""))
    return hmac.new(secret.encode(), seed.encode(), hashlib.sha256)


def recipient_links(config: Config, subscriber_id: int) -> dict[str, str]:
    """The subscriber's signed links: ``unsubscribe_url``, ``preferences_url`` and
    ``unsubscribe_mailto``. They never expire: an old email's unsubscribe link must work."""
    unsubscribe, preferences, mailto = _SiteLinks(config).links(subscriber_id)
    return {
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
        "unsubscribe_mailto": mailto,
    }


class _SiteLinks:
    """What every subscriber's links share on a site, worked out once: a prepared edition
    keeps one, so a message pays for the two MACs and the joins only."""

    def __init__(self, config: Config) -> None:
        site = config.site
        base = site.public_url.rstrip("/")
        self._unsubscribe_at = base + "/unsubscribe/"
        self._preferences_at = base + "/preferences/"
        self._mailto = f"mailto:{_bare_address(site.unsubscribe_mailto)}?subject=unsubscribe%20"
        self._sign_unsubscribe = tokens.signer(site.secret, "unsubscribe")
        self._sign_preferences = tokens.signer(site.secret, "preferences")

    def links(self, subscriber_id: int) -> tuple[str, str, str]:
        """The unsubscribe URL, the preferences URL and the unsubscribe mailto: URI."""
        unsubscribe = self._sign_unsubscribe(subscriber_id)
        return (
            self._unsubscribe_at + unsubscribe,
            self._preferences_at + self._sign_preferences(subscriber_id),
            self._mailto + unsubscribe,
        )


def feedback_id(config: Config, digest: str, kind: str) -> str | None:
    """``email.feedback_id`` with its placeholders filled (``{digest}``, ``{kind}``,
    ``{site}``), or None when it is not set. Receivers (Gmail's Postmaster Tools) report
    complaint rates per value, so it names a kind of mail, never one message or person."""
    template = config.email.feedback_id
    if template is None:
        return None
    return template.format(digest=digest, kind=kind, site=config.site.list_id)


class PreparedEdition:
    """An edition rendered and CSS-inlined once; ``message`` is cheap per recipient."""

    def __init__(
        self,
        *,
        config: Config,
        digest: Digest,
        period: str,
        subject: str,
        variants: dict[bool, tuple[Body, Body]],
        boundary: str,
    ) -> None:
        self.subject = subject
        # Which edition this is, as receivers may see it (make_message_id): no row ids.
        self.digest = digest.name
        self.period = period
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
        # Mail to many, sent by a machine (RFC 3834 §5, RFC 2076): vacation responders and
        # other auto-replies must not answer it, and receivers may treat it as bulk.
        static.append("Precedence: bulk" + CRLF)
        static.append("Auto-Submitted: auto-generated" + CRLF)
        feedback = feedback_id(config, digest.name, "digest")
        if feedback is not None:
            static.append(_header("Feedback-ID", feedback))
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
        self._dkim = DkimSigner(config) if config.email.dkim else None
        self._links = _SiteLinks(config)
        # The last Date header made and the UTC second it stands for (start, text): swapped
        # as one tuple, so threads sharing the edition need no lock.
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        self._date = (epoch, format_datetime(epoch))

    def message(self, recipient: Recipient, message_id: str, now: datetime) -> bytes:
        """The whole message for ``recipient``: CRLF line endings, no line over 78 octets in
        the body, DKIM-signed when configured. Raises PermanentSendError for an address that
        cannot be written in a header (a non-ASCII local part)."""
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a Message-ID (no angle brackets, one @)")
        name = one_line(recipient.name or "")
        address = _ascii_address(recipient.email)
        unsubscribe_url, preferences_url, mailto = self._links.links(recipient.subscriber_id)
        raw = (name, address, unsubscribe_url, preferences_url)
        text_values = tuple(map(_qp_value, raw))
        # Most values have nothing to escape (_escape hands them back): encode those once.
        html_values = tuple(
            encoded if value is plain else _qp_value(value)
            for plain, value, encoded in zip(raw, map(_escape, raw), text_values, strict=True)
        )
        html_body, text_body = self._variants[bool(name)]
        head = "".join(
            (
                self._head_static,
                _header("To", _address(name, address)),
                "Date: ",
                self._date_header(now),
                CRLF,
                "Message-ID: <",
                message_id,
                ">",
                CRLF,
                # Folded between the two URIs: long, and both must survive intact.
                "List-Unsubscribe: <",
                unsubscribe_url,
                ">,",
                CRLF,
                " <",
                mailto,
                ">",
                CRLF,
            )
        ).encode("ascii")
        data = b"".join(
            (
                head,
                self._head_tail,
                self._text_open,
                text_body.join_encoded(text_values),
                self._html_open,
                html_body.join_encoded(html_values),
                self._close,
            )
        )
        if self._dkim is not None:
            data = self._dkim.sign(data)
        return data

    def _date_header(self, now: datetime) -> str:
        """``format_datetime(now)``, made once a second: it cost a quarter of a message, and
        the messages of a batch are stamped within a few seconds. Naive ``now`` is UTC."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)  # naive times in this project are UTC
        start, text = self._date
        # Only for UTC (the clock's): another zone's offset would be written instead.
        if now.tzinfo is UTC and start <= now and now - start < _SECOND:
            return text
        text = format_datetime(now)
        if now.tzinfo is UTC:
            self._date = (now.replace(microsecond=0), text)
        return text


class Body:
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
        self.encoded.append(quoted_printable(self.literals[-1]))
        self._after = list(zip(self.slots, self.encoded[1:], strict=True))

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
        return self.join_encoded(tuple(map(_qp_value, values)))

    def join_encoded(self, encoded: tuple[bytes, ...]) -> bytes:
        """``fill_encoded`` from values already encoded (``_qp_value``)."""
        out = [self.encoded[0]]
        for slot, literal in self._after:
            if encoded[slot]:
                out += (_SOFT_BREAK, encoded[slot], _SOFT_BREAK)
            out.append(literal)
        return b"".join(out)


def one_line(value: str) -> str:
    """``value`` with every control character (CR, LF, tab, …) made a space: safe in a
    header and in a single line of text."""
    # Printable means none of _CONTROL (all Cc, Zl or Zp) and no tab: only a strip is left.
    if value.isprintable() and "  " not in value:
        return value.strip()
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()


def _header(name: str, value: str) -> str:
    """``Name: value`` CRLF-terminated; non-ASCII as RFC 2047 encoded words, long lines folded."""
    value = one_line(value)
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
    text = one_line(text)
    if not text.isascii():
        return Header(text, "utf-8").encode(linesep=CRLF)
    return _quoted(text)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ascii_address(address: str) -> str:
    if _PLAIN_ADDRESS.fullmatch(address):
        return address  # what the checks below would give back, at a tenth of the cost
    address = one_line(address)
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


def _escape(value: str) -> str:
    """``html.escape(value)``; ``value`` itself when it has nothing to escape, as most do."""
    return html.escape(value, quote=True) if _HTML_SPECIAL.search(value) else value


def _qp_value(value: str) -> bytes:
    """``_qp_piece`` of ``value`` in UTF-8, without binascii for the common value (an
    address, one of our URLs, a short ASCII name) that it would leave as it is."""
    if _QP_PLAIN.fullmatch(value):
        return value.encode("ascii")
    return _qp_piece(value.encode("utf-8"))


def _qp_piece(piece: bytes) -> bytes:
    """Quoted-printable of a piece that more text follows on the same line: no line
    break added at its end, soft breaks CRLF like the rest."""
    if not piece:
        return b""
    return quoted_printable(piece + b"\r\n")[:-2]


def quoted_printable(body: bytes) -> bytes:
    # binascii keeps the input's line endings and picks CRLF for its soft breaks when the
    # first line ending it meets is CRLF: a final CRLF guarantees one exists.
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)
