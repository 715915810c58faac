"""The subscriber web app (`newsbroadcast serve`): sign-up, preferences, unsubscribe, archive."""

from newsbroadcast.web.pages import create_app
from newsbroadcast.web.server import serve

__all__ = ["create_app", "serve"]
