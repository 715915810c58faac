"""Bounces, complaints and mailto unsubscribes read from a real IMAP and POP3 server (Dovecot
on loopback, TLS and STARTTLS, tests/dovecot_server.py): each handled message is flagged,
moved or deleted as configured, one that cannot be handled stays where it is (marked where
IMAP allows) and never stops the others, and a second pass reads nothing again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import Engine, select

from newsbroadcast.config.model import Config
from newsbroadcast.db import sessions
from newsbroadcast.db.engine import make_engine, upgrade
from newsbroadcast.db.models import Subscriber, SubscriberStatus
from newsbroadcast.errors import MailboxError
from newsbroadcast.subscribers.inboxes import UNREADABLE_KEYWORD
from newsbroadcast.subscribers.mailbox import process_mailbox
from newsbroadcast.subscribers.registry import add_subscriber
from newsbroadcast.subscribers.suppressions import is_suppressed
from tests.conftest import ROOT
from tests.dovecot_server import Dovecot, install_dovecot
from tests.site import MORNING, make_config

BOUNCES = ROOT / "tests" / "fixtures" / "bounces"
PEOPLE = ("gone@example.net", "full@example.com", "annoyed@example.org", "keeps@example.org")
# What each pass is given: a hard bounce, a delay, a complaint, an auto-reply, and a complaint
# whose quoted Message-ID the email package cannot read (it stays for a person).
MESSAGES = ("postfix_hard.eml", "postfix_delayed.eml", "arf_complaint.eml", "autoreply.eml")
BROKEN = "arf_broken.eml"


@pytest.fixture(scope="module")
def dovecot_installed() -> None:
    reason = install_dovecot()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def running(dovecot_installed: None) -> Iterator[Dovecot]:
    with Dovecot.start(trustme.CA()) as dovecot:
        yield dovecot


@pytest.fixture
def server(running: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    running.new_user()  # an empty mailbox for each test
    for name, value in running.env.items():
        monkeypatch.setenv(name, value)
    return running


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    # The protocols are what is tested here; both databases are in test_return_path.py.
    eng = make_engine(f"sqlite:///{tmp_path / 'newsbroadcast.db'}")
    upgrade(eng)
    with sessions(eng)() as session:
        for address in PEOPLE:
            add_subscriber(session, address, MORNING)
        session.commit()
    yield eng
    eng.dispose()


def config(tmp_path: Path, mailbox: dict[str, Any]) -> Config:
    return make_config(root=str(tmp_path), bounces={"mailbox": mailbox})


def fill(server: Dovecot) -> None:
    server.append(
        *((BOUNCES / name).read_bytes() for name in (*MESSAGES[:2], BROKEN, *MESSAGES[2:]))
    )


def assert_outcome(engine: Engine) -> None:
    with sessions(engine)() as session:
        status = {s.email: s.status for s in session.scalars(select(Subscriber))}
        assert status == {
            "gone@example.net": SubscriberStatus.bounced,
            "full@example.com": SubscriberStatus.active,  # one soft bounce: counted only
            "annoyed@example.org": SubscriberStatus.unsubscribed,
            "keeps@example.org": SubscriberStatus.active,
        }
        assert is_suppressed(session, "gone@example.net")
        assert is_suppressed(session, "annoyed@example.org")  # a complaint: at once
        assert not is_suppressed(session, "full@example.com")


def first_pass(engine: Engine, cfg: Config) -> None:
    report = process_mailbox(cfg, sessions(engine), lambda: MORNING)
    assert (report.read, report.hard_bounces, report.soft_bounces) == (5, 1, 1)
    assert (report.complaints, report.ignored, report.unreadable) == (1, 1, 1)
    assert "could not be handled" in report.problems[0]
    assert_outcome(engine)


def subjects(messages: list[tuple[set[str], bytes]]) -> list[str]:
    out = []
    for _, raw in messages:
        line = next(x for x in raw.split(b"\r\n") if x.startswith(b"Subject:"))
        out.append(line.decode()[len("Subject: ") :])
    return out


@pytest.mark.parametrize("tls", ["tls", "starttls"])
def test_imap_flags_what_it_handled_and_marks_what_it_could_not(
    server: Dovecot, engine: Engine, tmp_path: Path, tls: str
) -> None:
    port = server.imaps_port if tls == "tls" else server.imap_port
    cfg = config(tmp_path, server.mailbox("imap", tls=tls, port=port, processed="flag"))
    fill(server)
    first_pass(engine, cfg)
    inbox = server.folder("INBOX")
    assert len(inbox) == 5  # nothing deleted
    broken = [flags for flags, raw in inbox if b"Message-ID: <\r\n" in raw]
    assert broken == [{UNREADABLE_KEYWORD}]  # unread, for a person to look at
    assert all("\\Seen" in flags for flags, raw in inbox if b"Message-ID: <\r\n" not in raw)
    # Nothing is read twice; a new message is.
    assert process_mailbox(cfg, sessions(engine), lambda: MORNING).read == 0
    server.append((BOUNCES / "postfix_delayed.eml").read_bytes())
    assert process_mailbox(cfg, sessions(engine), lambda: MORNING).soft_bounces == 1


@pytest.mark.parametrize("processed", ["move:Processed/Bounces", "delete"])
def test_imap_moves_or_deletes_what_it_handled(
    server: Dovecot, engine: Engine, tmp_path: Path, processed: str
) -> None:
    cfg = config(tmp_path, server.mailbox("imap", processed=processed))
    fill(server)
    first_pass(engine, cfg)
    left = server.folder("INBOX")
    assert [flags for flags, _ in left] == [{UNREADABLE_KEYWORD}]  # only the broken one
    moved = server.folder("Processed/Bounces")
    if processed == "delete":
        assert moved == []
    else:
        assert len(moved) == 4 and "Undelivered Mail Returned to Sender" in subjects(moved)
    assert process_mailbox(cfg, sessions(engine), lambda: MORNING).read == 0


@pytest.mark.parametrize("tls", ["tls", "starttls"])
def test_pop3_deletes_what_it_handled_and_leaves_the_rest(
    server: Dovecot, engine: Engine, tmp_path: Path, tls: str
) -> None:
    port = server.pop3s_port if tls == "tls" else server.pop3_port
    cfg = config(tmp_path, server.mailbox("pop3", tls=tls, port=port))
    fill(server)
    first_pass(engine, cfg)
    left = server.folder("INBOX")
    assert len(left) == 1 and b"Message-ID: <\r\n" in left[0][1]
    # POP3 has no flags: the message that could not be handled is read again (and only it).
    again = process_mailbox(cfg, sessions(engine), lambda: MORNING)
    assert (again.read, again.unreadable) == (1, 1)


def test_a_wrong_password_or_an_untrusted_certificate_is_a_clear_error(
    server: Dovecot, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    untrusted = config(tmp_path, {**server.mailbox("imap"), "ca_file": None})
    with pytest.raises(MailboxError, match="certificate could not be verified"):
        process_mailbox(untrusted, sessions(engine), lambda: MORNING)
    monkeypatch.setenv("NB_TEST_MAILBOX_PASSWORD", "wrong")
    for kind in ("imap", "pop3"):
        with pytest.raises(MailboxError, match=f"refused the login of '{server.user}'"):
            process_mailbox(
                config(tmp_path, server.mailbox(kind)), sessions(engine), lambda: MORNING
            )
    monkeypatch.delenv("NB_TEST_MAILBOX_PASSWORD")
    with pytest.raises(MailboxError, match="NB_TEST_MAILBOX_PASSWORD"):
        process_mailbox(config(tmp_path, server.mailbox("imap")), sessions(engine), lambda: MORNING)
