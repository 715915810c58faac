"""Social channels: one module per network, each a thin adapter over its client library.

They carry posts and own no state: nothing of db, outbox, dispatch or planning.
"""

from __future__ import annotations

from newsbroadcast.channels.base import Channel
from newsbroadcast.channels.file import FileChannel
from newsbroadcast.config.model import Channel as ChannelConfig
from newsbroadcast.config.model import Config
from newsbroadcast.config.model import FileChannel as FileChannelConfig


def make_channel(entry: ChannelConfig, config: Config) -> Channel:
    """The channel a `social:` entry describes, ready to publish."""
    if isinstance(entry, FileChannelConfig):
        return FileChannel(entry.name, config.path(entry.dir), limit=entry.max_length)
    if entry.type == "x":
        from newsbroadcast.channels.x import XChannel

        return XChannel(
            entry.name,
            consumer_key=entry.consumer_key,
            consumer_secret=entry.consumer_secret,
            access_token=entry.access_token,
            access_token_secret=entry.access_token_secret,
            timeout=entry.timeout.total_seconds(),
        )
    if entry.type == "mastodon":
        from newsbroadcast.channels.mastodon import MastodonChannel

        return MastodonChannel(
            entry.name,
            api_base_url=entry.api_base_url,
            access_token=entry.access_token,
            visibility=entry.visibility,
            language=entry.language,
            spoiler_text=entry.spoiler_text,
            timeout=entry.timeout.total_seconds(),
        )
    if entry.type == "bluesky":
        from newsbroadcast.channels.bluesky import BlueskyChannel

        return BlueskyChannel(
            entry.name,
            service=entry.service,
            handle=entry.handle,
            app_password=entry.app_password,
            session_file=config.path(entry.session_file or f"var/bluesky-{entry.name}.session"),
            language=entry.language or config.site.language,
            link_card=entry.link_card,
            timeout=entry.timeout.total_seconds(),
        )
    if entry.type == "telegram":
        from newsbroadcast.channels.telegram import TelegramChannel

        return TelegramChannel(
            entry.name,
            token=entry.token,
            chat_id=entry.chat_id,
            api_url=entry.api_url,
            link_preview=entry.link_preview,
            silent=entry.silent,
            resend_unconfirmed=entry.resend_unconfirmed,
            timeout=entry.timeout.total_seconds(),
        )
    if entry.type == "webhook":
        from newsbroadcast.channels.webhook import WebhookChannel

        return WebhookChannel(
            entry.name,
            url=entry.url,
            shape=entry.format,
            secret=entry.secret,
            limit=entry.max_length,
            timeout=entry.timeout.total_seconds(),
        )
    raise ValueError(f"no channel implementation for type {entry.type!r}")
