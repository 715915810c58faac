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
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from newsbroadcast.db.models import Delivery, SendStatus, Subscriber
from newsbroadcast.service import Service
from newsbroadcast.subscribers.lifecycle import find_by_email, get_preferences
from newsbroadcast.subscribers.registry import add_subscriber
from tests.conftest import ROOT
from tests.integration.test_web_endpoints import TITLE, write_story
from tests.site import rss
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


# --- the digest as readers see it (issue #16) -------------------------------------------------


DIGEST_ARTIFACTS = ROOT / "test-artifacts" / "digest"
PICTURE = "/pictures/graduation.png"
UNDATED = "A note from the desk, without a date"


def _png(width: int, height: int) -> bytes:
    """A real PNG (a blue-to-sand gradient), so the browser has a picture to lay out."""
    import struct
    import zlib

    rows = b"".join(
        b"\0" + bytes((40 + y * 180 // height, 70 + y * 120 // height, 120)) * width
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _digest_feed(folder: Path, picture_url: str, now: datetime) -> None:
    long = "Forty officers completed twelve weeks of training at the academy. " * 80
    items = [
        # A declared picture (media:content) beside an <img> in the summary.
        (
            "Rwanda's first women border officers graduate",
            f'<media:content url="{picture_url}" medium="image" width="1200" height="630"/>',
            f"<p>{long}</p><p><img src=x onerror=alert(1)></p>",
            now - timedelta(hours=1),
        ),
        # Only an <img> in its summary: no picture at all.
        (
            "Kyrgyz border guards train for winter posts",
            "",
            "<p>For the first time, women officers joined the course.</p><img src=x>",
            now - timedelta(hours=2),
        ),
        (UNDATED, "", "Loose text without any paragraph markup, then a link.", None),
    ]
    xml = "".join(
        f"<item><title>{title}</title><link>https://newsroom.example.org/{i}</link>"
        f"<guid>digest-{i}</guid>{extra}"
        + (f"<pubDate>{format_datetime(published)}</pubDate>" if published else "")
        + f"<description><![CDATA[{summary}]]></description></item>"
        for i, (title, extra, summary, published) in enumerate(items)
    )
    media = 'xmlns:media="http://search.yahoo.com/mrss/"'
    (folder / "feed.xml").write_text(
        rss(xml).replace('<rss version="2.0">', f'<rss version="2.0" {media}>'), encoding="utf-8"
    )


def test_the_digest_at_phone_and_desktop_width_light_and_dark(
    browser: object, tmp_path: Path
) -> None:
    """The digest a subscriber got, opened in Chromium at 375 and 1200 px, light and dark:
    every picture loads (no broken image from a summary's <img>), nothing is wider than a
    phone, and the screenshots are kept under test-artifacts/digest/ to look at."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.site_server import serve

    driver: WebDriver = browser  # type: ignore[assignment]
    DIGEST_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages: dict[str, bytes] = {}
    overrides = {
        PICTURE: lambda _: (200, {"Content-Type": "image/png"}, _png(1200, 630)),
        "/digest.html": lambda _: (200, {"Content-Type": "text/html"}, pages["digest"]),
    }
    with (
        serve(tmp_path, overrides) as pictures,
        running_site(tmp_path, f"sqlite:///{tmp_path / 'digest.db'}") as site,
    ):
        _digest_feed(tmp_path, pictures.url(PICTURE), site.clock.now)
        with site.sessions() as session:
            add_subscriber(session, "reader@example.org", site.clock(), name="Ama")
            session.commit()
        service = Service(site.config, engine=site.engine, clock=site.clock)
        service.poll()
        assert service.plan_digest(site.config.digest("daily"), force=True) is not None
        service.dispatch()
        service.close()
        (message,) = site.wait_for_mail("reader@example.org")
        html = message.get_body(("html",))
        assert html is not None
        pages["digest"] = html.get_content().encode()

        for width in (375, 1200):
            for scheme in ("light", "dark"):
                driver.execute_cdp_cmd(
                    "Emulation.setEmulatedMedia",
                    {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
                )
                metrics = {"width": width, "height": 900, "deviceScaleFactor": 1}
                driver.execute_cdp_cmd(
                    "Emulation.setDeviceMetricsOverride", {**metrics, "mobile": width < 600}
                )
                driver.get(pictures.url("/digest.html"))
                # Loading is over once every picture is complete (loaded or failed).
                WebDriverWait(driver, 30).until(
                    lambda d: d.execute_script("return [...document.images].every(i => i.complete)")
                )
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.execute_cdp_cmd(
                    "Emulation.setDeviceMetricsOverride",
                    {**metrics, "height": height, "mobile": width < 600},
                )
                driver.save_screenshot(str(DIGEST_ARTIFACTS / f"digest-{width}-{scheme}.png"))

                pictures_shown = driver.execute_script(
                    "return [...document.images].map(i => [i.src, i.naturalWidth, i.width])"
                )
                assert [(src, loaded > 0) for src, loaded, _ in pictures_shown] == [
                    (pictures.url(PICTURE), True)
                ]
                assert all(shown <= min(width, 544) for _, _, shown in pictures_shown)
                wide = driver.execute_script("return document.documentElement.scrollWidth")
                assert wide <= width, f"{wide} px wide at {width} px"
                assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1
                titles = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".story-title")]
                assert titles[-1] == UNDATED
                card = driver.execute_script(
                    "return getComputedStyle(document.querySelector('.card')).backgroundColor"
                )
                assert card == ("rgb(26, 36, 51)" if scheme == "dark" else "rgb(255, 255, 255)")


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
