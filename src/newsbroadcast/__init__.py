"""newsbroadcast: new articles in, email digests and social posts out, each exactly once.

The surface for a program that embeds newsbroadcast: ``load_config`` and ``Config`` (what
admins write), ``Service`` (the composition root: poll, plan, dispatch), the error tree
(see ``newsbroadcast.errors``) and ``__version__``. ``Service`` and the config are imported
on first use, so ``import newsbroadcast`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from newsbroadcast.errors import (  # noqa: E402  (after __version__: modules read it)
    ConfigError,
    CopyError,
    DeliveryError,
    InputError,
    MailboxError,
    NewsBroadcastError,
    PermanentSendError,
    PostTooLong,
    Problem,
    RateLimited,
    RenderError,
    RobotsDisallowed,
    SourceError,
    SuppressedAddress,
    TransientSendError,
    TransportConfigError,
    TransportDown,
)

if TYPE_CHECKING:
    from newsbroadcast.config.model import Config, load_config
    from newsbroadcast.service import Service

_LAZY = {
    "Config": "newsbroadcast.config",
    "load_config": "newsbroadcast.config",
    "Service": "newsbroadcast.service",
}

__all__ = [
    "__version__",
    "Config",
    "Service",
    "load_config",
    "NewsBroadcastError",
    "Problem",
    "ConfigError",
    "SourceError",
    "RobotsDisallowed",
    "InputError",
    "SuppressedAddress",
    "MailboxError",
    "RenderError",
    "PostTooLong",
    "CopyError",
    "DeliveryError",
    "TransientSendError",
    "RateLimited",
    "TransportDown",
    "TransportConfigError",
    "PermanentSendError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'newsbroadcast' has no attribute {name!r}")
