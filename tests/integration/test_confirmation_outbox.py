"""Confirmation emails go through the outbox: the sign-up only queues one, the dispatcher
sends it with the digests' transport, rate limit and retry rule (real SQLite file and
PostgreSQL, real SMTP sink on loopback, the web app on a real port)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from newsbroadcast.db.models import SendStatus, TransactionalEmail
from newsbroadcast.subscribers.confirmation import queue_confirmation
from newsbroadcast.subscribers.lifecycle import (
    Preferences,
    SignupRequest,
    erase,
    find_by_email,
    signup,
)
from tests.cli_runner import run_cli
from tests.conftest import ROOT
from tests.integration.delivery_site import service_for, write_site
from tests.integration.test_web_endpoints import csrf_of, sign_up
from tests.smtp_sink import free_port
from tests.web_site import RunningSite, confirm_link, running_site

DEADLINE = 60.0  # seconds: generous, for a busy 2-core machine


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def emails(site: RunningSite) -> list[TransactionalEmail]:
    with site.sessions() as session:
        return list(session.scalars(select(TransactionalEmail).order_by(TransactionalEmail.id)))


def status_of(site: RunningSite, address: str) -> str | None:
    with site.sessions() as session:
        sub = find_by_email(session, address)
        return None if sub is None else str(sub.status)


def test_a_signup_while_the_server_is_down_is_confirmed_once_it_is_back(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        site.sink.stop()  # the mail server goes down
        client = httpx.Client(base_url=site.url)
        answer = sign_up(client, "ada@example.org")
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        # The worker met the outage: the email waits, queued, with no attempt spent.
        wait_for(
            lambda: (
                [(e.status, e.claims > 0, e.attempts) for e in emails(site)]
                == [(SendStatus.queued, True, 0)]
                and emails(site)[0].last_error is not None
            ),
            "the worker to meet the outage",
        )
        site.sink.start()  # the same server, on the same port, later
        site.clock.now += site.config.email.outage_wait_max  # the outage's wait is over
        (message,) = site.wait_for_mail("ada@example.org", within=DEADLINE)
        assert message["Subject"] == "Please confirm your subscription to Women in Uniform"
        wait_for(lambda: emails(site)[0].status == SendStatus.sent, "the email to be recorded")
        (sent,) = emails(site)
        assert sent.smtp_reply and sent.smtp_reply.startswith("250")
        assert message["Message-ID"] == f"<{sent.message_id}>"

        # The link works (and expires) as when the email went out at once.
        link = confirm_link(message)
        page = client.get(link)
        assert client.post(link, data={"csrf": csrf_of(page)}).status_code == 303
        assert status_of(site, "ada@example.org") == "active"


def test_an_expired_link_still_expires_from_the_signup(tmp_path: Path, database_url: str) -> None:
    with running_site(tmp_path, database_url) as site:
        site.sink.stop()
        client = httpx.Client(base_url=site.url)
        sign_up(client, "late@example.org")
        # Met the outage and handed back: due again only at a later time of the test's
        # clock, which stands still, so no claim is in flight when the clock jumps below.
        wait_for(
            lambda: (email := emails(site)[0]).claims > 0 and email.status == SendStatus.queued,
            "the worker to meet the outage and hand the email back",
        )
        site.sink.start()
        # Back only after the link's lifetime: sending it would be useless.
        site.clock.now += site.config.web.confirm_within
        wait_for(lambda: emails(site)[0].status == SendStatus.skipped, "the email to be dropped")
        assert emails(site)[0].last_error == "its link expired before it could be sent"
        assert site.sink.recipients() == []


def test_a_double_submit_queues_one_message(tmp_path: Path, database_url: str) -> None:
    with running_site(tmp_path, database_url) as site:
        client = httpx.Client(base_url=site.url)
        sign_up(client, "bob@example.org")
        sign_up(client, "bob@example.org")  # a double click
        with site.sessions() as session:
            # A request retried after the sign-up was stored queues nothing new either.
            sub = find_by_email(session, "bob@example.org")
            assert sub is not None
            assert not queue_confirmation(session, site.config, sub, site.clock())
            session.commit()
        wait_for(lambda: emails(site)[0].status == SendStatus.sent, "the email to be sent")
        with site.sessions() as session:
            assert session.scalar(select(func.count()).select_from(TransactionalEmail)) == 1
        assert site.sink.recipients() == ["bob@example.org"]


def test_the_rate_limit_counts_confirmations(tmp_path: Path, database_url: str) -> None:
    with running_site(tmp_path, database_url, email={"rate_limit": {"per_hour": 1}}) as site:
        client = httpx.Client(base_url=site.url)
        sign_up(client, "first@example.org")
        site.wait_for_mail("first@example.org", within=DEADLINE)
        sign_up(client, "second@example.org")
        # The one slot of the hour is the first confirmation's: the second waits, unspent.
        wait_for(
            lambda: (
                len(emails(site)) == 2
                and emails(site)[1].status == SendStatus.queued
                and emails(site)[1].next_attempt_at > site.clock.now
            ),
            "the second email to wait for the rate limit",
        )
        assert site.sink.recipients() == ["first@example.org"]
        assert emails(site)[1].attempts == 0
        site.clock.now += timedelta(hours=1, seconds=1)
        site.wait_for_mail("second@example.org", within=DEADLINE)


def test_status_shows_confirmations_waiting_for_the_server(tmp_path: Path, engine: Engine) -> None:
    config_path = write_site(tmp_path, engine.url.render_as_string(False), free_port())
    service = service_for(config_path, engine)
    with service.sessions() as session:
        now = service.clock()
        sub = signup(session, service.config, SignupRequest("eve@example.org", Preferences()), now)
        assert sub is not None
        assert queue_confirmation(session, service.config, sub, now)
        session.commit()
    report = service.dispatch()  # nobody listens on the port
    assert (report.sent, report.retried) == (0, 1)
    out = run_cli(config_path, "status").stdout
    assert "confirmation emails: queued 1" in out
    assert "confirmation emails: queued 1\n  last queued: smtp: cannot connect to" in out


def test_a_broken_confirmation_template_holds_each_email_unspent(
    tmp_path: Path, database_url: str
) -> None:
    """The template's fault, not the emails': they wait for the fix (see also
    test_dispatch_isolation.py), none failed for good."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "email" / "confirm.txt.j2").write_text("{{ confirm_url | no_such_filter }}")
    with running_site(tmp_path, database_url, templates=str(templates)) as site:
        client = httpx.Client(base_url=site.url)
        for address in ("one@example.org", "two@example.org"):
            assert sign_up(client, address).status_code == 200
        wait_for(
            lambda: (
                [(e.status, e.attempts, e.claims > 0) for e in emails(site)]
                == [(SendStatus.queued, 0, True)] * 2
            ),
            "both emails to be tried and held back",
        )
        assert all("the confirmation template failed" in (e.last_error or "") for e in emails(site))
        assert site.sink.recipients() == []


