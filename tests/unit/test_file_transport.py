"""FileTransport writes one .eml per Message-ID, atomically; make_transport picks the kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from newsbroadcast.config.model import Config
from newsbroadcast.errors import TransientSendError
from newsbroadcast.transports import FileTransport, SmtpTransport, make_transport
from newsbroadcast.transports.base import Envelope


def envelope(message_id: str, data: bytes = b"Subject: hi\r\n\r\nHello.\r\n") -> Envelope:
    return Envelope("news@example.org", "reader@example.net", data, message_id)


def test_writes_the_message_into_a_directory_it_creates(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    with FileTransport(outbox) as transport:
        reply = transport.send(envelope("abc.1@example.org"))
    assert reply == "250 written abc.1@example.org.eml"
    assert (outbox / "abc.1@example.org.eml").read_bytes() == b"Subject: hi\r\n\r\nHello.\r\n"


def test_a_resend_with_the_same_message_id_overwrites(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path)
    transport.send(envelope("same@example.org", b"first\r\n"))
    transport.send(envelope("same@example.org", b"second\r\n"))
    assert os.listdir(tmp_path) == ["same@example.org.eml"]  # no temporary files left over
    assert (tmp_path / "same@example.org.eml").read_bytes() == b"second\r\n"


def test_unsafe_message_ids_stay_inside_the_directory_and_distinct(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path / "out")
    for message_id in ["../../etc/passwd", "a/b@x", "a_b@x", ".hidden", "x" * 400]:
        transport.send(envelope(message_id))
    names = os.listdir(tmp_path / "out")
    assert len(names) == 5
    assert not (tmp_path / "etc").exists()
    assert all(not n.startswith(".") and len(n) < 200 for n in names)


def test_a_failed_write_keeps_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = FileTransport(tmp_path)
    transport.send(envelope("m@example.org", b"complete message\r\n"))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(TransientSendError, match="No space left"):
        transport.send(envelope("m@example.org", b"new message\r\n"))
    assert os.listdir(tmp_path) == ["m@example.org.eml"]
    assert (tmp_path / "m@example.org.eml").read_bytes() == b"complete message\r\n"


def _config(tmp_path: Path, email: dict[str, Any]) -> Config:
    site = {
        "name": "Daily",
        "url": "https://news.example.org",
        "public_url": "https://news.example.org/nb",
        "from": "news@example.org",
        "list_id": "daily.news.example.org",
        "unsubscribe_mailto": "unsub@example.org",
        "secret": "x" * 32,
    }
    return Config.model_validate(
        {"site": site, "email": email, "config_file": tmp_path / "config" / "nb.yaml"}
    )


def test_make_transport_resolves_the_file_directory_against_root(tmp_path: Path) -> None:
    transport = make_transport(_config(tmp_path, {"file": {"dir": "mail/out"}}))
    assert isinstance(transport, FileTransport)
    assert transport.directory == tmp_path / "mail" / "out"


def test_make_transport_builds_smtp(tmp_path: Path) -> None:
    config = _config(tmp_path, {"transport": "smtp", "smtp": {"host": "mail.example.org"}})
    transport = make_transport(config)
    assert isinstance(transport, SmtpTransport)
    assert transport.where == "mail.example.org:587"
