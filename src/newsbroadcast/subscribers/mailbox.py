"""The mailbox of replies: bounces, complaints and unsubscribe requests to
``site.unsubscribe_mailto``, read from a Maildir, an IMAP folder or a POP3 account
(``bounces.mailbox``; ``subscribers/inboxes.py`` speaks the protocols).

Each new message is read once:

- an ARF complaint (RFC 5965: someone pressed "this is spam") suppresses the address at
  once and unsubscribes its subscriber;
- a DSN's failures are judged by ``bounces.classify``, as SMTP replies are: bad addresses
  (5.1.x, 5.2.1) and other permanent failures suppress the address, soft ones (4.x.x, 5.2.2
  mailbox full) are counted, policy refusals (5.7.x, the sender is blocked) are not held
  against the address;
- a mailto unsubscribe with a valid token unsubscribes its subscriber.

Whose message it was comes first from the message itself: a bounce sent to a VERP return
path (``bounces+<token>@…``, ``subscribers/verp.py``) or a complaint quoting our
Message-ID names its delivery, so a forwarded address or a redacted report still finds its
subscriber; only then is the report's recipient used. A message that cannot be handled is
left in the mailbox, marked where the mailbox can (``inboxes.py``), and the others go on; a
database failure stops the pass with the message untouched, to be read again.
"""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from email.message import Message
from email.utils import getaddresses

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Delivery, Subscriber, TransactionalEmail
from newsbroadcast.subscribers import tokens, verp
from newsbroadcast.subscribers.bounces import (
    Bounce,
    BounceKind,
    Complaint,
    parse_arf,
    parse_dsn,
    unsubscribe_token,
)
from newsbroadcast.subscribers.inboxes import open_inbox
from newsbroadcast.subscribers.lifecycle import find_by_email, record_bounce, unsubscribe
from newsbroadcast.subscribers.suppressions import suppress

__all__ = ["MailboxReport", "process_mailbox"]

log = logging.getLogger("newsbroadcast.mailbox")

# Where a bounce's own envelope recipient (our VERP address) is written by the servers that
# delivered it into the mailbox, most specific first.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
# The bounce that says most about the address, when a report names several failures.
_SEVERITY = (BounceKind.bad_address, BounceKind.permanent, BounceKind.soft, BounceKind.policy)


@dataclass
class MailboxReport:
    read: int = 0
    unsubscribed: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    policy_refusals: int = 0  # the sender was refused: nothing held against the address
    complaints: int = 0
    ignored: int = 0
    unreadable: int = 0  # left in the mailbox, marked where it can be
    problems: list[str] = field(default_factory=list)

    def add(self, other: MailboxReport) -> None:
        for f in fields(self):
            if f.name != "read":
                mine, theirs = getattr(self, f.name), getattr(other, f.name)
                setattr(self, f.name, mine + theirs)


def process_mailbox(
    config: Config, sessions: sessionmaker[Session], clock: Callable[[], datetime]
) -> MailboxReport:
    """Handle every unread message of the configured mailbox; commits after each message.
    Raises MailboxError when the mailbox cannot be opened or read."""
    report = MailboxReport()
    settings = config.bounce_settings
    if settings is None or settings.mailbox is None:
        return report
    with open_inbox(config, settings.mailbox) as inbox:
        for key, data in inbox.unread():
            report.read += 1
            outcome = MailboxReport()
            try:
                message = email.message_from_bytes(data, policy=email.policy.default)
                with sessions() as session:
                    _handle(session, config, message, clock(), outcome)
                    session.commit()
            except SQLAlchemyError:
                raise  # the database's trouble: the message stays as it is, read next time
            except Exception as e:  # one message's trouble never stops the others
                report.unreadable += 1
                report.problems.append(f"{inbox.where}: message {key} could not be handled: {e}")
                log.warning("%s: message %s left in place: %s", inbox.where, key, e, exc_info=e)
                inbox.unreadable(key)
                continue
            report.add(outcome)
            inbox.handled(key)
    if report.read:
        log.info(
            "mailbox: read %d, unsubscribed %d, complaints %d, hard bounces %d, "
            "soft bounces %d, ignored %d, unreadable %d",
            report.read,
            report.unsubscribed,
            report.complaints,
            report.hard_bounces,
            report.soft_bounces,
            report.ignored,
            report.unreadable,
        )
    return report