def test_erasing_a_subscriber_erases_their_confirmation_emails(
    tmp_path: Path, engine: Engine
) -> None:
    config_path = write_site(tmp_path, engine.url.render_as_string(False), free_port())
    service = service_for(config_path, engine)
    with service.sessions() as session:
        now = service.clock()
        sub = signup(session, service.config, SignupRequest("gone@example.org", Preferences()), now)
        assert sub is not None and queue_confirmation(session, service.config, sub, now)
        session.commit()
        erase(session, sub, now)
        session.commit()
        assert session.scalar(select(func.count()).select_from(TransactionalEmail)) == 0


def test_an_email_for_an_earlier_signup_is_not_sent_once_a_newer_one_is_queued(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        site.sink.stop()
        client = httpx.Client(base_url=site.url)
        sign_up(client, "ada@example.org")
        wait_for(
            lambda: (email := emails(site)[0]).claims > 0 and email.status == SendStatus.queued,
            "the worker to meet the outage and hand the email back",
        )
        # Past resend_after, she signs up again: that sign-up's email carries the only
        # link that confirms, so the first email would only bring a dead link.
        site.clock.now += site.config.web.resend_after
        sign_up(client, "ada@example.org")
        assert len(emails(site)) == 2
        site.sink.start()
        site.clock.now += site.config.email.outage_wait_max
        wait_for(
            lambda: [e.status for e in emails(site)] == [SendStatus.skipped, SendStatus.sent],
            "the first email to be dropped and the second sent",
        )
        first = emails(site)[0]
        assert first.last_error and "a newer sign-up replaced it" in first.last_error
        (message,) = site.wait_for_mail("ada@example.org", within=DEADLINE)
        assert site.sink.recipients() == ["ada@example.org"]
        link = confirm_link(message)
        page = client.get(link)
        assert client.post(link, data={"csrf": csrf_of(page)}).status_code == 303
        assert status_of(site, "ada@example.org") == "active"
