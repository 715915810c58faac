"""One message that cannot be built never stops a dispatch pass (real SQLite file and
PostgreSQL, real SMTP sink on loopback, the site's own copy of the templates): its rows wait,
with no attempt spent and the reason recorded, for the fix; the rest of the pass goes on."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from newsbroadcast.config.model import load_config
from newsbroadcast.db import make_engine, upgrade
from newsbroadcast.db.models import Delivery, SendStatus, TransactionalEmail, utcnow
from newsbroadcast.render.templates import make_environment
from newsbroadcast.runtime.failures import current_failures
from newsbroadcast.service import Service
from newsbroadcast.subscribers.confirmation import queue_confirmation
from newsbroadcast.subscribers.lifecycle import Preferences, SignupRequest, signup
from tests.conftest import ROOT, postgres_schema
from tests.integration.delivery_site import FEED, add_subscribers, plan_edition, write_site
from tests.site import NEWSROOM_FEED, Clock, site_config, smtp_email
from tests.smtp_sink import ReceivedMessage, SmtpSink, free_port
from tests.webhook_receiver import WebhookReceiver

# Raised by the template itself: not a jinja2.TemplateError, as anything a template calls may be.
RAISES = "{{ 1 // 0 }}"
# The template does not even compile.
SYNTAX = "{% if %}"
HOOK_SECRET = "hook-secret-0123456789"


def _site(tmp_path: Path, engine: Engine, sink: SmtpSink) -> tuple[Service, Clock, Path]:
    """A site on ``engine`` sending to ``sink``, with templates of its own to break."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    config_path = write_site(
        tmp_path, engine.url.render_as_string(False), sink.port,
        email={"retry_after": "1m", "outage_wait_max": "10m"}, templates=templates,
    )  # fmt: skip
    clock = Clock(utcnow())
    return Service(load_config(config_path), engine=engine, clock=clock), clock, templates


def _use_templates(service: Service, templates: Path) -> None:
    """What a reload does once it has read the templates again."""
    service.reconfigure(service.config, make_environment(templates, snapshot=True))


def _break(service: Service, templates: Path, name: str, broken: str) -> str:
    """Save ``broken`` into template ``name`` and take it in; the good text, to restore."""
    good = (templates / name).read_text(encoding="utf-8")
    (templates / name).write_text(good + broken, encoding="utf-8")
    _use_templates(service, templates)
    return good


def _deliveries(service: Service) -> list[Delivery]:
    with service.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def _confirmations(service: Service) -> list[TransactionalEmail]:
    with service.sessions() as session:
        return list(session.scalars(select(TransactionalEmail).order_by(TransactionalEmail.id)))


def _queue_confirmation(service: Service, address: str) -> None:
    with service.sessions() as session:
        now = service.clock()
        sub = signup(session, service.config, SignupRequest(address, Preferences()), now)
        assert sub is not None
        assert queue_confirmation(session, service.config, sub, now)
        session.commit()


@pytest.mark.parametrize("broken", [RAISES, SYNTAX])
def test_a_digest_that_cannot_render_waits_for_the_fix_and_the_pass_goes_on(
    tmp_path: Path, engine: Engine, smtp_sink: SmtpSink, broken: str
) -> None:
    service, clock, templates = _site(tmp_path, engine, smtp_sink)
    readers = add_subscribers(engine, 3)
    plan_edition(service)
    _queue_confirmation(service, "ada@example.org")
    good = _break(service, templates, "email/digest.html.j2", broken)

    report = service.dispatch()  # does not raise

    # The confirmation, after the deliveries in the same pass, still went out.
    assert smtp_sink.recipients() == ["ada@example.org"]
    assert [e.status for e in _confirmations(service)] == [SendStatus.sent]
    # Every delivery waits, unspent, saying why; the edition stays open for them.
    waiting = _deliveries(service)
    assert [(d.status, d.attempts) for d in waiting] == [(SendStatus.queued, 0)] * 3
    assert all("cannot be built" in (d.last_error or "") for d in waiting)
    assert all(d.next_attempt_at is not None and d.next_attempt_at > clock.now for d in waiting)
    assert any("cannot be built" in e for e in report.errors)
    with service.sessions() as session:
        assert [(f.kind, f.name) for f in current_failures(session)] == [("digest", "daily")]
    # Tried again before its wait is over: nothing is claimed, nothing crashes.
    service.dispatch()
    assert smtp_sink.recipients() == ["ada@example.org"]

    (templates / "email/digest.html.j2").write_text(good, encoding="utf-8")
    _use_templates(service, templates)
    clock.now += service.config.email.outage_wait_max  # its wait is over
    service.dispatch()

    assert sorted(smtp_sink.recipients()) == sorted(["ada@example.org", *readers])
    assert [(d.status, d.attempts) for d in _deliveries(service)] == [(SendStatus.sent, 0)] * 3
    with service.sessions() as session:
        assert current_failures(session) == []


