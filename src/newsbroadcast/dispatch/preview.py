"""`newsbroadcast preview DIGEST`: the next edition exactly as a subscriber would get it.

The stories are chosen by the planner's own query (``edition_stories``), rendered by the
same ``prepare_edition`` and written by the same ``PreparedEdition.message`` the dispatcher
uses, for that subscriber's language and name, so the preview's bytes are the sent bytes
except for what differs per send: ``Date`` and ``Message-ID`` (and the edition id, guessed
as the next one). Nothing is written to the database and nothing is sent, except by
``send_test``, which sends one copy marked ``[TEST]`` to the address given.
"""

from __future__ import annotations

import email
import email.policy
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

import jinja2
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Edition, Subscriber, SubscriberStatus
from newsbroadcast.errors import InputError
from newsbroadcast.planning.editions import edition_stories
from newsbroadcast.planning.schedule import due_period, period_key
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.mime import make_message_id
from newsbroadcast.render.views import EditionView, Recipient, story_view
from newsbroadcast.subscribers.registry import email_key
from newsbroadcast.transports import Envelope, Transport

SAMPLE_READER = "reader@example.org"
PER_SEND_HEADERS = ("Date", "Message-ID")


@dataclass(frozen=True)
class DigestPreview:
    digest: str
    edition_id: int  # the id the edition will most likely get
    period: str
    recipient: Recipient
    language: str
    stories: int
    data: bytes  # the whole message, as the transport would get it

    def parsed(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def headers(self) -> str:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
        return head.replace("\r\n", "\n") + "\n"

    def html(self) -> str:
        part = self.parsed().get_body(("html",))
        return part.get_content() if part is not None else ""

    def text(self) -> str:
        part = self.parsed().get_body(("plain",))
        return part.get_content() if part is not None else ""

    def write(self, folder: Path) -> list[Path]:
        """``message.eml`` (open it in a mail client), ``body.html``, ``body.txt`` and
        ``headers.txt``."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "message.eml": self.data,
            "body.html": self.html().encode("utf-8"),
            "body.txt": self.text().encode("utf-8"),
            "headers.txt": self.headers().encode("utf-8"),
        }
        written = []
        for name, data in files.items():
            (folder / name).write_bytes(data)
            written.append(folder / name)
        return written


def without_per_send_headers(data: bytes) -> bytes:
    """``data`` without its Date and Message-ID header lines: what a preview and a real
    send of the same edition to the same subscriber have in common, byte for byte."""
    head, sep, body = data.partition(b"\r\n\r\n")
    kept = []
    skipping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].decode("ascii", "replace").strip().lower()
        skipping = name in {h.lower() for h in PER_SEND_HEADERS}
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + sep + body


def preview_digest(
    config: Config,
    session: Session,
    env: jinja2.Environment,
    digest_name: str,
    now: datetime,
    subscriber: str | None = None,
    subject_prefix: str = "",
) -> DigestPreview:
    """The next edition of ``digest_name`` for ``subscriber`` (an address; default: the
    first active subscriber, else a sample reader). Reads the database, writes nothing.
    Raises InputError for an unknown digest or subscriber, or when nothing is new."""
    try:
        digest = config.digest(digest_name)
    except KeyError:
        known = ", ".join(d.name for d in config.digests) or "none"
        raise InputError(f"no digest named {digest_name!r} (configured: {known})") from None
    stories = edition_stories(session, digest, now)
    if not stories:
        raise InputError(
            f"digest {digest.name}: no new articles since its last edition; "
            "the next edition would not be made (poll the sources with `run --once` first?)"
        )
    edition_id = (session.scalar(select(func.max(Edition.id))) or 0) + 1
    period = due_period(digest, now) or _next_period(digest, now)
    recipient, language = _recipient(config, session, subscriber)
    view = EditionView(edition_id, digest.name, period, now, [story_view(a) for a in stories])
    prepared = prepare_edition(env, config, digest, view, language, subject_prefix)
    message_id = make_message_id(config, digest.name, period, recipient.email)
    data = prepared.message(recipient, message_id, now)
    return DigestPreview(digest.name, edition_id, period, recipient, language, len(stories), data)


def send_test(
    config: Config,
    session: Session,
    env: jinja2.Environment,
    transport: Transport,
    digest_name: str,
    address: str,
    now: datetime,
    subscriber: str | None = None,
) -> str:
    """Send one copy of the next edition, subject marked ``[TEST]``, to ``address``
    through ``transport``. Its links belong to no subscriber (id 0), so clicking
    "unsubscribe" in a test copy unsubscribes nobody. Returns the server's reply."""
    preview = preview_digest(config, session, env, digest_name, now, subscriber, "[TEST] ")
    recipient = Recipient(0, address, preview.recipient.name)
    prepared = prepare_edition(
        env,
        config,
        config.digest(digest_name),
        EditionView(
            preview.edition_id,
            preview.digest,
            preview.period,
            now,
            [story_view(a) for a in edition_stories(session, config.digest(digest_name), now)],
        ),
        preview.language,
        "[TEST] ",
    )
    domain = parseaddr(config.site.sender)[1].rpartition("@")[2]
    message_id = f"test-{secrets.token_hex(8)}@{domain}"
    data = prepared.message(recipient, message_id, now)
    with transport:
        return transport.send(Envelope(prepared.sender_address, address, data, message_id))


def _next_period(digest: object, now: datetime) -> str:
    from newsbroadcast.config.model import Digest

    assert isinstance(digest, Digest)
    fire = digest.trigger().get_next_fire_time(None, now)
    return period_key(fire) if fire is not None else "preview"


def _recipient(config: Config, session: Session, address: str | None) -> tuple[Recipient, str]:
    if address is not None:
        key = email_key(address)
        sub = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
        if sub is None:
            raise InputError(f"no subscriber with the address {address!r}")
    else:
        sub = session.scalar(
            select(Subscriber)
            .where(Subscriber.status == SubscriberStatus.active)
            .order_by(Subscriber.id)
            .limit(1)
        )
    if sub is None:
        return Recipient(0, SAMPLE_READER, None), config.site.language
    return Recipient(sub.id, sub.email, sub.name), sub.language or config.site.language
