"""A poster process for the crash test of the bluesky, telegram and webhook channels:
``python -m tests.network_poster CONFIG``. Runs the real service (poll, plan, dispatch)
until every post has ended; the test kills it with SIGKILL mid-post and starts it again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from newsbroadcast.app import Service
from newsbroadcast.config import load_config
from newsbroadcast.models import Post, SendStatus

RUN_AT_MOST = 60.0  # seconds


def main(config_file: str) -> int:
    service = Service(load_config(Path(config_file)))
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
    sys.exit(main(sys.argv[1]))
