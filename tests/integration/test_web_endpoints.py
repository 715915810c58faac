"""Each web endpoint over real HTTP (httpx → uvicorn on 127.0.0.1), on SQLite and PostgreSQL,
with good, tampered, expired and foreign tokens."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from newsbroadcast.db.models import (
    Delivery,
    Edition,
    EditionStatus,
    SendStatus,
    Subscriber,
    SubscriberStatus,
)
from newsbroadcast.service import Service
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.lifecycle import find_by_email, get_preferences
from newsbroadcast.subscribers.registry import add_subscriber
from newsbroadcast.subscribers.suppressions import suppress
from tests.site import write_feed
from tests.web_site import OLD_SECRET, SECRET, RunningSite, confirm_link, running_site

TITLE = "Rwanda sends all-woman unit"


def write_story(site: RunningSite, folder: Path) -> None:
    """The site's feed holds one story, TITLE, on its first topic."""
    write_feed(
        folder / "feed.xml", 1, now=site.clock.now, titles={0: TITLE}, tags={0: ["Peacekeeping"]}
    )


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> RunningSite:
    with running_site(tmp_path, database_url) as s:
        yield s


def csrf_of(page: httpx.Response) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, "the page has no CSRF field"
    return m.group(1)


def sign_up(client: httpx.Client, address: str, **fields: object) -> httpx.Response:
    form = client.get("/subscribe")
    data = {"csrf": csrf_of(form), "email": address, "name": "Ada", "language": "en", **fields}
    return client.post("/subscribe", data=data)


def active_subscriber(site: RunningSite, address: str) -> int:
    with site.sessions() as session:
        sub, _ = add_subscriber(session, address, site.clock())
        session.commit()
        return sub.id


def status_of(site: RunningSite, address: str) -> str | None:
    with site.sessions() as session:
        sub = find_by_email(session, address)
        return None if sub is None else str(sub.status)


