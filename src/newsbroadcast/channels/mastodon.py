"""The `mastodon` channel: statuses through Mastodon.py.

A retried request cannot post twice: every attempt of a post carries the same
``Idempotency-Key`` (derived from the site, the story and the channel), and the server answers a
repeat with the status it already made. Servers keep a key for one hour only, so an attempt
that may have been accepted longer ago than that is settled by looking for the article's
link among the account's recent statuses before posting again.

Language: the story's (its primary subtag) when its source gave one, else the channel's.

Length: Mastodon counts each URL as ``characters_reserved_per_url`` (23) and allows
``max_characters`` (500) including the content warning; both are read from the instance's
``/api/v2/instance`` once per channel. Mastodon counts graphemes; we count code points,
which is never less, so a fitted post is never too long.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)
from twitter_text.extract_urls import extract_urls_with_indices

from newsbroadcast.channels.base import OutgoingPost, Payload, Published
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)

log = logging.getLogger("newsbroadcast.channels.mastodon")

DEFAULT_LIMIT = 500
DEFAULT_URL_WEIGHT = 23
# Servers forget an Idempotency-Key after an hour; settle by search a little before that.
KEY_LIFETIME = timedelta(minutes=55)
RECENT_STATUSES = 40  # the most one page of an account's statuses holds
DEFAULT_RATE_LIMIT_WAIT = 5 * 60.0  # Mastodon's windows are five minutes


def idempotency_key(post: OutgoingPost) -> str:
    """The same for every attempt of one (story, channel), in any database holding the
    story: the server's duplicate guard."""
    return "newsbroadcast-" + post.key.hex()[:40]


def status_language(language: str | None) -> str | None:
    """The ISO 639 code Mastodon takes for a story in ``language`` (BCP 47): its primary
    subtag, 'fr-CA' → 'fr' (Mastodon refuses region subtags)."""
    if not language:
        return None
    return language.split("-")[0].lower() or None


def countable_length(text: str, url_weight: int = DEFAULT_URL_WEIGHT) -> int:
    """Mastodon's count: each http(s) URL weighs ``url_weight``, the rest one per character."""
    length = len(text)
    for url in extract_urls_with_indices(text, extract_urls_without_protocol=False):
        start, end = url["indices"]
        length += url_weight - (end - start)
    return length


