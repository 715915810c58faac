"""What every response and form of the web app carries: security headers and CSRF tokens.

CSRF uses a signed double submit: a random cookie, and in each form an HMAC of it under the
site secret. A page on another site can make a browser send the cookie, but cannot read it
to compute the form field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSRF_COOKIE", "SecurityHeaders", "client_address", "csrf_field", "csrf_ok"]

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


class SecurityHeaders:
    """ASGI middleware adding ``HEADERS`` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in HEADERS.items():
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


def set_cookies(request: Request, response: Response, cookies: dict[str, str]) -> None:
    for name, value in cookies.items():
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )


def client_address(request: Request, trust_forwarded_for: bool) -> str:
    """The client's IP address, for the sign-up rate limit."""
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.client.host if request.client else "unknown"
