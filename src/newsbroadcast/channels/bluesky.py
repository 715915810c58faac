"""The `bluesky` channel: posts through the atproto client to an AT Protocol PDS.

- Length: 300 graphemes (the server refuses more) and 3,000 UTF-8 bytes; ``measure``
  reports whichever is tighter so that planning fits both.
- Links are shown shortened as the Bluesky app shows them (host, the start of the path,
  "…"), so a long URL does not eat the 300 graphemes; the link facet carries the whole
  URL. Links and hashtags become facets with UTF-8 byte ranges (Bluesky does not detect
  them); the article gets an ``app.bsky.embed.external`` link card, its description the
  summary (else the title), its image uploaded as a blob, scaled down and recompressed to
  fit 1,000,000 bytes when it is bigger.
- The post's ``langs`` is the story's language when its source gave one, else the
  channel's.
- The login is kept in ``session_file`` and refreshed; a new ``createSession`` (limited to
  30 per 5 minutes per account) happens only when no stored session can be refreshed.
- Each (story, channel) has a fixed record key, from the site, the story and the channel,
  written with ``putRecord`` after a ``getRecord`` check: a retry after a crash, or the
  same story in a rebuilt database, finds the same record instead of posting twice.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from atproto_client import Client, models
from atproto_client.client.session import Session, SessionEvent
from atproto_client.exceptions import (
    BadRequestError,
    InvokeTimeoutError,
    LoginRequiredError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    RequestException,
    UnauthorizedError,
)
from atproto_client.models.common import XrpcError
from atproto_client.models.utils import get_model_as_dict
from atproto_client.request import Request
from atproto_core.exceptions import AtProtocolError

from newsbroadcast.channels import richtext
from newsbroadcast.channels.base import OutgoingPost, Payload, Published, Upload
from newsbroadcast.channels.thumbnail import fit_image
from newsbroadcast.errors import (
    DeliveryError,
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)
from newsbroadcast.render.social import shorten
from newsbroadcast.render.templates import html_to_text

log = logging.getLogger("newsbroadcast.channels.bluesky")

T = TypeVar("T")

POST_COLLECTION = "app.bsky.feed.post"
MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_THUMB_BYTES = 1_000_000
# An image is fetched up to this size and then made to fit MAX_THUMB_BYTES; beyond it
# (a video, a print-resolution scan) the card goes without a thumbnail.
MAX_IMAGE_FETCH = 25_000_000
MAX_CARD_DESCRIPTION = 300
# Errors meaning "this token is no good any more": refresh it, or log in again.
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})

_S32 = "234567abcdefghijklmnopqrstuvwxyz"
# Record keys carry a timestamp; ours are deterministic, so they are placed in the 407 days
# (2**45 microseconds) from this moment: always in the past for real sites.
_TID_EPOCH_US = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
_TID_SPAN_BITS = 45


def record_key(post: OutgoingPost) -> str:
    """A valid TID (13 base32-sortable characters, first bit 0) fixed by the site, the
    story and the channel (``post.key``), never by a row id: the same story re-ingested
    into a new database gets the same key, and the PDS already holding that record is
    found instead of posting twice.

    55 bits of the key's hash fill the timestamp's low 45 bits and the 10-bit clock id;
    two stories of one account meet with a chance near n**2 / 2**56 (1 in 7 million for
    100,000 stories), and then ``publish`` refuses rather than overwrites.
    """
    seed = int.from_bytes(post.key[:8], "big")
    clock_id = seed & 0x3FF
    timestamp = _TID_EPOCH_US + ((seed >> 10) & ((1 << _TID_SPAN_BITS) - 1))
    value = (timestamp << 10) | clock_id  # the timestamp is under 2**53: the top bit is 0
    return "".join(_S32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def measure(text: str) -> int:
    """The length of ``text`` as posted (its links shortened): graphemes, or a tenth of the
    UTF-8 bytes when that is more: ``<= 300`` then means both of Bluesky's limits (300
    graphemes, 3,000 bytes) hold."""
    shown, _ = richtext.with_short_links(text)
    return max(richtext.graphemes(shown), math.ceil(len(shown.encode("utf-8")) / 10))


def facets(
    text: str, link_spans: list[richtext.Span] | None = None
) -> list[models.AppBskyRichtextFacet.Main]:
    """A link facet for every link (``link_spans``: where the text shows each and its
    whole URL; by default the URLs written out in ``text``) and a tag facet for every
    hashtag, with UTF-8 byte ranges (start inclusive, end exclusive), in text order."""
    found: list[tuple[int, int, models.AppBskyRichtextFacet.Main]] = []
    shown_links = richtext.links(text) if link_spans is None else link_spans
    for span in shown_links:
        feature = models.AppBskyRichtextFacet.Link(uri=span.value)
        found.append((span.start, span.end, feature))
    for span in richtext.hashtags(text, shown_links):
        feature = models.AppBskyRichtextFacet.Tag(tag=span.value)
        found.append((span.start, span.end, feature))
    return [
        models.AppBskyRichtextFacet.Main(
            features=[feature],
            index=models.AppBskyRichtextFacet.ByteSlice(
                byte_start=richtext.utf8_offset(text, start),
                byte_end=richtext.utf8_offset(text, end),
            ),
        )
        for start, end, feature in sorted(found, key=lambda f: f[0])
    ]


def card(
    post: OutgoingPost, thumb: models.BlobRef | None = None
) -> models.AppBskyEmbedExternal.Main:
    """The article's link card (``app.bsky.embed.external``): its link, title and summary
    as text, and ``thumb`` (an uploaded blob) when there is one."""
    assert post.url is not None
    # The card's description is its text for screen readers too: never empty.
    description = shorten(html_to_text(post.summary or ""), MAX_CARD_DESCRIPTION)
    description = description or shorten(post.title, MAX_CARD_DESCRIPTION)
    external = models.AppBskyEmbedExternal.External(
        uri=post.url, title=post.title, description=description, thumb=thumb
    )
    return models.AppBskyEmbedExternal.Main(external=external)


def post_record(
    post: OutgoingPost,
    language: str,
    embed: models.AppBskyEmbedExternal.Main | None,
    created_at: datetime,
) -> models.AppBskyFeedPost.Record:
    """The ``app.bsky.feed.post`` record for ``post``: what ``publish`` writes and
    ``preview`` shows, from this one function so the two cannot drift apart. Long links
    are shown shortened; their facets carry the whole URL. The story's language, when it
    has one, wins over the channel's."""
    shown, link_spans = richtext.with_short_links(post.text)
    return models.AppBskyFeedPost.Record(
        text=shown,
        created_at=created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        facets=facets(shown, link_spans) or None,
        embed=embed,
        langs=[post.language or language],
    )


