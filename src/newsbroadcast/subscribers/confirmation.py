"""The double opt-in email: a signed, expiring link that turns a sign-up into a subscription.

The web request only queues it (``queue_confirmation``, a row in ``transactional_emails``,
committed with the sign-up itself); the dispatcher sends it like any other message, through
the same transport, rate limit and retry rule (dispatch/transactional.py).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

import css_inline
import jinja2
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Subscriber, TransactionalEmail
from newsbroadcast.render import i18n
from newsbroadcast.render.mime import feedback_id
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.registry import email_key

__all__ = [
    "CONFIRM",
    "confirm_url",
    "confirmation_key",
    "confirmation_message",
    "confirmation_message_id",
    "queue_confirmation",
    "replaced",
]

CONFIRM = "confirm"  # the token purpose, and the transactional email's


def confirm_url(
    config: Config, subscriber_id: int, expires_at: datetime, signed_up_at: datetime | None
) -> str:
    """The link for the sign-up made at ``signed_up_at``: its token carries that moment, so a
    later sign-up (a new moment) retires it (lifecycle.confirm)."""
    token = tokens.sign(config.site.secret, CONFIRM, subscriber_id, expires_at, signed_up_at)
    return f"{config.site.public_url.rstrip('/')}/confirm/{token}"


def confirmation_key(address: str, signed_up_at: datetime) -> str:
    """The email's identity: its purpose, the address and the sign-up it answers (a sign-up
    starts the double opt-in at ``signed_up_at``, ``Subscriber.confirmation_sent_at``)."""
    # In UTC, so the moment as given and as read back from the database give one key.
    moment = signed_up_at.astimezone(UTC) if signed_up_at.tzinfo else signed_up_at
    content = f"{CONFIRM}\n{email_key(address)}\n{moment.isoformat()}"
    return hashlib.sha256(content.encode()).hexdigest()


def queue_confirmation(session: Session, config: Config, sub: Subscriber, now: datetime) -> bool:
    """Queue the confirmation email for ``sub``'s sign-up (not committed: the caller commits
    it with the sign-up). False if that sign-up's email is queued already."""
    signed_up_at = sub.confirmation_sent_at or now
    values = {
        "key": confirmation_key(sub.email, signed_up_at),
        "purpose": CONFIRM,
        "subscriber_id": sub.id,
        "expires_at": signed_up_at + config.web.confirm_within,
        "next_attempt_at": now,
        "created_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = session.execute(
        dialect.insert(TransactionalEmail)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(TransactionalEmail.id)
    ).first()
    return inserted is not None


def replaced(sub: Subscriber, row: TransactionalEmail) -> bool:
    """True when ``row`` answers an earlier sign-up than ``sub``'s latest: that sign-up queued
    an email of its own, and this one's link would no longer confirm."""
    latest = sub.confirmation_sent_at
    return latest is not None and row.key != confirmation_key(sub.email, latest)


def confirmation_message_id(config: Config, key: str) -> str:
    """From the email's content key: every try of one email has the same Message-ID."""
    domain = parseaddr(config.site.sender)[1].rpartition("@")[2]
    return f"confirm-{key[:32]}@{domain}"


def confirmation_message(
    env: jinja2.Environment,
    config: Config,
    sub: Subscriber,
    now: datetime,
    expires_at: datetime,
    message_id: str,
) -> bytes:
    """The RFC 5322 bytes of the confirmation email for ``sub``, its link valid until
    ``expires_at``."""
    context = {
        "site": {"name": config.site.name, "url": config.site.url},
        "name": sub.name,
        "confirm_url": confirm_url(config, sub.id, expires_at, sub.confirmation_sent_at),
        "valid_for_hours": int(config.web.confirm_within.total_seconds() // 3600),
    }
    # In the language the person chose when signing up (else English: see render.i18n).
    with i18n.language(env, sub.language) as used:
        context["language"] = used
        html = env.get_template("email/confirm.html.j2").render(context)
        text_template = env.get_template("email/confirm.txt.j2")
        text = text_template.render(context)
        # The subject is written in the text template (`{% set subject %}`), so it is
        # translated with the body; a site's older template without it gets the English one.
        subject = str(getattr(text_template.make_module(context), "subject", "")).strip()
    html = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False).inline(html)
    subject = " ".join(subject.split()) or f"Please confirm your subscription to {config.site.name}"
    from_name, from_addr = parseaddr(config.site.sender)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(from_name, addr_spec=from_addr)
    msg["To"] = sub.email
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{message_id}>"
    # Auto-generated (RFC 3834: no auto-replies to it) but not bulk: one person asked for it.
    msg["Auto-Submitted"] = "auto-generated"
    feedback = feedback_id(config, CONFIRM, "confirmation")
    if feedback is not None:
        msg["Feedback-ID"] = feedback
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    # After the body: set_content drops any Content-* header set before it.
    msg["Content-Language"] = context["language"]
    return msg.as_bytes(policy=SMTP)
