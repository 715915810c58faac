"""The whole pipeline into a real SMTP server: feed → store → edition → deliveries → aiosmtpd.

Runs on a real SQLite file and on PostgreSQL (the `engine` fixture).
"""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from newsbroadcast.config.model import Config
from newsbroadcast.db.engine import make_engine
from newsbroadcast.db.models import Delivery, Edition, SendStatus, Subscriber, SubscriberStatus
from newsbroadcast.service import Service
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.registry import add_subscriber
from tests.site import DAILY, NEWSROOM_FEED, Clock, site_config, smtp_email
from tests.smtp_sink import SmtpSink

SECRET = "pipeline-secret-0123456789"

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel>
<title>Women in Uniform</title><link>https://newsroom.example.org/</link>
<description>test</description>
<item>
  <title>Rwanda to send all-woman peacekeeping force to South Sudan</title>
  <link>https://newsroom.example.org/2018/07/rwanda-all-woman-unit</link>
  <guid>rwanda-all-woman-unit</guid>
  <pubDate>Tue, 10 Jul 2018 09:00:00 GMT</pubDate>
  <description><![CDATA[<p>Officers &amp; medics.</p><script>alert(1)</script>
    <img src=x onerror="steal()"><a href="javascript:evil()">click</a>]]></description>
</item>
<item>
  <title>Header
Injection: Bcc: victim@example.com</title>
  <link>https://newsroom.example.org/2025/05/osce-central-asia</link>
  <guid>osce-central-asia</guid>
  <pubDate>Fri, 23 May 2025 10:00:00 GMT</pubDate>
  <description>OSCE advances gender-sensitive border management 🚓 — Кыргызстан, 女警</description>
