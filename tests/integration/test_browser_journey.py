"""The whole subscriber journey in headless Chromium, against the app on a real port:

sign up → the confirmation email reaches the SMTP sink → open its link → confirm → change
preferences → unsubscribe with the one-click button → the next edition skips the address.

A screenshot of each page is kept under test-artifacts/browser-journey/. Needs Debian's
`chromium` and `chromium-driver` (.ci/run installs them); without them the test skips
locally and fails under CI.

Every page of the journey is checked with axe-core (vendored under tests/fixtures/axe-core,
MPL-2.0): no violation of moderate impact or worse. Once the subscriber picks French, the
pages that follow are in French; a French browser sees French from the first page.
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
AXE = ROOT / "tests" / "fixtures" / "axe-core" / "axe.min.js"
# axe-core's impacts are minor < moderate < serious < critical; minor ones are advice.
FAILING_IMPACTS = ("moderate", "serious", "critical")
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


def _chromium(tmp_path: Path, accept_languages: str) -> Iterator[object]:
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
    # What the browser sends as Accept-Language (headless Chromium ignores --lang).
    options.add_experimental_option("prefs", {"intl.accept_languages": accept_languages})
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)  # axe on a busy 2-core machine
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    yield from _chromium(tmp_path, "en-GB,en")


@pytest.fixture
def french_browser(tmp_path: Path) -> Iterator[object]:
    yield from _chromium(tmp_path, "fr-CA,fr;q=0.9,en;q=0.5")


def check_accessibility(driver: object, page: str) -> None:
    """Run axe-core on the page the browser shows; fail on any violation of moderate impact
    or worse, naming the rule and the elements."""
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(driver, WebDriver)
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then(r => done(r.violations), e => done([{id: 'axe-error', impact: 'critical',"
        "   help: String(e), nodes: []}]));"
    )
    bad = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
    assert not bad, f"{page}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n.get("target")) for n in v["nodes"][:5])
        for v in bad
    )


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
        check_accessibility(driver, name)

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
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        # Each language by its own name; the skip link leads to the <main> landmark.
        menu = Select(driver.find_element(By.ID, "language"))
        assert [o.text for o in menu.options] == ["English", "Français"]
        skip = driver.find_element(By.CSS_SELECTOR, "a.skip-link")
        assert skip.get_attribute("href").endswith("#main")
        assert driver.find_element(By.TAG_NAME, "main").get_attribute("id") == "main"
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
        # From now on the subscriber's pages speak the language just chosen.
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
        assert "Enregistré" in driver.find_element(By.ID, "saved").text
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
        assert "Vous êtes désabonné·e" in driver.find_element(By.ID, "done").text
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


def test_a_french_browser_signs_up_in_french_and_mends_a_mistyped_address(
    french_browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: WebDriver = french_browser  # type: ignore[assignment]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def submit(button_id: str) -> None:
        old_page = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, button_id).click()
        WebDriverWait(driver, 30).until(expected_conditions.staleness_of(old_page))

    def page(name: str) -> None:
        driver.save_screenshot(str(ARTIFACTS / f"fr-{name}.png"))
        check_accessibility(driver, f"fr-{name}")
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"

    with running_site(tmp_path, f"sqlite:///{tmp_path / 'journey.db'}") as site:
        driver.get(site.url + "/subscribe")
        page("signup")
        heading = driver.find_element(By.TAG_NAME, "h1").text
        assert heading == "Recevez le résumé de Women in Uniform"
        menu = Select(driver.find_element(By.ID, "language"))
        assert menu.first_selected_option.text == "Français"
        driver.find_element(By.ID, "email").send_keys("marie.example.org")  # no @
        driver.find_element(By.ID, "name").send_keys("Marie")
        submit("subscribe")
        page("signup-error")
        field = driver.find_element(By.ID, "email")
        # The error sits by its field, which keeps what was typed and says it is wrong.
        assert field.get_attribute("value") == "marie.example.org"
        assert field.get_attribute("aria-invalid") == "true"
        assert field.get_attribute("aria-describedby") == "email-error"
        assert "adresse électronique" in driver.find_element(By.ID, "email-error").text
        assert driver.find_element(By.ID, "name").get_attribute("value") == "Marie"
        field.clear()
        field.send_keys("marie@example.org")
        submit("subscribe")
        page("check-inbox")
        assert "Consultez votre boîte de réception" in driver.find_element(By.TAG_NAME, "h1").text

        (message,) = site.wait_for_mail("marie@example.org")
        assert message["Subject"] == "Confirmez votre abonnement à Women in Uniform"
        driver.get(confirm_link(message))
        page("confirm")
        submit("confirm")
        page("preferences-welcome")
        assert "votre abonnement est confirmé" in driver.find_element(By.ID, "welcome").text
        assert _status(site, "marie@example.org") == "active"
