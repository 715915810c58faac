"""The web app behind a reverse proxy, over real HTTP on SQLite and PostgreSQL: who the
client is, https-only headers, Retry-After, HEAD, ids out of range, error pages, /metrics
and the archive kept rendered until the next edition."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from newsbroadcast import db
from newsbroadcast.db.models import Article, Edition, EditionStatus
from newsbroadcast.service import Service
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.lifecycle import Preferences, SignupRequest, signup
from newsbroadcast.subscribers.registry import add_subscriber
from newsbroadcast.web import create_app
from newsbroadcast.web.server import BackgroundServer
from tests.integration.test_web_endpoints import csrf_of, status_of, write_story
from tests.site import Clock
from tests.smtp_sink import SmtpSink
from tests.web_site import SECRET, RunningSite, running_site, site_config

NO_CHOICE = Preferences(language="en")
MUST = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options")


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[RunningSite]:
    with running_site(tmp_path, database_url) as s:
        yield s


def secured(answer: httpx.Response) -> bool:
    return all(name in answer.headers for name in MUST)


def sign_up_from(client: httpx.Client, address: str, forwarded_for: str) -> httpx.Response:
    form = client.get("/subscribe")
    data = {"csrf": csrf_of(form), "email": address, "language": "en"}
    return client.post("/subscribe", data=data, headers={"x-forwarded-for": forwarded_for})


def test_behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_entry(
    tmp_path: Path, database_url: str
) -> None:
    # The test client connects from 127.0.0.1: the proxy. 10.0.0.0/8 is a second proxy tier.
    web = {"signups_per_client": 3, "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}
    with running_site(tmp_path, database_url, web=web) as site:
        client = httpx.Client(base_url=site.url)
        # What the client wrote sits left; its proxies append the address each one saw.
        for n, forged in enumerate(("1.1.1.1", "2.2.2.2, 10.9.9.9", "3.3.3.3")):
            answer = sign_up_from(client, f"a{n}@example.org", f"{forged}, 203.0.113.7, 10.0.0.5")
            assert answer.status_code == 200
        refused = sign_up_from(client, "late@example.org", "4.4.4.4, 203.0.113.7")
        assert refused.status_code == 429 and secured(refused)
        assert status_of(site, "late@example.org") is None
        # Every attempt came at the same clock time: the slot frees a whole window later.
        assert refused.headers["retry-after"] == "3600"
        site.clock.now += site.config.web.signup_window / 4
        later = sign_up_from(client, "late@example.org", "203.0.113.7")
        assert later.headers["retry-after"] == "2700"
        # Another client behind the same proxies has its own allowance.
        assert sign_up_from(client, "b@example.org", "203.0.113.8").status_code == 200


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    tmp_path: Path, database_url: str
) -> None:
    web = {"signups_per_client": 2, "trusted_proxies": ["192.0.2.1"]}  # not this socket peer
    with running_site(tmp_path, database_url, web=web) as site:
        client = httpx.Client(base_url=site.url)
        answers = [
            sign_up_from(client, f"x{n}@example.org", f"198.51.100.{n}").status_code
            for n in range(3)
        ]
        assert answers == [200, 200, 429]  # all one client: the socket's address
        page = httpx.get(f"{site.url}/subscribe", headers={"x-forwarded-proto": "https"})
        assert "secure" not in page.headers["set-cookie"].lower()


def test_x_forwarded_proto_from_a_trusted_proxy_makes_cookies_secure(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url, web={"trusted_proxies": ["127.0.0.1"]}) as site:
        plain = httpx.get(f"{site.url}/subscribe")
        assert "secure" not in plain.headers["set-cookie"].lower()
        assert "strict-transport-security" not in plain.headers  # public_url is http here
        tls = httpx.get(f"{site.url}/subscribe", headers={"x-forwarded-proto": "https"})
        assert "; secure" in tls.headers["set-cookie"].lower()


@contextmanager
def https_site(tmp_path: Path, database_url: str, **web: Any) -> Iterator[RunningSite]:
    """The app with site.public_url on https, reached (as from its proxy) over plain http."""
    with SmtpSink() as sink, BackgroundServer.bind() as server:
        config = site_config(tmp_path, "https://news.example.org", sink, web=web)
        engine = db.make_engine(database_url)
        db.upgrade(engine)
        clock = Clock()
        server.start(create_app(config, engine=engine, clock=clock))
        try:
            yield RunningSite(server.url, config, engine, db.sessions(engine), sink, clock)
        finally:
            engine.dispose()


def test_an_https_site_sends_hsts_and_secure_cookies_even_on_errors(
    tmp_path: Path, database_url: str
) -> None:
    with https_site(tmp_path, database_url) as site:
        client = httpx.Client(base_url=site.url)
        page = client.get("/subscribe")
        assert page.headers["strict-transport-security"] == "max-age=31536000"
        assert "; secure" in page.headers["set-cookie"].lower()
        for answer in (
            client.get("/nowhere"),  # 404
            client.post("/archive"),  # 405
            client.get("/archive?before=abc"),  # 400
        ):
            assert answer.status_code in (400, 404, 405)
            assert secured(answer) and "strict-transport-security" in answer.headers


def test_a_crash_answers_500_with_the_security_headers(tmp_path: Path) -> None:
    with https_site(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}") as site:
        with site.engine.begin() as conn:
            conn.execute(text("DROP TABLE edition_articles"))
            conn.execute(text("DROP TABLE editions"))  # the archive's query now fails
        answer = httpx.get(f"{site.url}/archive")
        assert answer.status_code == 500
        assert secured(answer) and "strict-transport-security" in answer.headers
        assert "Traceback" not in answer.text


def test_head_answers_like_get_and_never_acts(site: RunningSite) -> None:
    with site.sessions() as session:
        pending = signup(
            session, site.config, SignupRequest("p@example.org", NO_CHOICE), site.clock()
        )
        active, _ = add_subscriber(session, "a@example.org", site.clock())
        session.commit()
        assert pending is not None
        pending_id, active_id = pending.id, active.id
    client = httpx.Client(base_url=site.url)
    links = [
        f"/confirm/{tokens.sign(SECRET, 'confirm', pending_id)}",
        f"/unsubscribe/{tokens.sign(SECRET, 'unsubscribe', active_id)}",
        f"/preferences/{tokens.sign(SECRET, 'preferences', active_id)}",
    ]
    for path in ["/subscribe", "/archive", "/archive.atom", "/healthz", *links]:
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
    assert status_of(site, "p@example.org") == "pending"
    assert status_of(site, "a@example.org") == "active"


@pytest.mark.parametrize(
    "path",
    [
        "/archive?before=99999999999999999999999",
        "/archive/99999999999999999999",
        "/archive/9223372036854775808",  # 2**63: past SQLite's integers
        "/archive/9223372036854775807",
        "/archive/2147483648",  # 2**31: past PostgreSQL's integer
        "/archive?before=9223372036854775808",
    ],
)
def test_ids_out_of_range_are_not_found(site: RunningSite, path: str) -> None:
    answer = httpx.get(site.url + path)
    assert answer.status_code == 404 and secured(answer)


def test_before_takes_only_ascii_digits(site: RunningSite) -> None:
    # "²".isdigit() is True in Python, but int("²") fails.
    answer = httpx.get(site.url + "/archive", params={"before": "²"})
    assert answer.status_code == 400 and secured(answer)


def test_metrics_are_not_public_on_the_subscribers_port(site: RunningSite) -> None:
    assert httpx.get(site.url + "/metrics").status_code == 404


def test_metrics_with_a_bearer_token(tmp_path: Path, database_url: str) -> None:
    token = "scrape-token-0123456789"
    with running_site(tmp_path, database_url, web={"metrics_token": token}) as site:
        url = site.url + "/metrics"
        assert httpx.get(url).status_code == 401
        wrong = httpx.get(url, headers={"authorization": "Bearer nope-0123456789abcdef"})
        assert wrong.status_code == 401 and secured(wrong)
        good = httpx.get(url, headers={"authorization": f"Bearer {token}"})
        assert good.status_code == 200
        assert "newsbroadcast_queue_depth" in good.text


def test_the_archive_is_rendered_once_until_the_next_edition(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        write_story(site, tmp_path)
        service = Service(site.config, engine=site.engine, clock=site.clock)
        service.poll()
        first = service.plan_digest(site.config.digest("daily"), force=True)
        assert first is not None
        client = httpx.Client(base_url=site.url)
        paths = ["/archive", "/archive.atom", f"/archive/{first.edition_id}"]
        before = {path: client.get(path) for path in paths}
        # A change the archive version does not see: the kept pages are served.
        with site.sessions() as session:
            session.execute(update(Article).values(title="Retitled after the fact"))
            session.commit()
        for path, answer in before.items():
            again = client.get(path)
            assert again.status_code == 200 and again.content == answer.content, path
            assert again.headers["etag"] == answer.headers["etag"], path
            assert "set-cookie" not in again.headers, path
            cached = client.get(path, headers={"if-none-match": answer.headers["etag"]})
            assert cached.status_code == 304 and cached.content == b"", path
            assert secured(cached), path
        # `*` matches any page that exists, and no page that does not.
        assert client.get("/archive", headers={"if-none-match": "*"}).status_code == 304
        missing = client.get(f"/archive/{first.edition_id + 99}", headers={"if-none-match": "*"})
        assert missing.status_code == 404

        # A new edition is a new archive version: every page is fresh.
        second = service.plan_digest(site.config.digest("weekly"), force=True)
        assert second is not None
        for path, answer in before.items():
            fresh = client.get(path, headers={"if-none-match": answer.headers["etag"]})
            assert fresh.status_code == 200, path
            assert fresh.headers["etag"] != answer.headers["etag"], path
        assert "Retitled after the fact" in client.get("/archive.atom").text

        # A paused edition leaves the archive at once.
        feed_tag = client.get("/archive.atom").headers["etag"]
        with site.sessions() as session:
            session.execute(
                update(Edition)
                .where(Edition.id == second.edition_id)
                .values(status=EditionStatus.paused)
            )
            session.commit()
        assert client.get("/archive.atom").headers["etag"] != feed_tag
        assert client.get(f"/archive/{second.edition_id}").status_code == 404
        service.close()
