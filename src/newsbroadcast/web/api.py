"""The push API: ``POST /api/articles`` stores one article sent by another system.

Authentication is a bearer token; the config holds only its SHA-256 (``api.tokens``), so a
leaked config file gives no token away. The JSON body is validated (unknown fields are
refused, so a typo is not silently dropped) and a 422 names each wrong field. Pushing the
same ``guid`` again stores nothing new (200, or the edit is kept as an edit): a client may
retry freely after a timeout. A repeat changes only the fields it sends: a field left out
keeps what is stored. Guids are compared NFC-normalised, so the same text typed on two
systems is one story.

Every answer under ``/api`` is JSON, errors included: 401, 405 (another method), 413,
415 (a body that is not ``application/json``), 400 (not JSON), 422 (a wrong field).

Mount with ``Starlette(routes=[*routes(config, sessions), ...])``.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from newsbroadcast.articles.push import store_pushed, token_matches
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Article, utcnow
from newsbroadcast.sources.base import ArticleDraft
from newsbroadcast.sources.urls import canonical_url
from newsbroadcast.web.security import read_body

__all__ = ["PushedArticle", "routes"]

MAX_BODY_BYTES = 1024 * 1024
HttpURL = Annotated[str, Field(pattern=r"^https?://[^\s/]+\S*$", max_length=2000)]


class PushedArticle(BaseModel):
    """The JSON body of ``POST /api/articles``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    guid: str = Field(min_length=1, max_length=1000)
    title: str = Field(min_length=1, max_length=2000)
    url: HttpURL | None = None
    summary: str = ""  # HTML allowed: sanitised when rendered
    body: str = ""
    image: HttpURL | None = None
    author: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=100)
    published_at: AwareDatetime | None = None  # ISO 8601 with an offset

    @field_validator("*", mode="after")
    @classmethod
    def _unicode_text(cls, value: Any) -> Any:
        # JSON may spell lone surrogates (\ud800); no database can store them.
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("not valid Unicode text (a lone surrogate)") from None
        return value

    @field_validator("guid", mode="after")
    @classmethod
    def _nfc(cls, guid: str) -> str:
        return unicodedata.normalize("NFC", guid)

    @field_validator("published_at", mode="after")
    @classmethod
    def _in_utc_range(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            try:
                value.astimezone(UTC)  # how it is stored
            except OverflowError:
                raise ValueError("out of range once converted to UTC") from None
        return value

    def draft(self) -> ArticleDraft:
        return ArticleDraft(
            guid=self.guid,
            title=" ".join(self.title.split()),
            url=self.url,
            summary=self.summary,
            body=self.body,
            image=self.image,
            author=self.author or None,
            tags=tuple(dict.fromkeys(t.strip() for t in self.tags if t.strip())),
            published_at=self.published_at,
        )


def routes(
    config: Config,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime] = utcnow,
) -> list[Route]:
    source = config.api.source

    async def push_article(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token_matches(token.strip(), config.api.tokens):
            hint = (
                "no API tokens are configured (add api.tokens; see `newsbroadcast api hash-token`)"
                if not config.api.tokens
                else "send Authorization: Bearer <token>"
            )
            return JSONResponse(
                {"error": "unauthorized", "detail": hint},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="newsbroadcast"'},
            )
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            shown = media_type or "none"
            return _error(
                415, "unsupported_media_type", f"send Content-Type: application/json, not {shown}"
            )
        raw = await read_body(request, MAX_BODY_BYTES)
        if raw is None:
            return _error(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError as e:
            return _error(400, "bad_json", f"the body is not JSON: {e}")
        except RecursionError:
            return _error(400, "bad_json", "the body is nested too deeply")
        try:
            article = PushedArticle.model_validate(data)
        except ValidationError as e:
            return JSONResponse(
                {"error": "invalid", "fields": [_field_error(err) for err in e.errors()]},
                status_code=422,
            )
        stored = await run_in_threadpool(
            store_pushed,
            sessions,
            source,
            [article.draft()],
            clock(),
            sent=article.model_fields_set,
        )
        article_id = await run_in_threadpool(_article_id, sessions, source, article)
        status = "created" if stored.created else "updated" if stored.updated else "unchanged"
        return JSONResponse(
            {"status": status, "id": article_id, "guid": article.guid},
            status_code=201 if stored.created else 200,
        )

    return [
        Route("/api/articles", push_article, methods=["POST"]),
        Route("/api/articles", _only_post, methods=_OTHER_METHODS),
        Route("/api/{rest:path}", _no_such_endpoint, methods=[*_OTHER_METHODS, "POST"]),
    ]


# Every method but POST: the site's HTML 405 page is no answer for an API client.
_OTHER_METHODS = ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _only_post(request: Request) -> JSONResponse:
    reply = _error(405, "method_not_allowed", f"{request.method} is not served here; use POST")
    reply.headers["Allow"] = "POST"
    return reply


async def _no_such_endpoint(request: Request) -> JSONResponse:
    return _error(404, "not_found", f"no API endpoint {request.url.path}; POST /api/articles")


def _article_id(sessions: sessionmaker[Session], source: str, article: PushedArticle) -> int | None:
    with sessions() as session:
        found = session.scalar(
            select(Article.id).where(Article.source == source, Article.guid == article.guid)
        )
        if found is None and article.url:
            # The same story was already known under another guid or source, by its URL.
            key = canonical_url(article.url)
            found = session.scalar(select(Article.id).where(Article.canonical_url == key))
        return found


def _field_error(err: Any) -> dict[str, str]:
    field = ".".join(str(p) for p in err["loc"]) or "(body)"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    elif err["type"] == "string_pattern_mismatch":
        message = "must be an http(s) URL"
    return {"field": field, "message": message}


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)
