"""Fixtures for integration tests: real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smtp_sink import SmtpSink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started plain-text SMTP sink (security: none) that records what it accepts."""
    with SmtpSink() as sink:
        yield sink
