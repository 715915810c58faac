"""`run` reloads config/ and templates/ while running; a broken change is refused and the
service goes on sending with the last good configuration and templates."""

from __future__ import annotations

import email
import email.policy
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsbroadcast.config.model import load_config
from newsbroadcast.db.models import Subscriber, SubscriberStatus, utcnow
from newsbroadcast.runtime.scheduler import run_forever
from newsbroadcast.service import Service
from tests.conftest import ROOT

CONFIG = """\
site:
  name: "Women in Uniform"
  url: "https://newsroom.example.org"
  public_url: "https://news.example.org"
  from: "digest@newsroom.example.org"
  list_id: "digest.newsroom.example.org"
  unsubscribe_mailto: "unsubscribe@newsroom.example.org"
  secret: "hot-reload-secret-0123456789"
database:
  url: "sqlite:///var/nb.db"
sources:
  - name: newsroom
    type: feed
    url: examples/feed.xml
email:
  transport: file
  file:
    dir: var/outbox
digests:
  - name: daily
    cron: "0 7 1 1 *"
    catch_up: 1m
  - name: weekly
    cron: "0 8 1 1 *"
    catch_up: 1m
scheduler:
  dispatch_every: 0.2s
  watch_every: 0.1s
"""


def wait_for(what: str, condition: Callable[[], object], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def messages(site: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted((site / "var/outbox").glob("*.eml"))
    ]


def html_of(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "config").mkdir()
    (tmp_path / "config/newsbroadcast.yaml").write_text(CONFIG)
    return tmp_path


def test_a_broken_template_saved_while_running_changes_nothing_a_good_one_applies(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="newsbroadcast")
    config_file = site / "config/newsbroadcast.yaml"
    service = Service(load_config(config_file))
    with service.sessions() as session:
        now = utcnow()
        session.add(
            Subscriber(
                email="ada@example.org",
                email_key="ada@example.org",
                status=SubscriberStatus.active,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    stop = threading.Event()
    runner = threading.Thread(target=run_forever, args=(service, stop, config_file))
    runner.start()

    def rejections() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "change rejected" in r.getMessage()]

    def logged(text: str) -> Callable[[], bool]:
        return lambda: any(text in r.getMessage() for r in caplog.records)

    def config_reloaded(message: str) -> bool:
        return "configuration reloaded" in message and config_file.name in message

    def logged_after(first: Callable[[str], bool], then: str) -> Callable[[], bool]:
        def check() -> bool:
            messages = [r.getMessage() for r in caplog.records]
            starts = [i for i, m in enumerate(messages) if first(m)]
            return bool(starts) and any(then in m for m in messages[starts[0] + 1 :])

        return check

    try:
        wait_for("the scheduler", logged("running:"))
        html = site / "templates/email/digest.html.j2"
        good = html.read_text()
        html.write_text(good.replace("{% endfor %}", "", 1))  # a for loop left open
        wait_for("the rejection", logged("configuration change rejected"))
        rejected = next(r for r in caplog.records if "rejected" in r.getMessage())
        assert str(html) in rejected.getMessage()

        # The service still sends, with the last good template.
        service.plan_digest(service.config.digest("daily"), force=True)
        wait_for("the daily edition", lambda: len(messages(site)) == 1)
        assert "Read more" in html_of(messages(site)[0])

        # A valid change to the template and the config: both take effect, jobs follow.
        html.write_text(good.replace("Read more", "Keep reading"))
        config_file.write_text(CONFIG.replace('cron: "0 8 1 1 *"', 'cron: "30 9 * * *"'))
        # The watcher may look between the two writes and reload the template alone
        # first; what counts is the reload that read the config file, and what followed it.
        wait_for("the reload", logged_after(config_reloaded, "jobs rescheduled"))
        assert service.config.digest("weekly").cron == "30 9 * * *"
        service.plan_digest(service.config.digest("weekly"), force=True)
        wait_for("the weekly edition", lambda: len(messages(site)) == 2)
        newest = [m for m in messages(site) if "Keep reading" in html_of(m)]
        assert len(newest) == 1

        # Bad YAML: refused, the running configuration stays.
        config_file.write_text(CONFIG.replace("digests:", "digests: [oops"))
        wait_for("the second rejection", lambda: len(rejections()) == 2)
        assert service.config.digest("weekly").cron == "30 9 * * *"
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(timeout=60)
        service.close()
    assert not runner.is_alive()


def test_reschedule_follows_the_new_config(site: Path) -> None:
    from newsbroadcast.config.reload import reschedule
    from newsbroadcast.runtime.scheduler import build_scheduler

    config_file = site / "config/newsbroadcast.yaml"
    service = Service(load_config(config_file))
    try:
        live = build_scheduler(service)
        live.start(paused=True)
        poll_job = live.get_job("poll:newsroom")
        changed = CONFIG.replace('cron: "0 8 1 1 *"', 'cron: "30 9 * * *"').replace(
            '  - name: daily\n    cron: "0 7 1 1 *"\n    catch_up: 1m\n', ""
        )
        config_file.write_text(changed)
        service.reconfigure(load_config(config_file), service.templates)
        touched = reschedule(live, build_scheduler(service))
        jobs = {job.id: job for job in live.get_jobs()}
        assert touched == ["digest:daily", "digest:weekly"]
        assert set(jobs) == {"poll:newsroom", "digest:weekly", "dispatch"}
        assert "hour='9'" in str(jobs["digest:weekly"].trigger)
        assert "minute='30'" in str(jobs["digest:weekly"].trigger)
        # Unchanged interval jobs are left alone: their next run is not pushed back.
        assert jobs["poll:newsroom"].next_run_time == poll_job.next_run_time
        live.shutdown(wait=False)
    finally:
        service.close()


def test_a_file_saved_while_a_change_is_applied_is_seen_by_the_next_look(site: Path) -> None:
    """The watcher must not take as seen a save that landed after it loaded the files:
    here the config file is saved just as a template change is being applied."""
    from newsbroadcast.config.reload import ConfigWatcher

    config_file = site / "config/newsbroadcast.yaml"
    service = Service(load_config(config_file))
    watcher = ConfigWatcher(service, config_file)
    apply = service.reconfigure

    def apply_while_the_admin_saves(*args: object) -> None:
        apply(*args)  # type: ignore[arg-type]
        config_file.write_text(CONFIG.replace('cron: "0 8 1 1 *"', 'cron: "30 9 * * *"'))

    service.reconfigure = apply_while_the_admin_saves  # type: ignore[method-assign]
    html = site / "templates/email/digest.html.j2"
    html.write_text(html.read_text().replace("Read more", "Keep reading"))
    try:
        first = watcher.look()
        assert first is not None and first.applied
        assert service.config.digest("weekly").cron == "0 8 1 1 *"
        service.reconfigure = apply  # type: ignore[method-assign]
        second = watcher.look()
        assert second is not None and second.applied
        assert second.changed == [str(config_file)]
        assert service.config.digest("weekly").cron == "30 9 * * *"
    finally:
        service.close()
