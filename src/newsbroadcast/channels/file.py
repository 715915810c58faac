"""The `file` channel: each post as one JSON line in ``<dir>/<channel>.jsonl``.

For trying the service out and for archives. A post written before a crash is not
written again: the file is checked for the post's id first. The id comes from the site,
the story and the channel, so a story met again in a rebuilt database is not written twice.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newsbroadcast.channels.base import OutgoingPost, Payload, Published
from newsbroadcast.errors import TransientSendError


class FileChannel:
    def __init__(self, name: str, directory: Path, limit: int = 500) -> None:
        self.name = name
        self.limit = limit
        self.path = directory / f"{name}.jsonl"

    def measure(self, text: str) -> int:
        return len(text)

    def publish(self, post: OutgoingPost) -> Published:
        remote_id = self._remote_id(post)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._already_written(remote_id):
                return Published(remote_id)
            line = json.dumps(self.line(post), ensure_ascii=False)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise TransientSendError(f"cannot write {self.path}: {e.strerror or e}") from e
        return Published(remote_id)

    def line(self, post: OutgoingPost) -> dict[str, Any]:
        """The JSON line ``publish`` appends for ``post`` (and ``preview`` shows)."""
        return {
            "id": self._remote_id(post),
            "post_id": post.post_id,
            "article_id": post.article_id,
            "channel": post.channel,
            "text": post.text,
            "url": post.url,
            "written_at": datetime.now(UTC).isoformat(),
        }

    def _remote_id(self, post: OutgoingPost) -> str:
        return f"{self.name}-{post.key.hex()[:24]}"

    def preview(self, post: OutgoingPost) -> Payload:
        return Payload(f"append to {self.path}", self.line(post))

    def _already_written(self, remote_id: str) -> bool:
        if not self.path.exists():
            return False
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    if json.loads(line).get("id") == remote_id:
                        return True
                except json.JSONDecodeError:
                    continue  # a line torn by a crash mid-write: ignore it
        return False
