"""Prometheus metrics: messages by transport and outcome, send latency, queue depth.

One registry for the whole process. Counters and the latency histogram count what *this*
process sent; queue depth is read from the database at each scrape, so it is the same
whichever process (a worker, the web app) serves it.

    newsbroadcast worker --metrics-port 9108        # GET http://127.0.0.1:9108/metrics
    # in a WSGI/ASGI app: mount metrics.wsgi_app() at /metrics, or return
    # metrics.latest() (body, content type) from a /metrics route.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_asgi_app,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.db.models import Delivery, Post, SendStatus

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "newsbroadcast_messages",
    "Messages handed to a transport, by transport and outcome (sent, retry, failed, skipped).",
    ["transport", "outcome"],
    registry=REGISTRY,
)
SEND_SECONDS = Histogram(
    "newsbroadcast_send_seconds",
    "Time to hand one message to its transport (SMTP transaction or file write).",
    ["transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)


@functools.cache
def messages(transport: str, outcome: str) -> Any:
    """``MESSAGES`` for one transport and outcome. Cached: ``labels()`` takes a lock and
    checks its arguments on every call, which cost more per message than the count."""
    return MESSAGES.labels(transport, outcome)


@functools.cache
def send_seconds(transport: str) -> Any:
    """``SEND_SECONDS`` for one transport (cached, as ``messages``)."""
    return SEND_SECONDS.labels(transport)


_watch_lock = threading.Lock()
_watched: list[QueueDepth] = []


class QueueDepth(Collector):
    """``newsbroadcast_queue_depth{kind, status}``: deliveries and posts queued or sending."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            "newsbroadcast_queue_depth",
            "Deliveries and posts waiting (queued) or in flight (sending).",
            labels=["kind", "status"],
        )
        waiting = [SendStatus.queued, SendStatus.sending]
        with self.sessions() as session:
            for kind, model in (("delivery", Delivery), ("post", Post)):
                counts = dict(
                    session.execute(
                        select(model.status, func.count())
                        .where(model.status.in_(waiting))
                        .group_by(model.status)
                    )
                    .tuples()
                    .all()
                )
                for status in waiting:
                    family.add_metric([kind, status.value], counts.get(status, 0))
        yield family

    def describe(self) -> Iterator[Any]:
        return iter(())  # read lazily: describing must not touch the database


def watch_queue(sessions: sessionmaker[Session]) -> None:
    """Report the queue depth of this database (the last one given, if called again)."""
    with _watch_lock:
        while _watched:
            REGISTRY.unregister(_watched.pop())
        collector = QueueDepth(sessions)
        REGISTRY.register(collector)
        _watched.append(collector)


class MetricsServer:
    """``/metrics`` served from a background thread; ``port`` is the one actually bound."""

    def __init__(self, port: int, addr: str = "127.0.0.1") -> None:
        self._server, self._thread = start_http_server(port, addr=addr, registry=REGISTRY)
        self.port = int(self._server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` (0: any free port) until ``.stop()``."""
    return MetricsServer(port, addr)


def wsgi_app() -> Callable[..., Any]:
    """A WSGI app answering with this registry's metrics, to mount at ``/metrics``."""
    return make_wsgi_app(REGISTRY)


def asgi_app() -> Callable[..., Any]:
    """An ASGI app answering with this registry's metrics (Starlette: ``Mount("/metrics",
    app=metrics.asgi_app())``). The queue depth is read from the database while answering."""
    return make_asgi_app(REGISTRY)


def latest() -> tuple[bytes, str]:
    """The metrics page now: (body, Content-Type header value)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
