"""Preview, dry run, languages and structured logs, on the Service itself (SQLite and
PostgreSQL), with a real SMTP server on loopback."""

from __future__ import annotations

import email
import email.policy
import io
import json
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Article, Base, Subscriber, SubscriberStatus
from newsbroadcast.dispatch.preview import preview_digest, without_per_send_headers
from newsbroadcast.runtime import logs
from newsbroadcast.service import Service
from tests.conftest import ROOT
from tests.site import NEWSROOM_FEED, site_config
from tests.smtp_sink import SmtpSink

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
SECRET = "admin-service-secret-0123456789"
SMTP_PASSWORD = "smtp-pass-Zq8Kx2Lw"


def make_config(tmp_path: Path, **email: Any) -> Config:
    return site_config(
        tmp_path,
        site={"secret": SECRET},
        sources=[{**NEWSROOM_FEED, "url": str(ROOT / "examples/feed.xml")}],
        email=email or {"transport": "file", "file": {"dir": str(tmp_path / "outbox")}},
        social=[{"name": "wall", "type": "file", "dir": str(tmp_path / "posts"), "backfill": 2}],
    )


def add_subscribers(service: Service, *people: tuple[str, str | None, str]) -> None:
    with service.sessions() as session:
        for address, name, language in people:
            session.add(
                Subscriber(
                    email=address,
                    email_key=address.lower(),
                    name=name,
                    language=language,
                    status=SubscriberStatus.active,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        session.commit()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def test_preview_is_byte_for_byte_what_the_smtp_server_receives(
    engine: Engine, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    config = make_config(
        tmp_path,
        transport="smtp",
        smtp=smtp_sink.settings().model_dump(),
    )
    service = Service(config, engine=engine, clock=lambda: NOW)
    try:
        add_subscribers(
            service,
            ("ada@example.org", "Ada", "en"),
            ("claudine@example.org", "Claudine", "fr"),
            ("ineza@example.org", None, "rw"),
        )
        service.poll()
        before = counts(engine)
        previews = {}
        with service.sessions() as session:
            for address in ("ada@example.org", "claudine@example.org", "ineza@example.org"):
                previews[address] = preview_digest(
                    config, session, service.templates, "daily", NOW, address
                )
        assert counts(engine) == before  # a preview changes nothing
        assert smtp_sink.messages == []

        service.plan_digest(config.digests[0], force=True)
        service.dispatch()
    finally:
        service.close()

    received = {m.recipients[0]: m.data for m in smtp_sink.messages}
    assert set(received) == set(previews)
    for address, preview in previews.items():
        sent = received[address]
        assert without_per_send_headers(sent) == without_per_send_headers(preview.data)
    fr = email.message_from_bytes(received["claudine@example.org"], policy=email.policy.default)
    assert "Bonjour Claudine" in fr.get_body(("plain",)).get_content()
    rw = email.message_from_bytes(received["ineza@example.org"], policy=email.policy.default)
    assert "Dore inkuru" in rw.get_body(("plain",)).get_content()
    assert '<html lang="rw"' in rw.get_body(("html",)).get_content()


def test_editions_render_once_per_language(engine: Engine, tmp_path: Path) -> None:
    service = Service(make_config(tmp_path), engine=engine, clock=lambda: NOW)
    try:
        add_subscribers(
            service,
            *[(f"en{i}@example.org", None, "en") for i in range(3)],
            *[(f"fr{i}@example.org", None, "fr") for i in range(3)],
            ("de@example.org", None, "de"),  # no catalog: English
        )
        service.poll()
        planned = service.plan_digest(service.config.digests[0], force=True)
        assert planned is not None
        report = service.dispatch()
        variants = set(service.dispatcher._prepared)
    finally:
        service.close()
    assert report.sent >= 7
    assert variants == {(planned.edition_id, "en"), (planned.edition_id, "fr"),
                        (planned.edition_id, "de")}  # fmt: skip
    bodies = {
        p.name: email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in (tmp_path / "outbox").glob("*.eml")
    }
    by_to = {m["To"].addresses[0].addr_spec: m for m in bodies.values()}
    assert "Read more" in by_to["de@example.org"].get_body(("plain",)).get_content()
    assert "Lire la suite" in by_to["fr1@example.org"].get_body(("plain",)).get_content()


def test_an_edition_being_sent_renders_again_with_the_templates_a_reload_brings(
    engine: Engine, tmp_path: Path
) -> None:
    from datetime import timedelta

    from newsbroadcast.render.templates import make_environment

    outbox = tmp_path / "outbox"
    config = make_config(tmp_path, transport="file", file={"dir": str(outbox)}, batch_size=1)
    service = Service(config, engine=engine, clock=lambda: NOW)
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    text = templates / "email/digest.txt.j2"
    text.write_text(text.read_text().replace('{{ _("Read more") }}', "Keep reading"))
    try:
        add_subscribers(
            service, ("first@example.org", None, "en"), ("second@example.org", None, "en")
        )
        service.poll()
        assert service.plan_digest(service.config.digests[0], force=True) is not None
        service.dispatch(timedelta(0))  # one batch of one delivery, then the budget is spent
        sent_before = set(outbox.glob("*.eml"))
        service.reconfigure(config, make_environment(templates, snapshot=True))
        service.dispatch()
        sent_after = set(outbox.glob("*.eml")) - sent_before
    finally:
        service.close()
    assert (len(sent_before), len(sent_after)) == (1, 1)

    def plain(files: set[Path]) -> str:
        message = email.message_from_bytes(files.pop().read_bytes(), policy=email.policy.default)
        return str(message.get_body(("plain",)).get_content())

    before, after = plain(sent_before), plain(sent_after)
    assert "Read more" in before and "Keep reading" not in before
    assert "Keep reading" in after and "Read more" not in after


def test_dry_run_plans_and_renders_but_sends_and_keeps_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    real = Service(config, engine=engine, clock=lambda: NOW)
    add_subscribers(real, ("ada@example.org", "Ada", "en"), ("claudine@example.org", None, "fr"))
    real.close()
    before = counts(engine)

    dry = Service(config, engine=engine, clock=lambda: NOW, dry_run=True)
    try:
        report = dry.run_once(force=True)
        # Inside the dry run everything happened: articles, an edition, rendered messages.
        with dry.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Article)) > 0
    finally:
        dry.close()
    assert len(report.editions) == 1 and report.editions[0].deliveries == 2
    assert dry.tally.messages == 2 and dry.tally.posts == 2
    assert counts(engine) == before
    assert not (tmp_path / "outbox").exists() and not (tmp_path / "posts").exists()


def test_logs_are_json_lines_with_ids_and_without_secrets(
    engine: Engine, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    stream = io.StringIO()
    previous = logging.getLogger().handlers[:], logging.getLogger().level
    logs.setup(stream=stream)
    try:
        config = make_config(
            tmp_path,
            transport="smtp",
            smtp=smtp_sink.settings(username=None, password=None).model_dump(),
        )
        logs.protect(config)
        logs.protect([SMTP_PASSWORD])
        service = Service(config, engine=engine, clock=lambda: NOW)
        try:
            add_subscribers(service, ("ada@example.org", "Ada", "en"))
            service.run_once(force=True)
            logging.getLogger("newsbroadcast.test").warning(
                "leaking %s and %s", SECRET, SMTP_PASSWORD, extra={"token": SECRET}
            )
        finally:
            service.close()
    finally:
        root = logging.getLogger()
        root.handlers[:] = previous[0]
        root.setLevel(previous[1])
    text = stream.getvalue()
    assert SECRET not in text and SMTP_PASSWORD not in text
    entries = [json.loads(line) for line in text.splitlines()]
    edition = next(e for e in entries if e["message"].startswith("edition "))
    assert edition["edition_id"] >= 1 and edition["deliveries"] == 1
    batch = next(e for e in entries if e["message"].startswith("delivery batch"))
    assert batch["edition_ids"] == [edition["edition_id"]] and batch["sent"] == 1
    assert isinstance(batch["first_delivery_id"], int)
    posted = [e for e in entries if e["message"].startswith("post ")]
    assert len(posted) == 2 and all(e["post_id"] and e["channel"] == "wall" for e in posted)
    leak = next(e for e in entries if e["message"].startswith("leaking"))
    assert leak["message"] == "leaking *** and ***" and leak["token"] == "***"


def test_text_logs_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    previous = logging.getLogger().handlers[:], logging.getLogger().level
    logs.setup(stream=stream)
    try:
        logging.getLogger("newsbroadcast.planner").info(
            "edition %s planned", 7, extra={"edition_id": 7}
        )
    finally:
        root = logging.getLogger()
        root.handlers[:] = previous[0]
        root.setLevel(previous[1])
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert "INFO" in line and "newsbroadcast.planner: edition 7 planned edition_id=7" in line


def test_check_connect_asks_each_channel_that_can_check_its_credentials(tmp_path: Path) -> None:
    from newsbroadcast.config.checks import connect_checks
    from tests.mastodon_server import TOKEN, MastodonServer

    with MastodonServer() as server:
        base = make_config(tmp_path).model_dump(by_alias=True)
        base["social"].append(
            {"name": "fedi", "type": "mastodon", "api_base_url": server.url, "access_token": TOKEN}
        )
        good = {r.what: r for r in connect_checks(Config.model_validate(base))}
        base["social"][1]["access_token"] = "not-the-token"
        bad = {r.what: r for r in connect_checks(Config.model_validate(base))}
        assert server.statuses == []  # nothing posted
    assert good["channel fedi (mastodon)"].ok
    assert good["channel fedi (mastodon)"].detail.startswith("token of @")
    assert good["channel wall (file)"].detail == "no credential check for this type"
    assert not bad["channel fedi (mastodon)"].ok
    assert "refused" in bad["channel fedi (mastodon)"].detail