class MastodonChannel:
    def __init__(
        self,
        name: str,
        *,
        api_base_url: str,
        access_token: str,
        visibility: str = "public",
        language: str | None = None,
        spoiler_text: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.api = Mastodon(
            access_token=access_token,
            api_base_url=api_base_url.rstrip("/"),
            ratelimit_method="throw",  # a dispatcher must not sleep on a lease: RateLimited
            request_timeout=timeout,
            session=session,
            version_check_mode="none",
        )
        self.visibility = visibility
        self.language = language
        self.spoiler_text = spoiler_text or None
        self.clock = clock
        self._limits: tuple[int, int] | None = None
        self._account_id: Any = None

    # -- length ---------------------------------------------------------------------------

    def _instance_limits(self) -> tuple[int, int]:
        """(max_characters, characters_reserved_per_url), read once from the instance."""
        if self._limits is None:
            try:
                statuses = self.api.instance_v2()["configuration"]["statuses"]
                self._limits = (
                    int(statuses.get("max_characters") or DEFAULT_LIMIT),
                    int(statuses.get("characters_reserved_per_url") or DEFAULT_URL_WEIGHT),
                )
            except (MastodonError, KeyError, TypeError, ValueError) as e:
                # Not cached: the next post asks again. 500/23 is every stock instance's rule.
                log.warning("%s: cannot read the instance's limits (%s); using 500", self.name, e)
                return DEFAULT_LIMIT, DEFAULT_URL_WEIGHT
        return self._limits

    @property
    def limit(self) -> int:
        return self._instance_limits()[0]

    def measure(self, text: str) -> int:
        # The content warning counts against the same limit as the text.
        return countable_length(text, self._instance_limits()[1]) + len(self.spoiler_text or "")

    def check(self) -> str:
        """Whose token this is, and the instance's limit; posts nothing."""
        try:
            account = self.api.account_verify_credentials()
        except MastodonUnauthorizedError as e:
            raise TransportConfigError(f"the access token was refused: {_reply(e)}") from e
        except MastodonError as e:
            raise TransientSendError(f"cannot check the token with Mastodon: {e}") from e
        return f"token of @{account['acct']}; {self.limit} characters per post"

    # -- posting --------------------------------------------------------------------------

    def publish(self, post: OutgoingPost) -> Published:
        try:
            earlier = post.first_attempt_at
            if earlier is not None and self.clock() - earlier >= KEY_LIFETIME:
                # The server may have forgotten our key: an earlier attempt's status, if it
                # was made, can only be found by looking.
                found = self._find_status(post)
                if found is not None:
                    log.info("post %s on %s: found already posted", post.post_id, self.name)
                    return found
            status = self.api.status_post(
                **self.status_form(post), idempotency_key=idempotency_key(post)
            )
        except MastodonRatelimitError as e:
            raise RateLimited(
                f"Mastodon rate limit reached on {self.name}",
                retry_after=self._seconds_until_reset(),
                reply="429",
            ) from e
        except MastodonNetworkError as e:
            # Possibly after the server accepted it: the next attempt's key settles it.
            raise TransientSendError(f"cannot reach {self.api.api_base_url}: {e}") from e
        except MastodonUnauthorizedError as e:
            raise TransportConfigError(
                f"{self.api.api_base_url} rejected the access token of channel {self.name!r} "
                f"(it needs the write:statuses scope): {_reply(e)}",
                _reply(e),
            ) from e
        except MastodonServerError as e:
            raise TransientSendError(f"Mastodon server error: {_reply(e)}", _reply(e)) from e
        except MastodonAPIError as e:
            status = _status_code(e)
            if status in (400, 403, 404, 413, 422):
                raise PermanentSendError(
                    f"Mastodon refused the post: {_reply(e)}", _reply(e)
                ) from e
            raise TransientSendError(f"Mastodon answered {_reply(e)}", _reply(e)) from e
        except MastodonError as e:
            raise TransientSendError(f"Mastodon: {e}") from e
        return Published(str(status["id"]), status.get("url"))

    def status_form(self, post: OutgoingPost) -> dict[str, Any]:
        """The status's form fields (Mastodon.py's ``status_post`` arguments, named as on
        the wire): what ``publish`` posts and ``preview`` shows. An unset field is left out,
        as Mastodon.py leaves it out of the request."""
        form = {
            "status": post.text,
            "visibility": self.visibility,
            "language": status_language(post.language) or self.language,
            "spoiler_text": self.spoiler_text,
        }
        return {k: v for k, v in form.items() if v is not None}

    def preview(self, post: OutgoingPost) -> Payload:
        notes = [f"Idempotency-Key: {idempotency_key(post)}"]
        if post.language is None and self.language is None:
            notes.append("language: not sent (the account's default applies)")
        if self.spoiler_text:
            notes.append(f"content warning: {self.spoiler_text!r} (counts against the limit)")
        request = f"POST {self.api.api_base_url}/api/v1/statuses"
        return Payload(request, self.status_form(post), (), tuple(notes))

    def _find_status(self, post: OutgoingPost) -> Published | None:
        """The account's recent status that announces ``post``'s article, if any."""
        if not post.url:
            return None
        if self._account_id is None:
            self._account_id = self.api.account_verify_credentials()["id"]
        recent = self.api.account_statuses(
            self._account_id, limit=RECENT_STATUSES, exclude_replies=True, exclude_reblogs=True
        )
        for status in recent:
            card = status.get("card") or {}
            if (
                post.url in html.unescape(status.get("content") or "")
                or card.get("url") == post.url
            ):
                return Published(str(status["id"]), status.get("url"))
        return None

    def _seconds_until_reset(self) -> float:
        reset = self.api.ratelimit_reset  # epoch seconds, from the ISO 8601 header
        if reset is None:
            return DEFAULT_RATE_LIMIT_WAIT
        return max(float(reset) - time.time(), 1.0)


def _status_code(e: MastodonAPIError) -> int | None:
    return e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None


def _reply(e: MastodonAPIError) -> str:
    parts = [str(a) for a in e.args[1:] if a]
    return " ".join(parts) or str(e)