def _handle(
    session: Session,
    config: Config,
    message: Message,
    now: datetime,
    report: MailboxReport,
) -> None:
    complaint = parse_arf(message)
    if complaint is not None:
        _complaint(session, config, message, complaint, now, report)
        return
    bounces = [b for b in parse_dsn(message) if b.is_failure]
    if bounces:
        named = _verp_address(session, config, message)
        if named is not None:
            # Our message had one recipient: the report is about that delivery, whatever
            # address (a forward, a rewrite) the report itself names.
            worst = min(bounces, key=lambda b: _SEVERITY.index(b.kind))
            bounces = [worst]
        for b in bounces:
            _bounce(session, config, named or b.recipient, b, now, report)
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


def _bounce(
    session: Session,
    config: Config,
    address: str,
    bounce: Bounce,
    now: datetime,
    report: MailboxReport,
) -> None:
    kind = bounce.kind
    if kind == BounceKind.policy:
        report.policy_refusals += 1
        log.warning("policy refusal for %s: %s %s", address, bounce.status, bounce.diagnostic)
        return
    hard = kind != BounceKind.soft
    reason = f"{bounce.status} {bounce.diagnostic}".strip()
    record_bounce(session, config, address, hard, reason, now)
    if hard:
        report.hard_bounces += 1
    else:
        report.soft_bounces += 1


def _complaint(
    session: Session,
    config: Config,
    message: Message,
    complaint: Complaint,
    now: datetime,
    report: MailboxReport,
) -> None:
    if not complaint.is_complaint:
        report.ignored += 1
        log.info("feedback report of type %r: nothing to do", complaint.feedback_type)
        return
    address = (
        _address_of(session, verp.message_id_for(config, complaint.mail_from or ""))
        or _address_of(session, complaint.message_id)
        or _verp_address(session, config, message)
    )
    addresses = [address] if address else list(complaint.recipients)
    if not addresses:
        report.ignored += 1
        report.problems.append(
            f"complaint ({complaint.feedback_type}) about message "
            f"{complaint.message_id or '(no Message-ID)'}: no address and no message of ours"
        )
        return
    for a in addresses:
        # Someone who calls our mail spam must never get it again: suppressed at once, not
        # counted, and their subscription ends.
        suppress(session, a, f"complaint: {complaint.feedback_type}", now)
        sub = find_by_email(session, a)
        if sub is not None:
            unsubscribe(session, sub.id, now)
        report.complaints += 1
        log.info("complaint (%s) about mail to %s", complaint.feedback_type, a)


def _verp_address(session: Session, config: Config, message: Message) -> str | None:
    """The subscriber's address of the delivery a VERP return path in ``message`` names."""
    if not config.email.verp:
        return None
    values = [str(v) for name in _RECIPIENT_HEADERS for v in message.get_all(name, [])]
    for _, address in getaddresses(values):
        found = _address_of(session, verp.message_id_for(config, address))
        if found is not None:
            return found
    return None


def _address_of(session: Session, message_id: str | None) -> str | None:
    """The address a message of ours with this Message-ID went to (a digest's delivery or a
    confirmation), if it is still known."""
    if not message_id:
        return None
    for table in (Delivery, TransactionalEmail):
        found = session.scalar(
            select(Subscriber.email)
            .join(table, table.subscriber_id == Subscriber.id)
            .where(table.message_id == message_id)
            .limit(1)
        )
        if found is not None:
            return found
    return None