def test_signup_sends_one_confirmation_and_confirming_activates(site: RunningSite) -> None:
    client = httpx.Client(base_url=site.url)
    answer = sign_up(client, "ada@example.org", digests=["weekly"], topics=["Border"])
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    assert status_of(site, "ada@example.org") == "pending"

    (message,) = site.wait_for_mail("ada@example.org")
    assert message["Subject"] == "Please confirm your subscription to Women in Uniform"
    link = confirm_link(message)
    assert link.startswith(site.url + "/confirm/")

    # A GET shows a button and changes nothing (mail scanners open links).
    page = client.get(link)
    assert page.status_code == 200 and 'id="confirm"' in page.text
    assert status_of(site, "ada@example.org") == "pending"
    done = client.post(link, data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/preferences/")
    assert status_of(site, "ada@example.org") == "active"
    prefs_page = client.get(done.headers["location"])
    assert "your subscription is confirmed" in prefs_page.text

    with site.sessions() as session:
        sub = find_by_email(session, "ada@example.org")
        assert sub is not None
        prefs = get_preferences(session, sub)
    assert prefs.digests == ("weekly",) and prefs.topics == ("border",)


def test_same_answer_whoever_the_address_and_no_repeat_emails(site: RunningSite) -> None:
    active_subscriber(site, "known@example.org")
    with site.sessions() as session:
        suppress(session, "blocked@example.org", "test", site.clock())
        session.commit()
    client = httpx.Client(base_url=site.url)

    def body(address: str) -> str:
        answer = sign_up(client, address)
        assert answer.status_code == 200
        # The CSRF field differs per page; everything else must be identical.
        return re.sub(r'name="csrf" value="[^"]+"', "", answer.text)

    pages = {body(a) for a in ("new@example.org", "known@example.org", "blocked@example.org")}
    assert len(pages) == 1

    for _ in range(3):
        sign_up(client, "new@example.org")
    site.wait_for_mail("new@example.org")
    # Later sign-ups within resend_after sent nothing more; the known and blocked got none.
    site.clock.now += timedelta(minutes=1)
    sign_up(client, "new@example.org")
    assert site.sink.recipients().count("new@example.org") == 1
    assert "known@example.org" not in site.sink.recipients()
    assert "blocked@example.org" not in site.sink.recipients()
    assert status_of(site, "blocked@example.org") is None

    # After the window, a second confirmation may go out.
    site.clock.now += site.config.web.resend_after
    sign_up(client, "new@example.org")
    site.wait_for_mail("new@example.org", count=2)


def test_signup_rate_limit_per_client(tmp_path: Path, database_url: str) -> None:
    with running_site(tmp_path, database_url, web={"signups_per_client": 2}) as site:
        client = httpx.Client(base_url=site.url)
        assert sign_up(client, "a@example.org").status_code == 200
        assert sign_up(client, "b@example.org").status_code == 200
        refused = sign_up(client, "c@example.org")
        assert refused.status_code == 429
        assert status_of(site, "c@example.org") is None
        site.clock.now += site.config.web.signup_window
        assert sign_up(client, "c@example.org").status_code == 200


def test_forms_need_the_csrf_token(site: RunningSite) -> None:
    client = httpx.Client(base_url=site.url)
    client.get("/subscribe")  # has the cookie, but sends no field
    assert client.post("/subscribe", data={"email": "x@example.org"}).status_code == 403
    other = httpx.Client(base_url=site.url)  # a field from another browser's page
    field = csrf_of(other.get("/subscribe"))
    answer = client.post("/subscribe", data={"email": "x@example.org", "csrf": field})
    assert answer.status_code == 403
    assert status_of(site, "x@example.org") is None

    sid = active_subscriber(site, "p@example.org")
    token = tokens.sign(SECRET, "preferences", sid)
    client.get(f"/preferences/{token}")
    posted = client.post(f"/preferences/{token}", data={"paused": "on"})
    assert posted.status_code == 403
    with site.sessions() as session:
        assert session.get_one(Subscriber, sid).paused is False


def test_preferences_change_with_good_token_and_rotated_secret(site: RunningSite) -> None:
    sid = active_subscriber(site, "p@example.org")
    client = httpx.Client(base_url=site.url)
    for secret in (SECRET, OLD_SECRET):  # links signed before a rotation keep working
        token = tokens.sign(secret, "preferences", sid)
        page = client.get(f"/preferences/{token}")
        assert page.status_code == 200 and "p@example.org" in page.text
        assert page.headers["cache-control"] == "no-store"
    saved = client.post(
        f"/preferences/{token}",
        data={
            "csrf": csrf_of(page),
            "digests": ["daily"],
            "topics": ["Peacekeeping", "Not offered"],
            "language": "fr",
            "paused": "on",
        },
    )
    assert saved.status_code == 200 and 'id="saved"' in saved.text
    with site.sessions() as session:
        prefs = get_preferences(session, session.get_one(Subscriber, sid))
    assert prefs.digests == ("daily",)
    assert prefs.topics == ("peacekeeping",)  # what the site does not offer is dropped
    assert prefs.language == "fr" and prefs.paused is True


@pytest.mark.parametrize("purpose", ["confirm", "preferences", "unsubscribe"])
def test_bad_tokens_are_refused_and_change_nothing(site: RunningSite, purpose: str) -> None:
    sid = active_subscriber(site, "t@example.org")
    with site.sessions() as session:
        session.get_one(Subscriber, sid).status = SubscriberStatus.pending
        session.commit()
    now = site.clock()
    good = tokens.sign(SECRET, purpose, sid, now + timedelta(days=1))
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    expired = tokens.sign(SECRET, purpose, sid, now - timedelta(seconds=1))
    foreign = tokens.sign("another-site-secret-0123456789", purpose, sid)
    other_purpose = tokens.sign(
        SECRET, "preferences" if purpose != "preferences" else "confirm", sid
    )
    client = httpx.Client(base_url=site.url)
    for token, code in (
        (tampered, 400),
        (foreign, 400),
        (other_purpose, 400),
        (expired, 410),
        ("not-a-token!", 400),
    ):
        page = client.get(f"/{purpose}/{token}")
        assert page.status_code == code, (token, page.status_code)
        posted = client.post(
            f"/{purpose}/{token}",
            data={"List-Unsubscribe": "One-Click", "csrf": "x", "paused": "on"},
        )
        assert posted.status_code == code
    assert status_of(site, "t@example.org") == "pending"
    assert client.get(f"/{purpose}/{good}").status_code == 200


def test_one_click_unsubscribe_stops_a_delivery_already_queued(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        write_story(site, tmp_path)
        service = Service(site.config, engine=site.engine, clock=site.clock)
        stays = active_subscriber(site, "stays@example.org")
        leaves = active_subscriber(site, "leaves@example.org")
        service.poll()
        edition = service.plan_digest(site.config.digest("daily"), force=True)
        assert edition is not None
        assert edition.deliveries == 2

        token = tokens.sign(SECRET, "unsubscribe", leaves)
        # The GET (a mail scanner) changes nothing.
        assert httpx.get(f"{site.url}/unsubscribe/{token}").status_code == 200
        assert status_of(site, "leaves@example.org") == "active"
        # Exactly what a mailbox provider sends (RFC 8058): no cookie, no CSRF token.
        answer = httpx.post(
            f"{site.url}/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200
        assert status_of(site, "leaves@example.org") == "unsubscribed"
        # Any other body is not an unsubscribe.
        keep = tokens.sign(SECRET, "unsubscribe", stays)
        assert httpx.post(f"{site.url}/unsubscribe/{keep}", data={"x": "1"}).status_code == 400

        service.dispatch()
        assert site.sink.recipients() == ["stays@example.org"]
        with site.sessions() as session:
            rows = dict(session.execute(select(Delivery.subscriber_id, Delivery.status)).all())
        assert rows == {stays: SendStatus.sent, leaves: SendStatus.skipped}
        service.close()


def test_security_headers_and_no_open_redirect(site: RunningSite) -> None:
    client = httpx.Client(base_url=site.url)
    for path in ("/subscribe", "/archive", "/archive.atom", "/static/site.css", "/nowhere"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    cookie = httpx.get(f"{site.url}/subscribe").headers.get("set-cookie", "")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    for path in (
        "//evil.example/",
        "/subscribe/",
        "/subscribe?next=https://evil.example/",
        "/archive/?url=//evil.example",
    ):
        answer = client.get(path)
        assert answer.status_code in (200, 404), path
        assert "location" not in answer.headers, path


def test_archive_pages_and_atom_feed_hold_nothing_personal(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        write_story(site, tmp_path)
        service = Service(site.config, engine=site.engine, clock=site.clock)
        active_subscriber(site, "private.person@example.org")
        service.poll()
        edition = service.plan_digest(site.config.digest("daily"), force=True)
        assert edition is not None
        service.dispatch()
        client = httpx.Client(base_url=site.url)
        listing = client.get("/archive")
        assert f'href="/archive/{edition.edition_id}"' in listing.text
        page = client.get(f"/archive/{edition.edition_id}")
        assert page.status_code == 200 and TITLE in page.text
        feed = client.get("/archive.atom")
        assert feed.headers["content-type"].startswith("application/atom+xml")
        assert TITLE in feed.text
        assert f"{site.url}/archive/{edition.edition_id}" in feed.text
        for text in (page.text, feed.text):
            assert "private.person" not in text
            assert "/unsubscribe/" not in text and "/preferences/" not in text
        assert client.get("/archive/999999").status_code == 404
        service.close()


def test_the_archive_pages_back_through_every_edition(tmp_path: Path, database_url: str) -> None:
    with running_site(tmp_path, database_url) as site:
        with site.sessions() as session:
            session.add_all(
                Edition(
                    digest="daily",
                    period=f"2026-01-{n:03d}",
                    status=EditionStatus.done,
                    subject=f"Digest number {n}",
                    cutoff=site.clock(),
                )  # fmt: skip
                for n in range(1, 121)
            )
            session.add(
                Edition(
                    digest="daily",
                    period="paused",
                    status=EditionStatus.paused,
                    subject="Not public",
                    cutoff=site.clock(),
                )  # fmt: skip
            )
            session.commit()
        client = httpx.Client(base_url=site.url)
        seen: list[str] = []
        path: str | None = "/archive"
        pages = 0
        while path:
            page = client.get(path)
            assert page.status_code == 200
            seen += re.findall(r"Digest number (\d+)<", page.text)
            older = re.search(r'id="older" href="([^"]+)"', page.text)
            path = older.group(1) if older else None
            pages += 1
        assert pages == 3  # 50 + 50 + 20
        assert seen == [str(n) for n in range(120, 0, -1)]  # newest first, each once
        assert "Not public" not in client.get("/archive?before=1000").text
        assert client.get("/archive?before=abc").status_code == 400