@pytest.mark.parametrize("broken", [RAISES, SYNTAX])
def test_a_confirmation_that_cannot_render_waits_and_the_deliveries_go_out(
    tmp_path: Path, engine: Engine, smtp_sink: SmtpSink, broken: str
) -> None:
    service, clock, templates = _site(tmp_path, engine, smtp_sink)
    readers = add_subscribers(engine, 2)
    plan_edition(service)
    _queue_confirmation(service, "ada@example.org")
    good = _break(service, templates, "email/confirm.txt.j2", broken)

    report = service.dispatch()  # does not raise

    assert sorted(smtp_sink.recipients()) == sorted(readers)  # the digest went out
    (email,) = _confirmations(service)
    # Not failed for good: it waits, unspent, for the template to be fixed.
    assert (email.status, email.attempts) == (SendStatus.queued, 0)
    assert "the confirmation template failed" in (email.last_error or "")
    assert email.next_attempt_at is not None and email.next_attempt_at > clock.now
    assert any("confirmation template" in e for e in report.errors)

    (templates / "email/confirm.txt.j2").write_text(good, encoding="utf-8")
    _use_templates(service, templates)
    clock.now += service.config.email.outage_wait_max
    service.dispatch()

    assert sorted(smtp_sink.recipients()) == sorted(["ada@example.org", *readers])
    assert [e.status for e in _confirmations(service)] == [SendStatus.sent]


def test_no_transaction_stays_open_while_a_confirmation_is_on_the_wire(tmp_path: Path) -> None:
    """On PostgreSQL an idle open transaction holds a connection slot and vacuum back."""
    name = f"nb_{tmp_path.name[-20:]}".replace("-", "_")
    seen: list[list[str]] = []
    looked = threading.Event()

    def look(_message: ReceivedMessage) -> None:  # the server has the message, not replied
        with admin.connect() as conn:
            seen.append(
                list(
                    conn.scalars(
                        text("SELECT state FROM pg_stat_activity WHERE application_name = :n"),
                        {"n": name},
                    )
                )
            )
        looked.set()

    with (
        postgres_schema(f"-capplication_name={name}") as url,
        SmtpSink(on_data=look) as sink,
    ):
        admin = make_engine(url.partition("?")[0])
        engine = make_engine(url)
        upgrade(engine)
        try:
            service, _clock, _templates = _site(tmp_path, engine, sink)
            _queue_confirmation(service, "ada@example.org")
            service.dispatch()
        finally:
            engine.dispose()
            admin.dispose()
    assert looked.is_set() and sink.recipients() == ["ada@example.org"]
    (states,) = seen
    assert states and "idle in transaction" not in states, states


def test_a_template_fix_is_not_waited_on_longer_than_outage_wait_max(
    tmp_path: Path, engine: Engine, smtp_sink: SmtpSink
) -> None:
    """The wait doubles per failure in a row but stays capped: a fixed template is picked
    up within ``email.outage_wait_max`` however long it was broken."""
    service, clock, templates = _site(tmp_path, engine, smtp_sink)
    add_subscribers(engine, 1)
    plan_edition(service)
    _break(service, templates, "email/digest.html.j2", RAISES)
    waits: list[timedelta] = []
    for _ in range(6):
        service.dispatch()
        (row,) = _deliveries(service)
        assert row.next_attempt_at is not None
        waits.append(row.next_attempt_at - clock.now)
        clock.now = row.next_attempt_at
    assert waits[1] > waits[0]
    assert max(waits) <= service.config.email.outage_wait_max


def test_posts_go_out_when_the_email_side_cannot_even_start(
    tmp_path: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """SMTP set up with a login whose password's environment variable is unset: no email
    can go out until a person fixes it, yet the posts of the same pass are published."""
    (tmp_path / "feed.xml").write_text(FEED, encoding="utf-8")
    with WebhookReceiver(HOOK_SECRET) as hook:
        hook_channel = {"name": "hook", "type": "webhook", "url": hook.url,
                        "secret": HOOK_SECRET, "backfill": 10}  # fmt: skip
        config = site_config(
            tmp_path, sources=[NEWSROOM_FEED], social=[hook_channel],
            email=smtp_email(free_port(), smtp={"username": "newsroom", "password": ""}),
        )  # fmt: skip
        service = Service(config, engine=engine, clock=Clock(utcnow()))
        plan_edition(service)  # also queues the posts of the stories it read
        _queue_confirmation(service, "ada@example.org")

        report = service.dispatch()  # does not raise

        assert len(hook.state.accepted) == 2, report.errors
    assert report.sent == 2
    assert any(e.startswith("dispatch step deliveries:") for e in report.errors)
    # The confirmation waits for the fix, unspent, instead of sitting out a lease.
    (email,) = _confirmations(service)
    assert (email.status, email.attempts) == (SendStatus.queued, 0)
    assert "username and password" in (email.last_error or "")
    # One line per round for the failed step, no traceback: the error says what to fix.
    lines = [r for r in caplog.records if "dispatch step deliveries failed" in r.getMessage()]
    assert lines and all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)
