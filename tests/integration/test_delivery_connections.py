"""Several SMTP connections, one thread: the dispatcher keeps every connection busy from
the thread that dispatches (dispatch/multiplex.py), never a thread per connection, and
one connection waiting on its server does not hold up the others."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.smtp_sink import ReceivedMessage, SmtpSink


def test_connections_are_kept_busy_at_once_from_the_dispatching_thread(
    engine: Engine, tmp_path: Path
) -> None:
    threads_seen: set[str] = set()

    def look(_message: ReceivedMessage) -> None:
        # The sink runs in this process: every thread the dispatcher started is listed.
        threads_seen.update(t.name for t in threading.enumerate())

    # Each end of DATA waits 0.2 s for its reply: a sender that waited on one connection
    # at a time would never have two messages in flight.
    with SmtpSink(delay=0.2, on_data=look, pipelining=True) as sink:
        config_path = write_site(
            tmp_path, engine.url.render_as_string(False), sink.port,
            smtp={"connections": 4}, email={"batch_size": 3},
        )  # fmt: skip
        everyone = add_subscribers(engine, 12)
        service = service_for(config_path, engine)
        plan_edition(service)
        assert service.dispatch().sent == 12
        assert sorted(sink.recipients()) == sorted(everyone)
        assert sink.connections == 4
        assert sink.most_in_flight >= 2
    assert not [name for name in threads_seen if name.startswith("delivery-")]
