"""A poster process for the crash tests: ``python -m tests.social_poster CONFIG [X_URL]``.

Runs the real service (poll, plan, dispatch) until every post has ended; with X_URL,
tweepy's session is routed to the loopback X API there (its host is hard-coded). The tests
kill it with SIGKILL mid-post and start it again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from newsbroadcast.config.model import load_config
from newsbroadcast.db.models import Post, SendStatus
from newsbroadcast.service import Service
from tests.x_server import route_x_to

RUN_AT_MOST = 60.0  # seconds
ROOT = Path(__file__).resolve().parent.parent


def start(config: Path, x_url: str | None = None) -> subprocess.Popen[bytes]:
    """This module as a process of its own (it is killed with SIGKILL); output in stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.social_poster", str(config), *([x_url] if x_url else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def main(config_file: str, x_url: str | None = None) -> int:
    service = Service(load_config(Path(config_file)))
    if x_url:
        route_x_to(service.channels["x"].session, x_url)  # type: ignore[attr-defined]
    deadline = time.monotonic() + RUN_AT_MOST
    service.poll()
    try:
        while time.monotonic() < deadline:
            service.dispatch()
            with service.sessions() as session:
                still_open = session.scalar(
                    select(func.count()).where(
                        Post.status.in_([SendStatus.queued, SendStatus.sending])
                    )
                )
            if not still_open:
                return 0
            time.sleep(0.2)  # a claim left by a killed poster ends with its lease
        return 1
    finally:
        service.close()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
