"""What every response and form of the web app carries: security headers and CSRF tokens;
who the client is behind a reverse proxy.

CSRF uses a signed double submit: a random cookie, and in each form an HMAC of it under the
site secret. A page on another site can make a browser send the cookie, but cannot read it
to compute the form field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

__all__ = [
    "CSRF_COOKIE",
    "SecurityHeaders",
    "bearer_ok",
    "proxy_middleware",
    "client_address",
    "csrf_field",
    "csrf_ok",
    "read_body",
    "security_headers",
    "set_cookies",
]

CSRF_COOKIE = "nb_csrf"
CSRF_FIELD = "csrf"

# Pages use only their own stylesheet, no scripts, and are never framed. Article images in
# the archive come from the newsroom (https). Tokens sit in URL paths: no Referer ever
# carries them to another site.
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "interest-cohort=()",
}


# Browsers keep to https for a year once they saw this over https. Not includeSubDomains:
# the newsroom's other hosts are not ours to promise for.
HSTS = "max-age=31536000"


def security_headers(https: bool) -> dict[str, str]:
    """The headers every response carries; HSTS too when the site is served over https."""
    return {**HEADERS, "strict-transport-security": HSTS} if https else dict(HEADERS)


class SecurityHeaders:
    """ASGI middleware adding ``security_headers(https)`` to every HTTP response that
    lacks them."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        self.headers = security_headers(https)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in self.headers.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _mac(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def csrf_field(request: Request, response_cookies: dict[str, str], secret: str) -> str:
    """The hidden field value for a form on this page; a cookie to set is put in
    ``response_cookies`` when the browser has none yet."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) != 32:
        value = secrets.token_hex(16)
        response_cookies[CSRF_COOKIE] = value
    return _mac(secret, value)


def csrf_ok(request: Request, submitted: str | None, secret: str) -> bool:
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) != 32 or not submitted:
        return False
    return hmac.compare_digest(submitted, _mac(secret, value))


def set_cookies(request: Request, response: Response, cookies: dict[str, str], https: bool) -> None:
    """Set ``cookies``; ``Secure`` when the site is https (``site.public_url``) even if the
    hop from the proxy is plain http."""
    for name, value in cookies.items():
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="lax",
            secure=https or request.url.scheme == "https",
            path="/",
        )


def proxy_middleware(trusted: Sequence[IPv4Network | IPv6Network]) -> list[Middleware]:
    """Middleware making the app see the client and scheme a trusted reverse proxy reports.

    Only a connection from one of ``trusted`` has its X-Forwarded-For / X-Forwarded-Proto
    read; the client is the rightmost X-Forwarded-For entry that is not a trusted proxy,
    since each proxy appends the address it saw and only the entries left of that can be
    written by the client. uvicorn's middleware does exactly this walk.
    """
    if not trusted:
        return []
    return [Middleware(ProxyHeadersMiddleware, trusted_hosts=[str(net) for net in trusted])]


def client_address(request: Request) -> str:
    """The client's IP address, for the sign-up rate limit (see ``behind_proxies``)."""
    return request.client.host if request.client else "unknown"


def bearer_ok(request: Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>``."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it is past ``limit`` bytes (read no further: a
    client cannot make us hold more than that, whatever Content-Length says)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
