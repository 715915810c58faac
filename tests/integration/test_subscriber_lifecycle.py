"""The subscriber lifecycle in the database: preferences at fan-out, the mailbox (mailto
unsubscribes and bounces), the suppression list, data export and erase. SQLite and PostgreSQL."""

from __future__ import annotations

import mailbox
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from newsbroadcast import db
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import (
    Article,
    Delivery,
    Edition,
    EditionArticle,
    ErasedDeliveries,
    SendStatus,
    Subscriber,
    SubscriberStatus,
)
from newsbroadcast.errors import SuppressedAddress
from newsbroadcast.planning.editions import fan_out
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.lifecycle import (
    Preferences,
    SignupRequest,
    erase,
    export_data,
    find_by_email,
    set_preferences,
    signup,
)
from newsbroadcast.subscribers.mailbox import process_mailbox
from newsbroadcast.subscribers.registry import add_subscriber, import_csv
from newsbroadcast.subscribers.suppressions import is_suppressed, suppress
from tests.conftest import ROOT
from tests.site import SECRET, make_config

NOW = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
BOUNCES = ROOT / "tests" / "fixtures" / "bounces"


def config(tmp_path: Path, **sections: object) -> Config:
    return make_config(
        root=str(tmp_path),
        templates=str(ROOT / "templates"),
        digests=[
            {"name": "daily", "cron": "0 7 * * *"},
            {"name": "weekly", "cron": "0 8 * * mon"},
        ],
        web={"topics": ["Peacekeeping", "Border", "Police"]},
        **sections,
    )


def people(session, *addresses: str) -> dict[str, Subscriber]:  # type: ignore[no-untyped-def]
    out = {}
    for address in addresses:
        out[address], _ = add_subscriber(session, address, NOW)
    session.flush()
    return out


def edition_with(session, digest: str, *tag_lists: list[str]) -> int:  # type: ignore[no-untyped-def]
    period = f"p-{digest}-{uuid.uuid4().hex[:8]}"
    edition = Edition(digest=digest, period=period, subject="s", cutoff=NOW)
    session.add(edition)
    session.flush()
    for i, tags in enumerate(tag_lists):
        article = Article(source="s", guid=f"{period}-{i}", title="t", tags=tags, content_hash="h")
        session.add(article)
        session.flush()
        session.add(EditionArticle(edition_id=edition.id, article_id=article.id, position=i))
    session.flush()
    return edition.id


def recipients(session, edition_id: int) -> set[str]:  # type: ignore[no-untyped-def]
    return set(
        session.scalars(
            select(Subscriber.email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == edition_id)
        )
    )


