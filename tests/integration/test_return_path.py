"""The envelope sender on the wire (aiosmtpd) and what comes back to it: with
``email.return_path`` every MAIL FROM is it; with ``email.verp`` each delivery has its own,
and a bounce to it or a complaint quoting our Message-ID finds the subscriber even when the
report names another address, or none. SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import mailbox
from pathlib import Path

from sqlalchemy import Engine, select

from newsbroadcast.config.model import Config
from newsbroadcast.db import sessions
from newsbroadcast.db.models import Delivery, Subscriber, SubscriberStatus
from newsbroadcast.subscribers.mailbox import process_mailbox
from newsbroadcast.subscribers.suppressions import is_suppressed
from newsbroadcast.subscribers.verp import message_id_for
from tests.conftest import ROOT
from tests.integration.delivery_site import (
    add_subscribers,
    config_of,
    plan_edition,
    service_for,
    write_site,
)
from tests.site import MORNING
from tests.smtp_sink import ReceivedMessage, SmtpSink

BOUNCES = ROOT / "tests" / "fixtures" / "bounces"
RETURN_PATH = "bounces@newsroom.example.org"


def send_edition(engine: Engine, tmp_path: Path, sink: SmtpSink, **email_section: object) -> Config:
    path = write_site(
        tmp_path,
        engine.url.render_as_string(False),
        sink.port,
        email={"feedback_id": "{digest}:{kind}:{site}", **email_section},
    )
    add_subscribers(engine, 2)  # r0@example.org, r1@example.org
    service = service_for(path, engine)
    plan_edition(service)
    report = service.dispatch()
    assert report.sent == 2, report
    return config_of(path)


def by_recipient(sink: SmtpSink) -> dict[str, ReceivedMessage]:
    return {m.recipients[0]: m for m in sink.messages}


def test_mail_from_is_the_return_path_and_the_digest_is_marked_bulk(
    engine: Engine, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        send_edition(engine, tmp_path, sink, return_path=RETURN_PATH)
    for received in sink.messages:
        assert received.sender == RETURN_PATH
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["From"].addresses[0].addr_spec == "digest@newsroom.example.org"
        assert message["Precedence"] == "bulk"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Feedback-ID"] == "daily:digest:digest.newsroom.example.org"


def test_a_bounce_to_a_verp_address_finds_its_subscriber_behind_a_forward(
    engine: Engine, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        config = send_edition(engine, tmp_path, sink, return_path=RETURN_PATH, verp=True)
    sent = by_recipient(sink)
    verp = sent["r0@example.org"].sender
    assert verp.startswith("bounces+") and verp != sent["r1@example.org"].sender
    with sessions(engine)() as session:
        stored = session.scalar(
            select(Delivery.message_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == "r0@example.org")
        )
    assert message_id_for(config, verp) == stored  # the token names the delivery

    # r0's mailbox forwards to an old address that no longer exists: the report names only
    # that address. The VERP address says whose delivery it was.
    template = (BOUNCES / "verp_forwarded.template").read_text(encoding="utf-8")
    dsn = template.format(
        verp=verp, forwarded="old.r0@gone.example", to="r0@example.org", mid=stored
    )
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(dsn.encode())
    config = config.model_copy(update={"bounces": _maildir("bounces"), "mailbox": None})
    report = process_mailbox(config, sessions(engine), lambda: MORNING)
    assert (report.read, report.hard_bounces) == (1, 1)
    with sessions(engine)() as session:
        status = {s.email: s.status for s in session.scalars(select(Subscriber))}
        assert status == {
            "r0@example.org": SubscriberStatus.bounced,
            "r1@example.org": SubscriberStatus.active,
        }
        assert is_suppressed(session, "r0@example.org")
        assert not is_suppressed(session, "old.r0@gone.example")


def test_a_redacted_complaint_finds_its_subscriber_by_our_message_id(
    engine: Engine, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        config = send_edition(engine, tmp_path, sink, return_path=RETURN_PATH, verp=True)
    sent = by_recipient(sink)
    quoted = email.message_from_bytes(sent["r1@example.org"].data, policy=email.policy.default)
    template = (BOUNCES / "arf_redacted.template").read_text(encoding="utf-8")
    # One report quotes our Message-ID; the other only carries the VERP envelope sender.
    by_message_id = template.format(mail_from="", mid=str(quoted["Message-ID"]).strip("<>"))
    by_verp = template.format(mail_from=sent["r0@example.org"].sender, mid="elsewhere@x.example")
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(by_message_id.encode())
    box.add(by_verp.encode())
    config = config.model_copy(update={"bounces": _maildir("bounces"), "mailbox": None})
    report = process_mailbox(config, sessions(engine), lambda: MORNING)
    assert (report.read, report.complaints, report.ignored) == (2, 2, 0)
    with sessions(engine)() as session:
        for address in ("r0@example.org", "r1@example.org"):
            sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
            assert sub is not None and sub.status == SubscriberStatus.unsubscribed
            assert is_suppressed(session, address)


def _maildir(path: str) -> object:
    from newsbroadcast.config.model import Bounces, MaildirMailbox

    return Bounces(mailbox=MaildirMailbox(kind="maildir", path=Path(path)))
