"""The one small interface every social channel implements."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


def story_identity(site: str, source: str, guid: str) -> str:
    """What names one story of one site in every database that holds it: the site's
    ``list_id``, the story's source and its GUID there. Row ids are left out on purpose:
    a site moved to another database, or rebuilt, numbers its rows anew, and a network
    must still recognise a post it already has. Source and GUID never change on an
    article (an edit may move its URL), so every attempt of one post names it alike."""
    return f"{site}\n{source}\n{guid}"


@dataclass(frozen=True)
class OutgoingPost:
    post_id: int  # local row ids: for logs and our own receivers, never for a network's keys
    article_id: int
    channel: str
    text: str  # final, as stored when the post was planned
    url: str | None  # the article's link, for channels that make link cards
    title: str
    summary: str | None = None  # the article's summary as stored (may hold HTML), for cards
    image: str | None = None  # the article's image URL, for link-card thumbnails
    # When an earlier attempt's request may have reached the network (None: this is the
    # first): a channel settles that attempt before posting again.
    first_attempt_at: datetime | None = None
    # The story's language (BCP 47) when its source said; None: the channel's setting.
    language: str | None = None
    # The story's identity (see story_identity): every key a network sees derives from it.
    story: str = field(kw_only=True)

    @property
    def key(self) -> bytes:
        """32 bytes fixed by (site, story, channel): the seed of record keys and
        idempotency keys, the same for every attempt and in every database."""
        # The channel first: its name has no newline, so no GUID can imitate another pair.
        return hashlib.sha256(f"{self.channel}\n{self.story}".encode()).digest()


@dataclass(frozen=True)
class Published:
    # None when the network confirms the post exists without saying which it is (X's
    # duplicate-content refusal of a retried post).
    remote_id: str | None
    remote_url: str | None = None


class Channel(Protocol):
    """Publishes posts. ``publish`` raises TransientSendError (retry later),
    RateLimited (retry after its delay) or PermanentSendError; it must be safe to call
    again for a post whose earlier attempt may have gone through (no double post).

    ``limit`` and ``measure`` are the network's length rule: a post's text is fitted so
    that ``measure(text) <= limit`` when it is planned.
    """

    name: str

    @property
    def limit(self) -> int: ...  # read-only: Mastodon's comes from the instance

    def measure(self, text: str) -> int: ...

    def publish(self, post: OutgoingPost) -> Published: ...


@dataclass(frozen=True)
class Upload:
    """Something ``publish`` would send ahead of the post (a link card's thumbnail)."""

    url: str  # where it is fetched from
    size: int  # bytes
    content_type: str


@dataclass(frozen=True)
class Payload:
    """What ``publish`` would send for a post, built by the same code, without sending:
    ``request`` names the call, ``body`` is its JSON-able body as the network gets it,
    ``uploads`` what would go first, ``notes`` what else sending does (headers, keys)."""

    request: str
    body: dict[str, Any]
    uploads: tuple[Upload, ...] = ()
    notes: tuple[str, ...] = ()


class Previewing(Protocol):
    """A channel that can show its payload for a post (``post preview``)."""

    def preview(self, post: OutgoingPost) -> Payload: ...
