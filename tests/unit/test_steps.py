"""Steps (newsbroadcast/waits.py) and many of them in one thread (dispatch/multiplex.py),
over real socket pairs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from newsbroadcast.dispatch.multiplex import run_together
from newsbroadcast.waits import Steps, Wait, finish


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(2)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def read_when_ready(sock: socket.socket, seen: list[str], name: str) -> Steps[None]:
    assert (yield Wait(sock.fileno(), False, time.monotonic() + 30))
    seen.append(f"{name}: {sock.recv(100).decode()}")


def test_the_step_whose_socket_is_ready_goes_on_first(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (a, a_peer), (b, b_peer) = pairs
    seen: list[str] = []

    def b_then_wakes_a() -> Steps[None]:
        yield from read_when_ready(b, seen, "b")
        a_peer.send(b"from b")

    b_peer.send(b"first")
    errors = run_together([read_when_ready(a, seen, "a"), b_then_wakes_a()], threading.Event())
    assert errors == []
    assert seen == ["b: first", "a: from b"]


def test_one_steps_error_ends_it_alone(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    (a, a_peer), _ = pairs
    seen: list[str] = []

    def fails() -> Steps[None]:
        yield Wait(None, False, 0.0)
        raise ValueError("this connection's trouble")

    a_peer.send(b"still served")
    errors = run_together([fails(), read_when_ready(a, seen, "a")], threading.Event())
    assert [str(e) for e in errors] == ["this connection's trouble"]
    assert seen == ["a: still served"]


def test_a_wait_whose_deadline_passes_is_resumed_with_false(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (a, _), _ = pairs
    met: list[bool] = []

    def silent() -> Steps[None]:
        met.append((yield Wait(a.fileno(), False, time.monotonic() + 0.05)))

    assert run_together([silent(), silent()], threading.Event()) == []
    assert met == [False, False]
    met.clear()
    finish(silent())
    assert met == [False]


def test_a_stop_cuts_a_moments_wait_short() -> None:
    stopping = threading.Event()
    stopping.set()
    done: list[str] = []

    def sleeps_an_hour() -> Steps[None]:
        yield Wait(None, False, time.monotonic() + 3600)
        done.append("woke")

    assert run_together([sleeps_an_hour()], stopping) == []
    assert done == ["woke"]
    asked: list[float] = []
    finish(sleeps_an_hour(), sleep=asked.append)
    assert 3590 < asked[0] <= 3600


def test_an_interrupt_closes_every_step_left_and_goes_up(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (a, _), _ = pairs
    closed: list[str] = []

    def waits_on_a() -> Steps[None]:
        try:
            yield Wait(a.fileno(), False, time.monotonic() + 30)
        finally:
            closed.append("waits_on_a")

    def interrupted() -> Steps[None]:
        yield Wait(None, False, 0.0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_together([waits_on_a(), interrupted()], threading.Event())
    assert closed == ["waits_on_a"]


def test_finish_returns_what_the_step_returns(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (a, a_peer), _ = pairs

    def answer() -> Steps[bytes]:
        assert (yield Wait(a.fileno(), False, time.monotonic() + 30))
        return a.recv(10)

    a_peer.send(b"42")
    assert finish(answer()) == b"42"