</item>
</channel></rss>
"""


def make_config(tmp_path: Path, sink: SmtpSink) -> Config:
    (tmp_path / "feed.xml").write_text(FEED, encoding="utf-8")
    return site_config(
        tmp_path,
        site={"secret": SECRET},
        sources=[NEWSROOM_FEED],
        email=smtp_email(sink.port, smtp={"timeout": "5s"}, bounce_after=1),
        digests=[
            {
                **DAILY,
                "subject": "{{ site.name }} daily: {{ edition.articles[0].title }}",
                "catch_up": "1h",
            }
        ],
    )


@pytest.fixture
def sink() -> SmtpSink:
    with SmtpSink() as s:
        yield s


def subscribe(service: Service, *people: tuple[str, str | None, SubscriberStatus]) -> None:
    with service.sessions() as session:
        for address, name, status in people:
            add_subscriber(session, address, service.clock(), name=name, status=status)
        session.commit()


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_digest_reaches_each_active_subscriber_once_with_proper_headers(
    engine: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    clock = Clock()
    service = Service(make_config(tmp_path, sink), engine=engine, clock=clock)
    subscribe(
        service,
        ("amina@example.org", 'Amina <Ops & "Co">', SubscriberStatus.active),
        ("Aigerim@Example.net", "Айгерим", SubscriberStatus.active),
        ("gone@example.org", None, SubscriberStatus.unsubscribed),
        ("waiting@example.org", None, SubscriberStatus.pending),
    )
    report = service.run_once()
    assert [e.deliveries for e in report.editions] == [2]
    assert sorted(sink.recipients()) == ["Aigerim@example.net", "amina@example.org"]

    ids = set()
    for received in sink.messages:
        for line in received.data.split(b"\r\n"):
            assert len(line) <= 998
        msg = parse(received.data)
        ids.add(msg["Message-ID"])
        assert msg["Date"] and msg["From"].addresses[0].addr_spec == "digest@newsroom.example.org"
        assert msg["To"].addresses[0].addr_spec == received.recipients[0]
        # A title with a line break cannot add headers.
        assert msg["Bcc"] is None
        assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
        assert msg["Subject"].startswith("Women in Uniform daily: ")
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "Rwanda to send all-woman peacekeeping force" in text
        assert "🚓" in text and "Кыргызстан" in html and "女警" in html
        assert "<script" not in html and "onerror" not in html and "javascript:" not in html
        assert "Officers &amp; medics." in html
        # One-click unsubscribe (RFC 8058), its token bound to this subscriber.
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        links = [part.strip(" <>") for part in msg["List-Unsubscribe"].split(",")]
        https = next(u for u in links if u.startswith("https://news.example.org/unsubscribe/"))
        assert any(u.startswith("mailto:unsubscribe@newsroom.example.org") for u in links)
        token = https.rsplit("/", 1)[1]
        with service.sessions() as session:
            owner = session.get_one(
                Subscriber, tokens.verify([SECRET], "unsubscribe", token, clock())
            )
        assert owner.email == received.recipients[0]
        assert https in html and https in text  # a visible link too
        assert "digest.newsroom.example.org" in msg["List-Id"]
        if received.recipients[0] == "amina@example.org":
            assert (
                "Amina &lt;Ops &amp; &#34;Co&#34;&gt;" in html
                or "Amina &lt;Ops &amp; &quot;Co&quot;&gt;" in html
            )
    assert len(ids) == 2

    # A second pass, and a second trigger of the same period: nothing more.
    again = service.run_once()
    assert again.editions == [] and again.dispatch.sent == 0
    assert service.plan_digest(service.config.digests[0]) is None
    assert len(sink.messages) == 2
    with service.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 1
        assert session.scalar(select(Edition.status)) == "done"


def message_ids(sink: SmtpSink, since: int = 0) -> dict[str, str]:
    """Recipient → Message-ID of what ``sink`` accepted from message ``since`` on."""
    return {m.recipients[0]: parse(m.data)["Message-ID"] for m in sink.messages[since:]}


def test_message_ids_come_from_site_digest_period_and_address_not_row_ids(
    engine: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    clock = Clock()
    amina = ("amina@example.org", None, SubscriberStatus.active)
    aigerim = ("Aigerim@Example.net", None, SubscriberStatus.active)
    (tmp_path / "site").mkdir()
    config = make_config(tmp_path / "site", sink)
    ours = Service(config, engine=engine, clock=clock)
    subscribe(ours, amina, aigerim)
    ours.run_once()
    first = message_ids(sink)
    assert len(set(first.values())) == 2

    # The site rebuilt in a new database: other row ids for the same people and edition.
    rebuilt = Service(
        config, engine=make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}"), clock=clock
    )
    subscribe(rebuilt, aigerim, amina)
    rebuilt.run_once()
    assert message_ids(sink, 2) == first  # the same message, recognisably

    # A sister site with the same secret, in a database of its own numbered alike: its
    # edition is another message, whatever a receiver keeps of Message-IDs.
    sister_site = config.site.model_copy(update={"list_id": "digest.sister.example.org"})
    sister = Service(
        config.model_copy(update={"site": sister_site}),
        engine=make_engine(f"sqlite:///{tmp_path / 'sister.db'}"),
        clock=clock,
    )
    subscribe(sister, amina, aigerim)
    sister.run_once()
    assert set(message_ids(sink, 4).values()).isdisjoint(first.values())
    for service in (ours, rebuilt, sister):
        service.close()


def test_451_is_retried_later_and_550_fails_only_that_recipient(
    engine: Engine, tmp_path: Path
) -> None:
    with SmtpSink(defer={"slow@example.org": 1}, reject={"nobody@example.org"}) as sink:
        clock = Clock()
        service = Service(make_config(tmp_path, sink), engine=engine, clock=clock)
        subscribe(
            service,
            *[
                (a, None, SubscriberStatus.active)
                for a in (
                    "first@example.org",
                    "slow@example.org",
                    "nobody@example.org",
                    "last@example.org",
                )
            ],
        )
        report = service.run_once()
        assert (report.dispatch.sent, report.dispatch.retried, report.dispatch.failed) == (2, 1, 1)
        assert sorted(sink.recipients()) == ["first@example.org", "last@example.org"]

        with service.sessions() as session:
            rows = {
                s.email: d
                for d, s in session.execute(select(Delivery, Subscriber).join(Subscriber))
            }
            slow, nobody = rows["slow@example.org"], rows["nobody@example.org"]
            assert slow.status == SendStatus.queued and slow.smtp_reply.startswith("451")
            assert slow.next_attempt_at > clock.now
            assert nobody.status == SendStatus.failed and nobody.smtp_reply.startswith("550")
            bounced = session.scalar(
                select(Subscriber).where(Subscriber.email == "nobody@example.org")
            )
            assert bounced.status == SubscriberStatus.bounced  # bounce_after: 1

        assert service.dispatch().sent == 0  # not due yet: backoff
        clock.now += timedelta(minutes=2)
        assert service.dispatch().sent == 1
        assert sorted(sink.recipients()) == [
            "first@example.org",
            "last@example.org",
            "slow@example.org",
        ]
        with service.sessions() as session:
            statuses = session.scalars(select(Delivery.status)).all()
            assert sorted(statuses) == ["failed", "sent", "sent", "sent"]
            assert session.scalar(select(Edition.status)) == "done"


def test_server_down_keeps_everything_queued_until_it_is_back(
    engine: Engine, tmp_path: Path
) -> None:
    sink = SmtpSink()
    sink.start()
    port = sink.port
    sink.stop()  # the configured server is down
    config = make_config(tmp_path, sink)
    config = config.model_copy(
        update={
            "email": config.email.model_copy(
                update={"smtp": config.email.smtp.model_copy(update={"port": port})}
            )
        }
    )
    clock = Clock()
    service = Service(config, engine=engine, clock=clock)
    subscribe(service, *[(f"r{i}@example.org", None, SubscriberStatus.active) for i in range(5)])
    report = service.run_once()
    assert report.dispatch.sent == 0 and report.dispatch.failed == 0
    with service.sessions() as session:
        rows = session.scalars(select(Delivery)).all()
        assert {d.status for d in rows} == {SendStatus.queued}
        # A dead server is no message's fault: no attempt is spent.
        assert sorted(d.attempts for d in rows) == [0, 0, 0, 0, 0]
    # The same port comes back: everything goes out once.
    with SmtpSink() as back:
        config2 = config.model_copy(
            update={
                "email": config.email.model_copy(
                    update={"smtp": config.email.smtp.model_copy(update={"port": back.port})}
                )
            }
        )
        service2 = Service(config2, engine=engine, clock=clock)
        clock.now += timedelta(minutes=5)
        assert service2.dispatch().sent == 5
        assert sorted(back.recipients()) == [f"r{i}@example.org" for i in range(5)]
