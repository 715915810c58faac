"""The whole subscriber journey in headless Chromium, against the app on a real port:

sign up → the confirmation email reaches the SMTP sink → open its link → confirm → change
preferences → unsubscribe with the one-click button → the next edition skips the address.

A screenshot of each page is kept under test-artifacts/browser-journey/. Needs Debian's
`chromium` and `chromium-driver` (.ci/run installs them); without them the test skips
locally and fails under CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from newsbroadcast.db.models import Delivery, SendStatus, Subscriber
from newsbroadcast.service import Service
from newsbroadcast.subscribers.lifecycle import find_by_email, get_preferences
from newsbroadcast.subscribers.registry import add_subscriber
from tests.conftest import ROOT
from tests.integration.test_web_endpoints import TITLE, write_story
from tests.web_site import RunningSite, confirm_link, running_site

ARTIFACTS = ROOT / "test-artifacts" / "browser-journey"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=900,1200",
)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install -y {package} (.ci/run does this)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_sign_up_confirm_prefer_unsubscribe_then_skipped(browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = iter(range(1, 100))

    def shot(name: str) -> None:
        driver.save_screenshot(str(ARTIFACTS / f"{next(shots):02d}-{name}.png"))

    def submit(button_id: str) -> None:
        # click() returns once the event is dispatched, not when the next page has loaded: on a
        # busy machine the old page is still there, so wait until it has been replaced.
        old_page = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, button_id).click()
        WebDriverWait(driver, 30).until(expected_conditions.staleness_of(old_page))

    with running_site(tmp_path, f"sqlite:///{tmp_path / 'journey.db'}") as site:
        write_story(site, tmp_path)
        control = _active(site, "control@example.org")

        driver.get(site.url + "/subscribe")
        shot("signup")
        driver.find_element(By.ID, "email").send_keys("journey@example.org")
        driver.find_element(By.ID, "name").send_keys("Jo Urney")
        submit("subscribe")
        assert "Check your inbox" in driver.find_element(By.TAG_NAME, "h1").text
        shot("check-inbox")
        assert _status(site, "journey@example.org") == "pending"

        (message,) = site.wait_for_mail("journey@example.org")
        driver.get(confirm_link(message))
        shot("confirm")
        submit("confirm")
        assert driver.find_element(By.ID, "welcome").is_displayed()
        shot("preferences-welcome")
        assert _status(site, "journey@example.org") == "active"

        driver.find_element(By.ID, "digest-daily").click()
        driver.find_element(By.ID, "topic-1").click()  # Peacekeeping
        Select(driver.find_element(By.ID, "language")).select_by_value("fr")
        submit("save")
        assert driver.find_element(By.ID, "saved").is_displayed()
        shot("preferences-saved")
        with site.sessions() as session:
            sub = find_by_email(session, "journey@example.org")
            assert sub is not None
            prefs = get_preferences(session, sub)
        assert (prefs.digests, prefs.topics, prefs.language) == (
            ("daily",),
            ("peacekeeping",),
            "fr",
        )

        submit("unsubscribe")
        shot("unsubscribe")
        assert _status(site, "journey@example.org") == "active"  # the page alone does nothing
        submit("unsubscribe")
        assert "You are unsubscribed" in driver.find_element(By.ID, "done").text
        shot("unsubscribed")
        assert _status(site, "journey@example.org") == "unsubscribed"

        service = Service(site.config, engine=site.engine, clock=site.clock)
        service.poll()
        edition = service.plan_digest(site.config.digest("daily"), force=True)
        assert edition is not None
        service.dispatch()
        service.close()
        with site.sessions() as session:
            delivered = session.scalars(
                select(Delivery.subscriber_id).where(
                    Delivery.edition_id == edition.edition_id,
                    Delivery.status == SendStatus.sent,
                )
            ).all()
        assert delivered == [control]
        # The confirmation was the only message to the address; the digest went to control.
        assert site.sink.recipients().count("journey@example.org") == 1
        assert "control@example.org" in site.sink.recipients()

        driver.get(f"{site.url}/archive/{edition.edition_id}")
        assert TITLE in driver.page_source
        shot("archive-edition")


def _active(site: RunningSite, address: str) -> int:
    with site.sessions() as session:
        sub, _ = add_subscriber(session, address, site.clock())
        session.commit()
        return sub.id


def _status(site: RunningSite, address: str) -> str | None:
    with site.sessions() as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
        return None if sub is None else str(sub.status)
