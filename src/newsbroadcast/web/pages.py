"""The subscriber web app: sign-up, confirm, preferences, unsubscribe, archive.

No logins: each personal page is reached through a signed token from an email. No endpoint
takes a URL to go to next, so there is nothing to turn into an open redirect; the only
redirect goes to a path built here.

Every page speaks the reader's language: a subscriber's own pages (confirm, preferences,
unsubscribe) the language they chose, the others the browser's Accept-Language among the
languages the site offers (``web.languages``), else the site's first one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
from babel.dates import format_time
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsbroadcast import db
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Subscriber, SubscriberStatus, utcnow
from newsbroadcast.errors import InputError
from newsbroadcast.render import i18n
from newsbroadcast.render.templates import make_environment
from newsbroadcast.runtime import metrics
from newsbroadcast.subscribers import tokens
from newsbroadcast.subscribers.confirmation import CONFIRM, queue_confirmation
from newsbroadcast.subscribers.lifecycle import (
    Preferences,
    SignupOutcome,
    SignupRequest,
    client_allowed,
    client_retry_after,
    confirm,
    get_preferences,
    languages,
    set_preferences,
    sign_up,
    unsubscribe,
)
from newsbroadcast.web import api, feedback
from newsbroadcast.web.archive import (
    ArchiveVersion,
    archive_version,
    atom_feed,
    edition_context,
    largest_id,
    list_editions,
)
from newsbroadcast.web.cache import PageCache, etag_matches
from newsbroadcast.web.security import (
    CSRF_FIELD,
    SecurityHeaders,
    bearer_ok,
    client_address,
    csrf_field,
    csrf_ok,
    proxy_middleware,
    security_headers,
    set_cookies,
)

__all__ = ["create_app"]

log = logging.getLogger("newsbroadcast.web")

UNSUBSCRIBE, PREFERENCES = "unsubscribe", "preferences"
ONE_CLICK = "One-Click"  # RFC 8058: the POST body is List-Unsubscribe=One-Click


class _Site:
    """What every handler needs, built once per app."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        clock: Callable[[], datetime],
        env: jinja2.Environment,
    ) -> None:
        self.config = config
        self.engine = engine
        self.sessions: sessionmaker[Session] = db.sessions(engine)
        self.clock = clock
        self.env = env
        self.css = (config.path(config.templates) / "web" / "site.css").read_bytes()
        self.https = config.site.public_url.startswith("https://")
        self.largest_id = largest_id(engine.dialect.name)
        self.cache = PageCache()

    def page(
        self,
        request: Request,
        template: str,
        code: int = 200,
        private: bool = False,
        language: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """``template`` rendered in ``language`` (a subscriber's choice) when it is offered,
        else in the reader's language (``reader_language``)."""
        cookies: dict[str, str] = {}
        context.setdefault("site", self.config.site)
        context["csrf"] = csrf_field(request, cookies, self.config.site.secret)
        chosen = language if language in languages(self.config) else None
        with i18n.language(self.env, chosen or self.reader_language(request)) as used:
            context["lang"] = used
            body = self.env.get_template(f"web/{template}").render(context)
        response = HTMLResponse(body, status_code=code)
        response.headers["content-language"] = used
        if chosen is None:
            # The answer depends on the header: caches must keep one copy per language.
            response.headers["vary"] = "Accept-Language"
        if private:
            # Pages reached through a personal token must not be kept by shared caches.
            response.headers["cache-control"] = "no-store"
        set_cookies(request, response, cookies, self.https)
        return response

    def reader_language(self, request: Request) -> str:
        """The offered language the browser prefers (Accept-Language, q-values honoured),
        else the site's first one."""
        offered = languages(self.config)
        return i18n.negotiate(request.headers.get("accept-language"), offered) or offered[0]

    def verify(self, purpose: str, token: str) -> int:
        """The subscriber id in ``token``; raises InvalidToken."""
        return tokens.verify(self.config.site.secrets, purpose, token, self.clock())

    def bad_link(
        self, request: Request, error: tokens.InvalidToken, language: str | None = None
    ) -> HTMLResponse:
        # Expired and replaced links are 410 Gone; tampered, foreign or damaged ones 400.
        code = 410 if error.reason in ("expired", "replaced") else 400
        return self.page(
            request, "bad_link.html.j2", code, private=True, language=language, reason=error.reason
        )

    def language_of(self, subscriber_id: int) -> str | None:
        """The language ``subscriber_id`` chose (None if there is no such subscriber)."""
        with self.sessions() as session:
            sub = session.get(Subscriber, subscriber_id)
            return None if sub is None else sub.language

    def archive_version(self) -> ArchiveVersion:
        with self.sessions() as session:
            return archive_version(session)

    def preferences_url(self, subscriber_id: int) -> str:
        return "/preferences/" + tokens.sign(self.config.site.secret, PREFERENCES, subscriber_id)


def create_app(
    config: Config,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utcnow,
    env: jinja2.Environment | None = None,
) -> Starlette:
    """The ASGI app for ``config``. Without ``engine`` one is made (and migrated) from the
    configured database URL."""
    if engine is None:
        engine = db.make_engine(config.database_url)
        db.upgrade(engine)
    site = _Site(config, engine, clock, env or make_environment(config.path(config.templates)))

    routes = [
        Route("/", _signup_form(site), methods=["GET"]),
        # One route for both methods, so a 405 here lists both in its Allow header.
        Route(
            "/subscribe",
            _by_method(_signup_form(site), _signup_post(site)),
            methods=["GET", "POST"],
        ),
        Route("/confirm/{token}", _confirm(site), methods=["GET", "POST"]),
        Route("/preferences/{token}", _preferences(site), methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", _unsubscribe(site), methods=["GET", "POST"]),
        Route("/archive", _archive(site), methods=["GET"]),
        Route("/archive.atom", _atom(site), methods=["GET"]),
        Route("/archive/{edition_id:int}", _edition(site), methods=["GET"]),
        Route("/static/site.css", _css(site), methods=["GET"]),
        Route("/healthz", lambda _r: PlainTextResponse("ok"), methods=["GET"]),
        *_metrics_routes(config),
        # Articles pushed by the newsroom's CMS (bearer token, see `api.tokens`).
        *api.routes(config, db.sessions(engine), clock),
        # Bounces and complaints from email providers (see `bounces.webhooks`).
        *feedback.routes(config, db.sessions(engine), clock),
    ]
    metrics.watch_queue(db.sessions(engine))

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "not_allowed" if code == 405 else "not_found"
        response = site.page(request, "message.html.j2", code, message=message)
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)  # a 405's Allow
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette answers a crash outside the middleware stack, so this response gets
        # the security headers here, not from SecurityHeaders.
        try:
            response: Response = site.page(request, "message.html.j2", 500, message="server_error")
        except Exception:  # the page itself may be what fails; the answer must not
            text = "Something went wrong on our side. Please try again in a while."
            response = PlainTextResponse(text, status_code=500)
        response.headers.update(security_headers(site.https))
        return response

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, https=site.https),
            *proxy_middleware(config.web.trusted_proxies),
        ],
        exception_handlers={404: not_found, 405: not_found, 500: server_error},
    )
    # `/x/` → `/x` redirects are not wanted: no redirect the client can steer.
    app.router.redirect_slashes = False
    app.state.config = config
    return app


