"""Public archive pages kept rendered until the archive changes.

The archive only changes when an edition goes out, is paused or resumed. Each request asks
the database one cheap question (``archive.ArchiveVersion``); while the answer stays the
same, a page rendered once is served again, and a client that has it already gets a 304.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from newsbroadcast.web.archive import ArchiveVersion

__all__ = ["CachedPage", "PageCache", "etag_matches"]


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    media_type: str
    etag: str


class PageCache:
    """Rendered pages by request key, for one archive version at a time (a new version
    empties it). At most ``size`` pages: `?before=` makes the keys open-ended."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._version: ArchiveVersion | None = None
        self._pages: OrderedDict[str, CachedPage] = OrderedDict()
        # Handlers run on the event loop and in worker threads; the lock keeps the
        # version and the pages it holds in step.
        self._lock = threading.Lock()

    @staticmethod
    def etag(version: ArchiveVersion, key: str) -> str:
        digest = hashlib.sha256(f"{version}|{key}".encode()).hexdigest()[:32]
        return f'"{digest}"'

    def get(self, version: ArchiveVersion, key: str) -> CachedPage | None:
        with self._lock:
            if version != self._version:
                return None
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, version: ArchiveVersion, key: str, body: bytes, media_type: str) -> CachedPage:
        page = CachedPage(body, media_type, self.etag(version, key))
        with self._lock:
            if version != self._version:
                self._version = version
                self._pages.clear()
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)
        return page


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag, weak or strong, equal to ``etag``."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags
