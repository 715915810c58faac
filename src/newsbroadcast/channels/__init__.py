"""Social channels: one module per network, each a thin adapter over its client library."""

from __future__ import annotations

from newsbroadcast.channels.base import Channel
from newsbroadcast.channels.file import FileChannel
from newsbroadcast.config import Channel as ChannelConfig
from newsbroadcast.config import Config
from newsbroadcast.config import FileChannel as FileChannelConfig


def make_channel(entry: ChannelConfig, config: Config) -> Channel:
    """The channel a `social:` entry describes, ready to publish."""
    if isinstance(entry, FileChannelConfig):
        return FileChannel(entry.name, config.path(entry.dir), limit=entry.max_length)
    raise ValueError(f"no channel implementation for type {entry.type!r}")