Handler = Callable[[Request], Any]


def _metrics_routes(config: Config) -> list[Route]:
    # Not public on the subscribers' port: only for a scraper with web.metrics_token.
    # Otherwise `serve` answers it on web.metrics_port alone (or `worker --metrics-port`).
    token = config.web.metrics_token
    return [] if token is None else [Route("/metrics", _metrics(token), methods=["GET"])]


def _metrics(token: str) -> Handler:
    async def handler(request: Request) -> Response:
        """Prometheus metrics for a scraper with the token; the queue-depth query runs off
        the event loop."""
        if not bearer_ok(request, token):
            return PlainTextResponse(
                "a bearer token is needed", 401, headers={"www-authenticate": "Bearer"}
            )
        body, content_type = await run_in_threadpool(metrics.latest)
        return Response(body, headers={"Content-Type": content_type})

    return handler


def _choices(form: FormData, config: Config) -> Preferences:
    return Preferences(
        digests=tuple(str(v) for v in form.getlist("digests")),
        topics=tuple(str(v) for v in form.getlist("topics")),
        language=str(form.get("language") or ""),
        paused=form.get("paused") == "on",
        name=str(form.get("name") or ""),
    )


def _form_context(
    site: _Site, prefs: Preferences, errors: dict[str, bool] | None = None
) -> dict[str, Any]:
    """What the sign-up and preferences forms show: the choices, the values to keep, and
    ``errors`` (field name -> True), each shown next to its field."""
    config = site.config
    return {
        "digests": [d.name for d in config.digests],
        "topics": config.web.topics,
        # Each language by its own name, so a reader finds theirs whatever the page's language.
        "languages": [(code, i18n.display_name(code)) for code in languages(config)],
        "prefs": prefs,
        "errors": errors or {},
    }


