"""A small AT Protocol PDS on loopback, strict where our channel could go wrong.

It speaks XRPC as the real PDS does for the calls the atproto client makes when posting:
createSession, refreshSession, getSession, app.bsky.actor.getProfile, uploadBlob, getRecord
and putRecord. Tokens are real HS256 JWTs with ``exp``; the server has its own clock
(``advance``) so a token can expire on the server while the client still believes it valid,
which is when a real PDS answers ``401 ExpiredToken``.

putRecord is checked like the real lexicon and more: a valid TID record key, text at most
300 graphemes and 3,000 bytes, every facet's UTF-8 byte range on character boundaries and
covering exactly the ``#tag`` it claims or its link (whole, or shortened as the app shows
links), and a thumbnail that was uploaded first and
is at most 1,000,000 bytes. Records are stored by key: two puts with one key are one post.

It also serves images under ``/img/<name>`` for link-card thumbnails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import regex

from tests.answer_hold import AnswerHold

TID = regex.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
GRAPHEME = regex.compile(r"\X")
SECRET = b"pds-test-signing-key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class XrpcFailure(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        self.status, self.error, self.message = status, error, message


@dataclass
class Account:
    handle: str
    password: str
    did: str


@dataclass
class Pds:
    """State shared by the handler threads; tests read and steer it."""

    account: Account
    access_ttl: float = 2 * 3600  # as on bsky.social
    refresh_ttl: float = 90 * 86400
    skew: float = 0.0  # added to the wall clock: the server's idea of now
    calls: dict[str, int] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # rkey → record
    blobs: dict[str, tuple[str, int]] = field(default_factory=dict)  # cid → (mime, size)
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)  # refresh-token ids used up
    drop_next_put: bool = False  # store the record, then hang up without answering
    hide_records: bool = False  # getRecord finds nothing (a lagging read, a race)
    rate_limit_next: int = 0  # answer this many next calls with 429
    hold: AnswerHold = field(default_factory=AnswerHold)  # for putRecord
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.time() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds

    # -- tokens -------------------------------------------------------------------------------

    def _jwt(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"typ": "at+jwt", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def issue(self) -> dict[str, Any]:
        now = int(self.now())
        access = self._jwt(
            {
                "scope": "com.atproto.access",
                "sub": self.account.did,
                "aud": "did:web:pds.test",
                "iat": now,
                "exp": now + int(self.access_ttl),
            }
        )
        refresh = self._jwt(
            {
                "scope": "com.atproto.refresh",
                "sub": self.account.did,
                "aud": "did:web:pds.test",
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + int(self.refresh_ttl),
            }
        )
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": self.account.handle,
            "did": self.account.did,
            "active": True,
        }

    def verify(self, authorization: str | None, scope: str) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise XrpcFailure(401, "AuthenticationRequired", "Authentication Required")
        token = authorization[len("Bearer ") :]
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            claims = json.loads(_unb64(payload))
        except ValueError as e:
            raise XrpcFailure(400, "InvalidToken", "Malformed token") from e
        if not hmac.compare_digest(_unb64(signature), expected):
            raise XrpcFailure(400, "InvalidToken", "Bad token signature")
        if claims.get("scope") != scope:
            raise XrpcFailure(400, "InvalidToken", "Bad token scope")
        expired = claims["exp"] < self.now()
        if scope == "com.atproto.refresh":
            if expired or claims["jti"] in self.revoked:
                raise XrpcFailure(400, "ExpiredToken", "Token has expired")
        elif expired:
            raise XrpcFailure(401, "ExpiredToken", "Token has expired")
        return claims

    # -- records ------------------------------------------------------------------------------

    def check_post(self, record: dict[str, Any]) -> None:
        if record.get("$type") != "app.bsky.feed.post":
            raise XrpcFailure(400, "InvalidRecord", "Record/$type must be app.bsky.feed.post")
        text = record.get("text", "")
        data = text.encode("utf-8")
        if len(GRAPHEME.findall(text)) > 300:
            raise XrpcFailure(
                400, "InvalidRecord", "Record/text must not be longer than 300 graphemes"
            )
        if len(data) > 3000:
            raise XrpcFailure(
                400, "InvalidRecord", "Record/text must not be longer than 3000 bytes"
            )
        if not isinstance(record.get("createdAt"), str):
            raise XrpcFailure(400, "InvalidRecord", 'Record must have the property "createdAt"')
        for facet in record.get("facets") or []:
            start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
            if not 0 <= start < end <= len(data):
                raise XrpcFailure(400, "InvalidRecord", f"facet range {start}:{end} out of text")
            try:
                covered = data[start:end].decode("utf-8")
            except UnicodeDecodeError as e:
                raise XrpcFailure(400, "InvalidRecord", "facet splits a character") from e
            for feature in facet["features"]:
                kind = feature["$type"]
                if kind == "app.bsky.richtext.facet#link" and not _shows(covered, feature["uri"]):
                    raise XrpcFailure(400, "InvalidRecord", f"link facet covers {covered!r}")
                if kind == "app.bsky.richtext.facet#tag" and covered != "#" + feature["tag"]:
                    raise XrpcFailure(400, "InvalidRecord", f"tag facet covers {covered!r}")
        embed = record.get("embed")
        if embed is not None:
            if embed.get("$type") != "app.bsky.embed.external":
                raise XrpcFailure(400, "InvalidRecord", "unexpected embed type")
            thumb = embed["external"].get("thumb")
            if thumb is not None:
                cid = thumb["ref"]["$link"]
                if cid not in self.blobs:
                    raise XrpcFailure(400, "InvalidRecord", f"Could not find blob: {cid}")
                if thumb["size"] > 1_000_000:
                    raise XrpcFailure(400, "InvalidRecord", "thumb is too big")


def _shows(covered: str, uri: str) -> bool:
    """Whether a link facet's text reads as its URL: the URL itself, or as the Bluesky app
    shortens it (no scheme; the start of a long path, then an ellipsis)."""
    if covered == uri:
        return True
    bare = uri.split("://", 1)[-1]
    if covered.endswith("…"):
        return bare.startswith(covered[:-1]) and len(covered) > 1
    return covered in (bare, bare.rstrip("/"))


def _cid(data: bytes) -> str:
    """A CIDv1 (raw codec, sha2-256), base32 multibase: what a PDS returns for a blob."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        pds = self.server.pds
        if url.path.startswith("/img/"):
            image = pds.images.get(url.path[len("/img/") :])
            if image is None:
                self._send(404, b"not found", "text/plain")
            else:
                self._send(200, image[1], image[0])
            return
        if not url.path.startswith("/xrpc/"):
            self._json(404, {"error": "NotFound", "message": "Not Found"})
            return
        nsid = url.path[len("/xrpc/") :]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        held = False
        with pds.lock:
            pds.calls[nsid] = pds.calls.get(nsid, 0) + 1
            if pds.rate_limit_next > 0:
                pds.rate_limit_next -= 1
                reset = int(pds.now()) + 300
                self.send_response(429)
                body = json.dumps({"error": "RateLimitExceeded", "message": "Rate Limit"})
                self.send_header("Content-Type", "application/json")
                self.send_header("RateLimit-Limit", "30")
                self.send_header("RateLimit-Remaining", "0")
                self.send_header("RateLimit-Reset", str(reset))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())
                return
            try:
                result = self._xrpc(pds, method, nsid, query, body)
                held = nsid == "com.atproto.repo.putRecord" and pds.hold.take()
            except XrpcFailure as f:
                self._json(f.status, {"error": f.error, "message": f.message})
                return
        if result is None:  # hang up: the request was handled, the answer is lost
            self.close_connection = True
            return
        if held:
            pds.hold.wait()
        self._json(200, result)

    def _xrpc(
        self, pds: Pds, method: str, nsid: str, query: dict[str, str], body: bytes
    ) -> dict[str, Any] | None:
        auth = self.headers.get("Authorization")
        account = pds.account
        if nsid == "com.atproto.server.createSession" and method == "POST":
            data = json.loads(body)
            if (
                data.get("identifier") not in (account.handle, account.did)
                or data.get("password") != account.password
            ):
                raise XrpcFailure(401, "AuthenticationRequired", "Invalid identifier or password")
            return pds.issue()
        if nsid == "com.atproto.server.refreshSession" and method == "POST":
            claims = pds.verify(auth, "com.atproto.refresh")
            pds.revoked.add(claims["jti"])  # refresh tokens are single-use
            return pds.issue()
        if nsid == "com.atproto.server.getSession":
            pds.verify(auth, "com.atproto.access")
            return {"handle": account.handle, "did": account.did, "active": True}
        if nsid == "app.bsky.actor.getProfile":
            pds.verify(auth, "com.atproto.access")
            return {"did": account.did, "handle": account.handle, "displayName": "Newsroom"}
        if nsid == "com.atproto.repo.uploadBlob" and method == "POST":
            pds.verify(auth, "com.atproto.access")
            mime = self.headers.get("Content-Type", "")
            if len(body) > 1_000_000:
                raise XrpcFailure(400, "BlobTooLarge", "This file is too large")
            cid = _cid(body)
            pds.blobs[cid] = (mime, len(body))
            blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(body)}
            return {"blob": blob}
        if nsid == "com.atproto.repo.getRecord":
            if query.get("repo") not in (account.did, account.handle):
                raise XrpcFailure(400, "InvalidRequest", "Could not find repo")
            record = None if pds.hide_records else pds.records.get(query.get("rkey", ""))
            if record is None or query.get("collection") != "app.bsky.feed.post":
                raise XrpcFailure(400, "RecordNotFound", "Could not locate record")
            rkey = query["rkey"]
            uri = f"at://{account.did}/app.bsky.feed.post/{rkey}"
            return {"uri": uri, "cid": _cid(json.dumps(record).encode()), "value": record}
        if nsid == "com.atproto.repo.putRecord" and method == "POST":
            pds.verify(auth, "com.atproto.access")
            data = json.loads(body)
            if data.get("repo") != account.did:
                raise XrpcFailure(400, "InvalidRequest", "repo must be the session's DID")
            if data.get("collection") != "app.bsky.feed.post" or not TID.match(data["rkey"]):
                raise XrpcFailure(400, "InvalidRequest", "Invalid record key")
            pds.check_post(data["record"])
            pds.records[data["rkey"]] = data["record"]
            uri = f"at://{account.did}/app.bsky.feed.post/{data['rkey']}"
            if pds.drop_next_put:
                pds.drop_next_put = False
                return None
            return {"uri": uri, "cid": _cid(body)}
        raise XrpcFailure(501, "MethodNotImplemented", f"Method Not Implemented: {nsid}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pds: Pds) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pds = pds


class BlueskyPds:
    """``with BlueskyPds() as pds: pds.url …``; ``pds.state`` is the server's state."""

    def __init__(self, handle: str = "newsroom.test", password: str = "app-pass-1234") -> None:
        self.state = Pds(Account(handle, password, "did:plc:newsroom0000000000000000"))
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BlueskyPds:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
