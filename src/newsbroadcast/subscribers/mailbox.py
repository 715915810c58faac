"""The mailbox of replies: unsubscribe requests to ``site.unsubscribe_mailto`` and bounces.

Each new message in the Maildir is read once: a mailto unsubscribe with a valid token
unsubscribes its subscriber; a DSN's failures are judged by ``bounces.classify``, as SMTP
replies are: bad addresses (5.1.x, 5.2.1) and other permanent failures suppress the address,
soft ones (4.x.x, 5.2.2 mailbox full) are counted, policy refusals (5.7.x, the sender is
blocked) are not held against the address. Read messages are flagged Seen (moved to
``cur/``), never deleted, so a person can still look at them; a second pass does nothing.
"""

from __future__ import annotations

import email
import email.policy
import logging
import mailbox as stdlib_mailbox
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import Config
from newsbroadcast.errors import MailboxError
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.bounces import BounceKind, parse_dsn, unsubscribe_token
from newsbroadcast.subscribers.lifecycle import record_bounce, unsubscribe

__all__ = ["MailboxReport", "process_mailbox"]

log = logging.getLogger("newsbroadcast.mailbox")


@dataclass
class MailboxReport:
    read: int = 0
    unsubscribed: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    policy_refusals: int = 0  # the sender was refused: nothing held against the address
    ignored: int = 0
    problems: list[str] = field(default_factory=list)


def process_mailbox(
    config: Config, sessions: sessionmaker[Session], clock: Callable[[], datetime]
) -> MailboxReport:
    """Handle every unread message of the configured Maildir; commits after each message."""
    report = MailboxReport()
    if config.mailbox is None:
        return report
    path = config.path(config.mailbox.maildir)
    try:
        box = stdlib_mailbox.Maildir(path, factory=None, create=True)
        keys = sorted(box.keys())
    except OSError as e:
        raise MailboxError(f"cannot read the Maildir {path}: {e.strerror or e}") from e
    for key in keys:
        try:
            stored = box.get_message(key)
        except (KeyError, OSError):
            continue  # taken by another reader meanwhile
        if "S" in stored.get_flags():
            continue
        message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        report.read += 1
        with sessions() as session:
            _handle(session, config, message, clock(), report)
            session.commit()
        stored.set_subdir("cur")
        stored.add_flag("S")
        box[key] = stored
    if report.read:
        log.info(
            "mailbox: read %d, unsubscribed %d, hard bounces %d, soft bounces %d, ignored %d",
            report.read,
            report.unsubscribed,
            report.hard_bounces,
            report.soft_bounces,
            report.ignored,
        )
    return report


def _handle(
    session: Session,
    config: Config,
    message: email.message.Message,
    now: datetime,
    report: MailboxReport,
) -> None:
    bounces = [b for b in parse_dsn(message) if b.is_failure]
    if bounces:
        for b in bounces:
            kind = b.kind
            if kind == BounceKind.policy:
                report.policy_refusals += 1
                log.warning("policy refusal for %s: %s %s", b.recipient, b.status, b.diagnostic)
                continue
            hard = kind != BounceKind.soft
            reason = f"{b.status} {b.diagnostic}".strip()
            record_bounce(session, config, b.recipient, hard, reason, now)
            if hard:
                report.hard_bounces += 1
            else:
                report.soft_bounces += 1
        return
    token = unsubscribe_token(message)
    if token is None:
        report.ignored += 1
        return
    try:
        subscriber_id = tokens.verify(config.site.secrets, "unsubscribe", token, now)
    except tokens.InvalidToken as e:
        report.ignored += 1
        report.problems.append(f"unsubscribe request with a bad token: {e}")
        return
    if unsubscribe(session, subscriber_id, now) is not None:
        report.unsubscribed += 1
        log.info("subscriber %s unsubscribed (mailto)", subscriber_id)
    else:
        report.ignored += 1
