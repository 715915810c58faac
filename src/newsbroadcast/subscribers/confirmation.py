"""The double opt-in email: a signed, expiring link that turns a sign-up into a subscription."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

import css_inline
import jinja2

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Subscriber
from newsbroadcast.subscribers import tokens
from newsbroadcast.transports import make_transport
from newsbroadcast.transports.base import Envelope

__all__ = ["CONFIRM", "confirmation_message", "confirm_url", "send_confirmation"]

CONFIRM = "confirm"  # the token purpose
log = logging.getLogger("newsbroadcast.web")


def confirm_url(config: Config, subscriber_id: int, now: datetime) -> str:
    token = tokens.sign(config.site.secret, CONFIRM, subscriber_id, now + config.web.confirm_within)
    return f"{config.site.public_url.rstrip('/')}/confirm/{token}"


def confirmation_message(
    env: jinja2.Environment, config: Config, sub: Subscriber, now: datetime
) -> tuple[str, bytes]:
    """``(message_id, RFC 5322 bytes)`` of the confirmation email for ``sub``."""
    context = {
        "site": {"name": config.site.name, "url": config.site.url},
        "name": sub.name,
        "confirm_url": confirm_url(config, sub.id, now),
        "valid_for_hours": int(config.web.confirm_within.total_seconds() // 3600),
    }
    html = env.get_template("email/confirm.html.j2").render(context)
    html = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False).inline(html)
    text = env.get_template("email/confirm.txt.j2").render(context)
    from_name, from_addr = parseaddr(config.site.sender)
    domain = from_addr.rpartition("@")[2]
    message_id = f"confirm-{sub.id}.{secrets.token_hex(8)}@{domain}"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(from_name, addr_spec=from_addr)
    msg["To"] = sub.email
    msg["Subject"] = f"Please confirm your subscription to {config.site.name}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{message_id}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return message_id, msg.as_bytes(policy=SMTP)


def send_confirmation(
    env: jinja2.Environment, config: Config, sub: Subscriber, now: datetime
) -> None:
    """Send it now through the configured transport; raises DeliveryError on failure."""
    message_id, data = confirmation_message(env, config, sub, now)
    sender = parseaddr(config.site.sender)[1]
    with make_transport(config) as transport:
        transport.send(Envelope(sender, sub.email, data, message_id))
    log.info("confirmation sent to subscriber %s", sub.id)