def _xrpc_error(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    content = getattr(response, "content", None)
    return content.error if isinstance(content, XrpcError) else None


def _refusal(error: RequestErrorBase) -> str:
    """'401 AuthenticationRequired: Invalid identifier or password', from the answer."""
    response = error.response
    content = getattr(response, "content", None)
    status = getattr(response, "status_code", "?")
    if isinstance(content, XrpcError):
        return f"{status} {content.error}: {content.message}"
    return f"{status} {error}"


def _is_token_error(error: BaseException) -> bool:
    if isinstance(error, UnauthorizedError):
        return True
    return isinstance(error, BadRequestError) and _xrpc_error(error) in TOKEN_ERRORS


def _announces(value: Any, post: OutgoingPost) -> bool:
    """Whether a record found at the post's key is this post (or, after the database was
    rebuilt, an earlier post of the same story): its text, or the story's link in its card,
    its link facets or its text."""
    data = value if isinstance(value, dict) else value.model_dump(by_alias=True)
    if data.get("text") in (post.text, richtext.with_short_links(post.text)[0]):
        return True
    if not post.url:
        return False
    card = ((data.get("embed") or {}).get("external") or {}).get("uri")
    linked = {
        feature.get("uri")
        for facet in data.get("facets") or []
        for feature in facet.get("features") or []
    }
    return card == post.url or post.url in linked or post.url in (data.get("text") or "")


def _delivery_error(error: AtProtocolError, doing: str) -> DeliveryError:
    """The typed error for a failed XRPC call."""
    if isinstance(error, RateLimitExceededError):
        delay = error.retry_after
        if delay is None and error.reset_at is not None:
            delay = max((error.reset_at - datetime.now(UTC)).total_seconds(), 1.0)
        return RateLimited(f"Bluesky rate limit while {doing}: {error}", delay or 60.0)
    if isinstance(error, NetworkError | InvokeTimeoutError):
        cause = error.__cause__ or error
        return TransientSendError(f"Bluesky unreachable while {doing}: {cause!r}")
    if isinstance(error, UnauthorizedError | LoginRequiredError):
        return TransportConfigError(
            f"Bluesky refused our login while {doing}: {error} "
            "(check the handle and the app password)"
        )
    if isinstance(error, BadRequestError):
        return PermanentSendError(f"Bluesky refused {doing}: {error}")
    if isinstance(error, RequestException) and error.response and error.response.status_code < 500:
        return PermanentSendError(f"Bluesky refused {doing}: {error}")
    return TransientSendError(f"Bluesky failed while {doing}: {error}")


class BlueskyChannel:
    def __init__(
        self,
        name: str,
        *,
        service: str,
        handle: str,
        app_password: str,
        session_file: Path,
        language: str = "en",
        link_card: bool = True,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.limit = MAX_GRAPHEMES
        self.service = service
        self.handle = handle
        self.app_password = app_password
        self.session_file = session_file
        self.language = language
        self.link_card = link_card
        self.timeout = timeout
        self._http = http  # for fetching thumbnails; made on first use otherwise
        self._client: Client | None = None

    def measure(self, text: str) -> int:
        return measure(text)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, post: OutgoingPost) -> Published:
        if measure(post.text) > MAX_GRAPHEMES:
            raise PermanentSendError(
                f"the post is {measure(post.text)} graphemes long; Bluesky takes {MAX_GRAPHEMES}"
            )
        client = self._logged_in()
        rkey = record_key(post)
        existing = self._existing_record(client, rkey)
        if existing is not None:
            if _announces(existing.value, post):
                log.info("post %s already on Bluesky as %s", post.post_id, existing.uri)
                return self._published(client, existing.uri, rkey)
            raise PermanentSendError(
                f"record key {rkey} already holds another post ({existing.uri}); not overwriting it"
            )
        embed = self._card(client, post) if self.link_card and post.url else None
        record = post_record(post, self.language, embed, datetime.now(UTC))
        data = models.ComAtprotoRepoPutRecord.Data(
            repo=self._did(client), collection=POST_COLLECTION, rkey=rkey, record=record
        )
        response = self._call(lambda: client.com.atproto.repo.put_record(data), "posting")
        return self._published(client, response.uri, rkey)

    def _published(self, client: Client, uri: str, rkey: str) -> Published:
        handle = self._session(client).handle
        return Published(uri, f"https://bsky.app/profile/{handle}/post/{rkey}")

    def _existing_record(
        self, client: Client, rkey: str
    ) -> models.ComAtprotoRepoGetRecord.Response | None:
        params = models.ComAtprotoRepoGetRecord.Params(
            repo=self._did(client), collection=POST_COLLECTION, rkey=rkey
        )

        def get() -> models.ComAtprotoRepoGetRecord.Response | None:
            try:
                return client.com.atproto.repo.get_record(params)
            except BadRequestError as e:
                if _xrpc_error(e) == "RecordNotFound":
                    return None
                raise

        return self._call(get, "looking for an earlier attempt")

    # -- link card ----------------------------------------------------------------------------

    def _card(self, client: Client, post: OutgoingPost) -> models.AppBskyEmbedExternal.Main:
        thumb = None
        image = self._thumbnail(post.image) if post.image else None
        if image is not None:
            data, content_type = image
            uploaded = self._call(
                lambda: client.com.atproto.repo.upload_blob(
                    data, headers={"Content-Type": content_type}
                ),
                "uploading the thumbnail",
            )
            thumb = uploaded.blob
        return card(post, thumb)

    def preview(self, post: OutgoingPost) -> Payload:
        """The record ``publish`` would write, without logging in or uploading: the card's
        thumbnail is fetched (to tell its size) but not uploaded, so the record shows no
        ``thumb``; ``uploads`` says what would be uploaded first."""
        uploads: list[Upload] = []
        notes = [f"record key {record_key(post)} (putRecord: a retry rewrites, never repeats)"]
        embed = None
        if self.link_card and post.url:
            embed = card(post)
            image = self._thumbnail(post.image) if post.image else None
            if post.image is None:
                notes.append("thumbnail: none (the article has no image)")
            elif image is None:
                notes.append(
                    f"thumbnail: {post.image} left out (not fetched, not an image, or over "
                    f"{MAX_THUMB_BYTES:,} bytes)"
                )
            else:
                uploads.append(Upload(post.image, len(image[0]), image[1]))
                notes.append(
                    f"thumbnail: {post.image}, {len(image[0]):,} bytes ({image[1]}) would be "
                    "uploaded (com.atproto.repo.uploadBlob) and set as the card's thumb"
                )
        elif not self.link_card:
            notes.append("link card: off (link_card: false)")
        record = post_record(post, self.language, embed, datetime.now(UTC))
        data = record.text.encode("utf-8")
        for facet in record.facets or []:
            start, end = facet.index.byte_start, facet.index.byte_end
            kinds = ", ".join(f.py_type.rsplit("#", 1)[-1] for f in facet.features)
            covered = data[start:end].decode("utf-8", errors="replace")
            notes.append(f"facet {kinds}: bytes {start}-{end} = {covered!r}")
        return Payload(
            f"com.atproto.repo.putRecord {POST_COLLECTION} on {self.service}",
            get_model_as_dict(record),
            tuple(uploads),
            tuple(notes),
        )

    def _thumbnail(self, url: str) -> tuple[bytes, str] | None:
        """The image's bytes and type, made to fit 1,000,000 bytes, or None (the card goes
        without a thumbnail) when it cannot be fetched, is not an image or is over
        ``MAX_IMAGE_FETCH`` bytes."""
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout, follow_redirects=True)
        try:
            with self._http.stream("GET", url) as response:
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                if response.status_code != 200 or not content_type.startswith("image/"):
                    log.info("thumbnail %s skipped: %s %s", url, response.status_code, content_type)
                    return None
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_IMAGE_FETCH:
                        log.info("thumbnail %s skipped: over %d bytes", url, MAX_IMAGE_FETCH)
                        return None
        except httpx.HTTPError as e:
            log.info("thumbnail %s skipped: %s", url, e)
            return None
        return fit_image(bytes(data), content_type, MAX_THUMB_BYTES)

    # -- the session --------------------------------------------------------------------------

    def _logged_in(self) -> Client:
        if self._client is not None:
            return self._client
        client = Client(base_url=self.service, request=Request(timeout=self.timeout))
        client.on_session_change(self._on_session_change)
        saved = self._read_session()
        try:
            if saved:
                try:
                    client.login(session_string=saved, fetch_bsky_profile=False)
                except ValueError:  # a damaged file: start over
                    log.warning(
                        "bluesky %s: unreadable %s, logging in", self.name, self.session_file
                    )
                    self._create_session(client)
            else:
                self._create_session(client)
        except httpx.HTTPError as e:
            raise TransientSendError(f"Bluesky did not answer the login: {e!r}") from e
        except AtProtocolError as e:
            raise _delivery_error(e, "logging in") from e
        self._client = client
        return client

    def _create_session(self, client: Client) -> None:
        log.info("bluesky %s: creating a session for %s", self.name, self.handle)
        if not self.handle or not self.app_password:
            raise TransportConfigError(
                f"channel {self.name!r}: the Bluesky handle or app password is empty "
                "(set them in the environment)"
            )
        client.login(self.handle, self.app_password, fetch_bsky_profile=False)

    def check(self) -> str:
        """Whose handle and app password these are: one ``createSession`` with them (not
        the stored session, which would prove nothing about them); posts nothing and keeps
        no session. createSession is rate-limited (30 per 5 minutes): for a person's
        ``check --connect``, not for every run."""
        if not self.handle or not self.app_password:
            raise TransportConfigError(
                f"channel {self.name!r}: the Bluesky handle or app password is empty "
                "(set them in the environment)"
            )
        client = Client(base_url=self.service, request=Request(timeout=self.timeout))
        data = models.ComAtprotoServerCreateSession.Data(
            identifier=self.handle, password=self.app_password
        )
        try:
            session = client.com.atproto.server.create_session(data)
        except httpx.HTTPError as e:
            raise TransientSendError(f"Bluesky at {self.service} did not answer: {e!r}") from e
        except (UnauthorizedError, BadRequestError) as e:
            # 401 AuthenticationRequired (a wrong password) or 400 (an unknown handle).
            raise TransportConfigError(
                f"channel {self.name!r}: {self.service} refused the handle {self.handle!r} "
                f"and its app password ({_refusal(e)})"
            ) from e
        except AtProtocolError as e:
            raise _delivery_error(e, "creating a session") from e
        state = "" if session.active is not False else f", account {session.status or 'inactive'}"
        return f"session for @{session.handle} ({session.did}) on {self.service}{state}"

    def _on_session_change(self, event: SessionEvent, session: Session) -> None:
        if event in (SessionEvent.CREATE, SessionEvent.REFRESH):
            self._write_session(session.encode())

    def _call(self, operation: Callable[[], T], doing: str) -> T:
        """Run an XRPC call; when the server rejects our token, renew the session once
        (another process's newer one, a refresh, or at last a new login) and run it again."""
        try:
            return operation()
        except httpx.HTTPError as e:  # what the client does not wrap (a dropped connection)
            raise TransientSendError(f"Bluesky did not answer while {doing}: {e!r}") from e
        except AtProtocolError as e:
            if not _is_token_error(e):
                raise _delivery_error(e, doing) from e
            log.info("bluesky %s: session rejected (%s), renewing it", self.name, e)
        try:
            self._renew_session()
            return operation()
        except httpx.HTTPError as e:
            raise TransientSendError(f"Bluesky did not answer while {doing}: {e!r}") from e
        except AtProtocolError as e:
            raise _delivery_error(e, doing) from e

    def _renew_session(self) -> None:
        client = self._logged_in()
        current = client.export_session_string()
        saved = self._read_session()
        if saved and saved != current:
            # Another process (or our previous run) renewed it: use theirs.
            client.login(session_string=saved, fetch_bsky_profile=False)
            return
        old = Session.decode(current)
        try:
            fresh = client.com.atproto.server.refresh_session(
                headers={"Authorization": f"Bearer {old.refresh_jwt}"}, ignore_session_check=True
            )
        except (UnauthorizedError, BadRequestError) as e:
            log.info("bluesky %s: refresh refused (%s), logging in again", self.name, e)
            self._create_session(client)
            return
        renewed = Session(fresh.handle, fresh.did, fresh.access_jwt, fresh.refresh_jwt)
        renewed.pds_endpoint = old.pds_endpoint
        client.login(session_string=renewed.encode(), fetch_bsky_profile=False)
        self._write_session(renewed.encode())

    def _session(self, client: Client) -> Session:
        return Session.decode(client.export_session_string())

    def _did(self, client: Client) -> str:
        return self._session(client).did

    def _read_session(self) -> str | None:
        try:
            return self.session_file.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def _write_session(self, session: str) -> None:
        """Atomically, readable by the owner only: the file holds live tokens."""
        self.session_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.session_file.with_name(self.session_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(session)
        os.replace(tmp, self.session_file)


__all__ = ["BlueskyChannel", "card", "facets", "measure", "post_record", "record_key"]