def test_fan_out_follows_digest_topic_and_pause_choices(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with db.sessions(engine)() as session:
        subs = people(
            session,
            "all@example.org",
            "weekly@example.org",
            "border@example.org",
            "paused@example.org",
            "daily-police@example.org",
        )

        def choose(address: str, **prefs: object) -> None:
            set_preferences(session, cfg, subs[address], Preferences(**prefs), NOW)  # type: ignore[arg-type]

        choose("weekly@example.org", digests=("weekly",))
        choose("border@example.org", topics=("border",))
        choose("paused@example.org", paused=True)
        choose("daily-police@example.org", digests=("daily",), topics=("Police",))

        daily = edition_with(session, "daily", ["Peacekeeping"], ["BORDER", "Rwanda"])
        assert fan_out(session, daily, NOW) == 2
        assert recipients(session, daily) == {"all@example.org", "border@example.org"}

        weekly = edition_with(session, "weekly", ["Police"])
        fan_out(session, weekly, NOW)
        assert recipients(session, weekly) == {"all@example.org", "weekly@example.org"}

        # Changes apply to the next edition.
        choose("paused@example.org", paused=False)
        again = edition_with(session, "daily", ["police"])
        fan_out(session, again, NOW)
        assert recipients(session, again) == {
            "all@example.org",
            "paused@example.org",
            "daily-police@example.org",
        }


def write_maildir(tmp_path: Path, *messages: bytes) -> Path:
    box = mailbox.Maildir(tmp_path / "mailbox", create=True)
    for data in messages:
        box.add(data)
    return tmp_path / "mailbox"


def mailto_unsubscribe(token: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "reader@example.org"
    msg["To"] = "unsubscribe@newsroom.example.org"
    msg["Subject"] = f"unsubscribe {token}"
    msg.set_content("")
    return msg.as_bytes()


def test_mailbox_unsubscribes_and_bounces_once(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path, mailbox={"maildir": "mailbox", "soft_bounce_limit": 2})
    sessions = db.sessions(engine)
    with sessions() as session:
        subs = people(
            session,
            "reader@example.org",
            "gone@example.net",
            "closed.account@gmail.example",
            "nobody.here@example.com",
            "full@example.com",
            "keeps@example.org",
        )
        session.commit()
    good = tokens.sign(SECRET, "unsubscribe", subs["reader@example.org"].id)
    forged = tokens.sign("someone-else-secret-123456", "unsubscribe", subs["keeps@example.org"].id)
    write_maildir(
        tmp_path,
        mailto_unsubscribe(good),
        mailto_unsubscribe(forged),
        *(
            (BOUNCES / name).read_bytes()
            for name in (
                "postfix_hard.eml",
                "exim_hard.eml",
                "gmail_hard.eml",
                "postfix_delayed.eml",
                "autoreply.eml",
            )
        ),
    )
    report = process_mailbox(cfg, sessions, lambda: NOW)
    assert (report.read, report.unsubscribed, report.hard_bounces, report.soft_bounces) == (
        7,
        1,
        3,
        1,
    )
    assert report.ignored == 2  # the forged token and the auto-reply
    with sessions() as session:
        status = {s.email: s.status for s in session.scalars(select(Subscriber))}
        assert status["reader@example.org"] == SubscriberStatus.unsubscribed
        assert status["keeps@example.org"] == SubscriberStatus.active
        for address in ("gone@example.net", "closed.account@gmail.example"):
            assert status[address] == SubscriberStatus.bounced
            assert is_suppressed(session, address)
        # Exim reported the address in other letter case: still the same subscriber.
        assert status["nobody.here@example.com"] == SubscriberStatus.bounced
        full = find_by_email(session, "full@example.com")
        assert full is not None and full.status == SubscriberStatus.active
        assert full.soft_bounce_count == 1

    # A second pass reads nothing again; a second soft bounce reaches the limit of 2.
    assert process_mailbox(cfg, sessions, lambda: NOW).read == 0
    box = mailbox.Maildir(tmp_path / "mailbox")
    box.add((BOUNCES / "postfix_delayed.eml").read_bytes())
    assert process_mailbox(cfg, sessions, lambda: NOW).soft_bounces == 1
    with sessions() as session:
        full = find_by_email(session, "full@example.com")
        assert full is not None and full.status == SubscriberStatus.bounced
        assert is_suppressed(session, "FULL@example.com")


def test_suppression_is_respected_by_add_import_and_signup(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email\nblocked@example.org\nfine@example.org\n", encoding="utf-8")
    with db.sessions(engine)() as session:
        suppress(session, "Blocked@Example.org", "complaint", NOW)
        with pytest.raises(SuppressedAddress):
            add_subscriber(session, "blocked@example.org", NOW)
        report = import_csv(session, csv_file, NOW)
        assert (report.added, report.suppressed) == (1, 1)
        wanted = SignupRequest("blocked@example.org", Preferences())
        assert signup(session, cfg, wanted, NOW) is None
        assert find_by_email(session, "blocked@example.org") is None


def test_export_and_erase_keep_only_anonymous_counts(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with db.sessions(engine)() as session:
        subs = people(session, "erase.me@example.org", "other@example.org")
        set_preferences(
            session, cfg, subs["erase.me@example.org"], Preferences(topics=("border",)), NOW
        )
        edition = edition_with(session, "daily", ["Border"])
        fan_out(session, edition, NOW)
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.subscriber_id == subs["erase.me@example.org"].id)
            .values(status=SendStatus.sent)
        )
        data = export_data(session, subs["erase.me@example.org"])
        assert data["email"] == "erase.me@example.org"
        assert data["preferences"]["topics"] == ["border"]
        assert [d["status"] for d in data["deliveries"]] == ["sent"]

        erased_id = subs["erase.me@example.org"].id
        assert erase(session, subs["erase.me@example.org"], NOW) == 1
        session.commit()
        assert session.get(Subscriber, erased_id) is None
        assert session.scalar(select(func.count()).where(Delivery.subscriber_id == erased_id)) == 0
        counts = session.scalars(select(ErasedDeliveries)).all()
        assert [(c.edition_id, c.status, c.count) for c in counts] == [(edition, "sent", 1)]
        # Only a hash stays, and it keeps the address from being imported again.
        assert is_suppressed(session, "erase.me@example.org")
        with pytest.raises(SuppressedAddress):
            add_subscriber(session, "erase.me@example.org", NOW)
        assert find_by_email(session, "other@example.org") is not None
