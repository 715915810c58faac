"""The subscriber web app (`newsbroadcast serve`): sign-up, preferences, unsubscribe, archive.

Views of editions come from render/views.py, never from dispatch/.
"""

from newsbroadcast.web.pages import create_app
from newsbroadcast.web.server import serve

__all__ = ["create_app", "serve"]
