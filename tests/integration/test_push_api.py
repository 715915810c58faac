"""The push API over real HTTP: uvicorn on a loopback port serving our router."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette

from newsbroadcast.articles.push import hash_token
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article, SourceState
from newsbroadcast.web.api import routes
from tests.conftest import ROOT
from tests.integration.test_source_html import make_config

TOKEN = "s3cret-push-token-for-tests"


@pytest.fixture
def api(engine: Engine, tmp_path: Path) -> Iterator[str]:
    config = make_config(tmp_path, api={"tokens": [hash_token(TOKEN)]})
    app = Starlette(routes=routes(config, sessions(engine)))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/articles"
    finally:
        server.should_exit = True
        thread.join(10)


STORY = {
    "guid": "cms-4711",
    "title": "Women peacekeepers join UN mission in South Sudan",
    "url": "https://newsroom.example.org/news/peacekeepers",
    "summary": "<p>Forty officers arrived in Juba.</p>",
    "tags": ["Peacekeeping"],
    "published_at": "2025-05-23T09:15:00+02:00",
}


JSON = {"Content-Type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def count(engine: Engine) -> int:
    with sessions(engine)() as s:
        return int(s.scalar(select(func.count()).select_from(Article)) or 0)


def test_a_pushed_article_is_stored_once(api: str, engine: Engine) -> None:
    first = httpx.post(api, json=STORY, headers=bearer(TOKEN))
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "created" and first.json()["guid"] == "cms-4711"

    # A client retrying after a timeout sends the same thing again.
    second = httpx.post(api, json=STORY, headers=bearer(TOKEN))
    assert second.status_code == 200
    assert second.json() == {**first.json(), "status": "unchanged"}
    assert count(engine) == 1

    with sessions(engine)() as s:
        article = s.scalars(select(Article)).one()
        assert article.source == "push" and article.tags == ["Peacekeeping"]
        assert article.published_at is not None and article.published_at.hour == 7
        state = s.get(SourceState, "push")
        assert state is not None and state.items_seen == 2 and state.last_success_at


def test_wrong_or_missing_token_is_refused(api: str, engine: Engine) -> None:
    for headers in (bearer("guessed"), {}, {"Authorization": f"Basic {TOKEN}"}):
        reply = httpx.post(api, json=STORY, headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Bearer")
    # The hash itself is not a token.
    assert httpx.post(api, json=STORY, headers=bearer(hash_token(TOKEN))).status_code == 401
    assert count(engine) == 0


def test_a_bad_body_names_each_field(api: str, engine: Engine) -> None:
    bad = {
        **STORY,
        "title": "",
        "url": "javascript:alert(1)",
        "published_at": "2025-05-23T09:15:00",  # no offset: ambiguous
        "colour": "red",
    }
    reply = httpx.post(api, json=bad, headers=bearer(TOKEN))
    assert reply.status_code == 422
    fields = {e["field"]: e["message"] for e in reply.json()["fields"]}
    assert set(fields) == {"title", "url", "published_at", "colour"}
    assert fields["url"] == "must be an http(s) URL"
    assert fields["colour"] == "unknown field"
    assert "timezone" in fields["published_at"].lower()

    missing = httpx.post(api, json={"title": "No guid"}, headers=bearer(TOKEN))
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["fields"]] == ["guid"]

    not_json = httpx.post(api, content=b"{title:", headers={**bearer(TOKEN), **JSON})
    assert not_json.status_code == 400 and not_json.json()["error"] == "bad_json"
    assert count(engine) == 0


def stored(engine: Engine) -> Article:
    with sessions(engine)() as s:
        return s.scalars(select(Article)).one()


def test_a_repeat_changes_only_the_fields_it_sends(api: str, engine: Engine) -> None:
    assert httpx.post(api, json=STORY, headers=bearer(TOKEN)).status_code == 201
    bare = {"guid": STORY["guid"], "title": STORY["title"]}
    again = httpx.post(api, json=bare, headers=bearer(TOKEN))
    assert again.status_code == 200 and again.json()["status"] == "unchanged", again.text
    article = stored(engine)
    assert article.url == STORY["url"]
    assert article.summary == STORY["summary"] and article.tags == ["Peacekeeping"]
    assert article.published_at is not None

    # A field that is sent replaces the stored one, even when it is sent empty.
    edit = {**bare, "summary": "<p>Forty-two officers arrived in Juba.</p>", "tags": []}
    edited = httpx.post(api, json=edit, headers=bearer(TOKEN))
    assert edited.json()["status"] == "updated", edited.text
    article = stored(engine)
    assert article.summary == edit["summary"] and article.tags == []
    assert article.url == STORY["url"] and article.image is None
    assert count(engine) == 1


def test_nfc_and_nfd_spellings_of_a_guid_are_one_article(api: str, engine: Engine) -> None:
    nfc, nfd = "cms-caf\u00e9-1", "cms-cafe\u0301-1"
    first = httpx.post(api, json={"guid": nfd, "title": "Caf\u00e9 talk"}, headers=bearer(TOKEN))
    assert first.status_code == 201 and first.json()["guid"] == nfc
    second = httpx.post(api, json={"guid": nfc, "title": "Caf\u00e9 talk"}, headers=bearer(TOKEN))
    assert second.status_code == 200, second.text
    assert count(engine) == 1 and stored(engine).guid == nfc


def test_only_a_json_body_is_taken(api: str, engine: Engine) -> None:
    body = json.dumps(STORY).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**bearer(TOKEN), **({"Content-Type": content_type} if content_type else {})}
        reply = httpx.post(api, content=body, headers=headers)
        assert reply.status_code == 415, (content_type, reply.text)
        assert reply.json()["error"] == "unsupported_media_type"
    charset = {**bearer(TOKEN), "Content-Type": "Application/JSON; charset=utf-8"}
    assert httpx.post(api, content=body, headers=charset).status_code == 201
    assert count(engine) == 1


def test_every_malformed_body_is_a_4xx_with_a_json_reason(api: str, engine: Engine) -> None:
    headers = {**bearer(TOKEN), **JSON}
    story = json.dumps(STORY)
    for body, status in (
        (b"[" * 100_000 + b"]" * 100_000, 400),  # deeper than Python's stack
        (b'{"guid": "\xff\xfe", "title": "x"}', 400),  # not UTF-8
        (b'{"guid": "x", "title": "\\ud800"}', 422),  # a lone surrogate
        (b'{"guid": "x", "title": "x", "published_at": "9999-12-31T23:00:00-14:00"}', 422),
        (b'{"guid": "x", "title": "x", "tags": [[["deep"]]]}', 422),
        (b'{"guid": "x", "title": "x", "author": {"name": "A"}}', 422),
        (b"[" + story.encode() + b"]", 422),  # a list, not one article
        (b'"just a string"', 422),
        (b"", 400),
        (b"1" * 5000, 400),  # more digits than Python turns into an int
    ):
        reply = httpx.post(api, content=body, headers=headers)
        assert reply.status_code == status, (body[:60], reply.status_code, reply.text[:200])
        assert reply.headers["content-type"] == "application/json"
        assert reply.json()["error"] in ("bad_json", "invalid")
    assert count(engine) == 0


def test_the_api_answers_other_methods_and_paths_in_json(tmp_path: Path) -> None:
    """Through the whole web app, whose own 404/405 pages are HTML for people."""
    from starlette.testclient import TestClient

    from newsbroadcast.web.pages import create_app

    config = make_config(
        tmp_path,
        api={"tokens": [hash_token(TOKEN)]},
        templates=str(ROOT / "templates"),
        database={"url": f"sqlite:///{tmp_path / 'web.db'}"},
    )
    client = TestClient(create_app(config))
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        reply = client.request(method, "/api/articles", headers=bearer(TOKEN))
        assert reply.status_code == 405, method
        assert reply.headers["allow"] == "POST"
        assert reply.json()["error"] == "method_not_allowed"
    missing = client.post("/api/article", json=STORY, headers=bearer(TOKEN))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.post("/api/articles", json=STORY, headers=bearer(TOKEN)).status_code == 201


def test_the_subscriber_web_app_serves_the_push_api(tmp_path: Path) -> None:
    """`newsbroadcast serve` carries POST /api/articles: no second server to run."""
    from starlette.testclient import TestClient

    from newsbroadcast.web.pages import create_app

    token = "push-token-for-the-web-app"
    config = make_config(
        tmp_path,
        api={"tokens": [hash_token(token)]},
        templates=str(ROOT / "templates"),
        database={"url": f"sqlite:///{tmp_path / 'web.db'}"},
    )
    client = TestClient(create_app(config))
    body = {
        "guid": "web-app-1",
        "title": "Pushed through serve",
        "url": "https://newsroom.example.org/pushed-through-serve",
    }
    assert client.post("/api/articles", json=body).status_code == 401
    ok = client.post("/api/articles", json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 201, ok.text


def test_the_web_app_serves_prometheus_metrics(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from newsbroadcast.web.pages import create_app

    config = make_config(
        tmp_path,
        templates=str(ROOT / "templates"),
        database={"url": f"sqlite:///{tmp_path / 'web.db'}"},
        web={"metrics_token": "scrape-token-0123456789"},  # not public without one
    )
    auth = {"Authorization": "Bearer scrape-token-0123456789"}
    page = TestClient(create_app(config)).get("/metrics", headers=auth)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert 'newsbroadcast_queue_depth{kind="delivery",status="queued"} 0.0' in page.text
