"""The one small interface every social channel implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OutgoingPost:
    post_id: int
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
    limit: int

    def measure(self, text: str) -> int: ...

    def publish(self, post: OutgoingPost) -> Published: ...