def _held(outcome: SignupOutcome, now: datetime, language: str) -> dict[str, Any] | None:
    """For the page: when the last confirmation went out and when another may (UTC times in
    the page's language, whole minutes), if this sign-up was held back by resend_after."""
    if outcome.last_sent_at is None or outcome.next_at is None:
        return None

    def clock(moment: datetime) -> str:
        return format_time(moment.astimezone(UTC), format="short", tzinfo=UTC, locale=language)

    minute = timedelta(minutes=1)
    return {
        "sent_at": clock(outcome.last_sent_at),
        "ago": (now - outcome.last_sent_at) // minute,
        "next_at": clock(outcome.next_at),
        "wait": max(1, math.ceil((outcome.next_at - now) / minute)),
    }


# --- sign-up --------------------------------------------------------------------------------


def _signup_form(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        language = site.reader_language(request)
        prefs = Preferences(language=language)
        # The page negotiates the same language itself (and says it varies by the header).
        return site.page(request, "signup.html.j2", **_form_context(site, prefs), email="")

    return handler


def _by_method(show: Handler, act: Handler) -> Handler:
    async def handler(request: Request) -> Response:
        return await (act if request.method == "POST" else show)(request)

    return handler


def _signup_post(site: _Site) -> Handler:
    config = site.config

    async def handler(request: Request) -> Response:
        form = await request.form(max_fields=100)
        if not csrf_ok(request, str(form.get(CSRF_FIELD) or ""), config.site.secret):
            return site.page(request, "message.html.j2", 403, message="csrf")
        prefs = _choices(form, config)
        # The answer is in the language just chosen, when the site offers it.
        language = prefs.language if prefs.language in languages(config) else None
        client = client_address(request)
        email = str(form.get("email") or "")
        retry_after = 0

        def work() -> tuple[str, SignupOutcome]:
            nonlocal retry_after
            now = site.clock()
            with site.sessions() as session:
                if not client_allowed(session, config, client, now):
                    retry_after = client_retry_after(session, config, client, now)
                    session.commit()
                    return "limited", SignupOutcome()
                try:
                    outcome = sign_up(session, config, SignupRequest(email, prefs), now)
                except InputError:
                    session.commit()
                    return "invalid", SignupOutcome()
                if outcome.to_confirm is not None:
                    # Queued with the sign-up, in one commit; the dispatcher sends it.
                    queue_confirmation(session, config, outcome.to_confirm, now)
                session.commit()
                return "ok", outcome

        result, outcome = await run_in_threadpool(work)
        if result == "limited":
            limited = site.page(
                request, "message.html.j2", 429, language=language, message="limited"
            )
            limited.headers["retry-after"] = str(retry_after)  # seconds until a slot frees
            return limited
        if result == "invalid":
            # The form again, as it was sent, the error next to the address.
            return site.page(
                request,
                "signup.html.j2",
                400,
                language=language,
                **_form_context(site, prefs, {"email": True}),
                email=email,
            )
        # The same page whoever the address belongs to; the email (if any) is only queued
        # here (no SMTP in the request), so not even the response time tells. Only an address
        # that was sent a link moments ago hears so, as nothing is sent this time.
        used = language or site.reader_language(request)
        held = _held(outcome, site.clock(), i18n.resolve_language(languages(config), used))
        return site.page(request, "check_inbox.html.j2", language=language, held=held)

    return handler


# --- confirm --------------------------------------------------------------------------------


def _confirm(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link = tokens.read(site.config.site.secrets, CONFIRM, token, site.clock())
        except tokens.InvalidToken as e:
            return site.bad_link(request, e)
        language = await run_in_threadpool(site.language_of, link.subscriber_id)
        if request.method in ("GET", "HEAD"):
            # A GET only shows the button: mail scanners open links, people press buttons.
            return site.page(
                request, "confirm.html.j2", private=True, language=language, token=token
            )
        form = await request.form(max_fields=10)
        if not csrf_ok(request, str(form.get(CSRF_FIELD) or ""), site.config.site.secret):
            return site.page(
                request, "message.html.j2", 403, private=True, language=language, message="csrf"
            )

        def work() -> Subscriber | None:
            with site.sessions() as session:
                sub = confirm(session, link.subscriber_id, site.clock(), link.stamp)
                session.commit()
                return sub

        try:
            sub = await run_in_threadpool(work)
        except tokens.InvalidToken as e:  # a link from an earlier sign-up
            return site.bad_link(request, e, language)
        if sub is None:
            return site.page(
                request,
                "message.html.j2",
                400,
                private=True,
                language=language,
                message="cannot_confirm",
            )
        return RedirectResponse(site.preferences_url(sub.id) + "?welcome=1", status_code=303)

    return handler


# --- preferences ----------------------------------------------------------------------------


def _preferences(site: _Site) -> Handler:
    config = site.config

    async def handler(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            subscriber_id = site.verify(PREFERENCES, token)
        except tokens.InvalidToken as e:
            return site.bad_link(request, e)
        form = await request.form(max_fields=100) if request.method == "POST" else None
        if form is not None and not csrf_ok(
            request, str(form.get(CSRF_FIELD) or ""), config.site.secret
        ):
            language = await run_in_threadpool(site.language_of, subscriber_id)
            return site.page(
                request, "message.html.j2", 403, private=True, language=language, message="csrf"
            )

        def work() -> tuple[Subscriber | None, Preferences | None, str | None]:
            with site.sessions() as session:
                sub = session.get(Subscriber, subscriber_id)
                if sub is None:
                    return None, None, None
                if form is not None and sub.status in (
                    SubscriberStatus.active,
                    SubscriberStatus.pending,
                ):
                    chosen = _choices(form, config)
                    try:
                        set_preferences(session, config, sub, chosen, site.clock())
                    except InputError:
                        # Only the digests can be wrong (none of them offered any more): the
                        # form comes back with the rest as sent, the error by the digests.
                        session.rollback()
                        session.refresh(sub)  # read back what is stored, for the page
                        return sub, chosen, "digests"
                    session.commit()
                    return sub, get_preferences(session, sub), "saved"
                return sub, get_preferences(session, sub), None

        sub, prefs, notice = await run_in_threadpool(work)
        if sub is None or prefs is None:
            return site.page(
                request, "message.html.j2", 404, private=True, message="no_subscription"
            )
        unsubscribe_token = tokens.sign(config.site.secret, UNSUBSCRIBE, sub.id)
        errors = {"digests": True} if notice == "digests" else {}
        return site.page(
            request,
            "preferences.html.j2",
            400 if errors else 200,
            private=True,
            # After a save, the language just chosen; after an error, the one still stored.
            language=sub.language,
            **_form_context(site, prefs, errors),
            token=token,
            email=sub.email,
            status=str(sub.status),
            notice=notice,
            welcome=request.query_params.get("welcome") == "1",
            unsubscribe_path=f"/unsubscribe/{unsubscribe_token}",
        )

    return handler


# --- unsubscribe ----------------------------------------------------------------------------


def _unsubscribe(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            subscriber_id = site.verify(UNSUBSCRIBE, token)
        except tokens.InvalidToken as e:
            return site.bad_link(request, e)
        language = await run_in_threadpool(site.language_of, subscriber_id)
        if request.method in ("GET", "HEAD"):  # scanners open links; only a POST acts
            return site.page(
                request, "unsubscribe.html.j2", private=True, language=language, token=token
            )
        # RFC 8058: the receiver POSTs List-Unsubscribe=One-Click, without cookies, so no
        # CSRF token can be asked for. None is needed: the signed token itself is the
        # authority, and a page on another site cannot know it.
        form = await request.form(max_fields=10)
        if form.get("List-Unsubscribe") != ONE_CLICK:
            return site.page(
                request,
                "message.html.j2",
                400,
                private=True,
                language=language,
                message="nothing_changed",
            )

        def work() -> Subscriber | None:
            with site.sessions() as session:
                sub = unsubscribe(session, subscriber_id, site.clock())
                session.commit()
                return sub

        sub = await run_in_threadpool(work)
        if sub is not None:
            log.info("subscriber %s unsubscribed (web)", sub.id)
        return site.page(request, "unsubscribed.html.j2", private=True, language=language)

    return handler


# --- archive --------------------------------------------------------------------------------


ARCHIVE_PAGE = 50  # editions per archive page
PUBLIC_CACHE = "public, no-cache"  # shared caches may keep it, but ask each time (304)


async def _public(
    site: _Site, request: Request, build: Callable[[], Awaitable[Response | None]]
) -> Response:
    """A public archive page, rendered once per archive version: 304 when the client has
    it, the kept copy when there is one, else ``build()`` (None: 404)."""
    version: ArchiveVersion = await run_in_threadpool(site.archive_version)
    # Pages follow Accept-Language: one kept copy (and one ETag) per language.
    language = site.reader_language(request)
    key = f"{language}|{request.url.path}?{request.url.query}"
    etag = site.cache.etag(version, key)
    headers = {
        "etag": etag,
        "cache-control": PUBLIC_CACHE,
        "content-language": language,
        "vary": "Accept-Language",
    }
    # The page is looked up (or built) before any 304: `If-None-Match: *` must not make a
    # missing page look present.
    page = site.cache.get(version, key)
    if page is None:
        built = await build()
        if built is None:
            raise HTTPException(404)
        # Kept without its cookies: the page is the same for everyone.
        page = site.cache.put(version, key, bytes(built.body), built.media_type or "text/html")
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=page.media_type, headers=headers)


def _archive(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        before_arg = request.query_params.get("before")
        # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
        if before_arg is not None and not (before_arg.isascii() and before_arg.isdigit()):
            raise HTTPException(400, "before= takes an edition number")
        before = int(before_arg) if before_arg is not None else None
        if before is not None and before > site.largest_id:
            raise HTTPException(404)  # no such edition, and a number the database refuses

        async def build() -> Response:
            def work() -> Any:
                with site.sessions() as session:
                    # One more than a page tells whether an older page exists.
                    return list_editions(session, ARCHIVE_PAGE + 1, before)

            editions = await run_in_threadpool(work)
            older = editions[ARCHIVE_PAGE - 1].id if len(editions) > ARCHIVE_PAGE else None
            return site.page(
                request, "archive.html.j2", editions=editions[:ARCHIVE_PAGE], older=older
            )

        return await _public(site, request, build)

    return handler


def _edition(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        edition_id = request.path_params["edition_id"]
        if edition_id > site.largest_id:
            raise HTTPException(404)

        async def build() -> Response | None:
            def work() -> dict[str, Any] | None:
                with site.sessions() as session:
                    return edition_context(session, site.env, site.config, edition_id)

            context = await run_in_threadpool(work)
            return None if context is None else site.page(request, "edition.html.j2", **context)

        return await _public(site, request, build)

    return handler


def _atom(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        async def build() -> Response:
            def work() -> bytes:
                with site.sessions() as session:
                    return atom_feed(session, site.env, site.config)

            body = await run_in_threadpool(work)
            return Response(body, media_type="application/atom+xml; charset=utf-8")

        return await _public(site, request, build)

    return handler


def _css(site: _Site) -> Handler:
    async def handler(request: Request) -> Response:
        return Response(
            site.css,
            media_type="text/css; charset=utf-8",
            headers={"cache-control": "public, max-age=3600"},
        )

    return handler
