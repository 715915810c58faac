"""Marks of machine-sent bulk mail (Precedence, Auto-Submitted, Feedback-ID) and the envelope
sender: email.return_path and its VERP tokens, which name a message by its Message-ID."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Subscriber
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.mime import make_message_id
from newsbroadcast.render.templates import make_environment
from newsbroadcast.render.views import EditionView, Recipient, StoryView
from newsbroadcast.subscribers.confirmation import confirmation_message, confirmation_message_id
from newsbroadcast.subscribers.verp import TOKEN_LENGTH, envelope_sender, message_id_for
from tests.site import SECRET, TEMPLATES, make_config, site_settings

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
RETURN_PATH = "bounces@newsroom.example.org"


def digest_message(config: Config, address: str = "jane@example.org") -> email.message.Message:
    view = EditionView(
        id=12,
        digest="daily",
        period="2026-03-02",
        created_at=NOW,
        stories=[
            StoryView(
                title="Border officers graduate",
                url="https://newsroom.example.org/1",
                summary="<p>Forty officers.</p>",
                published_at=NOW,
            )
        ],
    )
    prepared = prepare_edition(make_environment(TEMPLATES), config, config.digests[0], view)
    message_id = make_message_id(config, "daily", "2026-03-02", address)
    data = prepared.message(Recipient(34, address, None), message_id, NOW)
    return email.message_from_bytes(data, policy=email.policy.default)


def confirmation(config: Config) -> email.message.Message:
    sub = Subscriber(id=5, email="new@example.org", name=None)
    data = confirmation_message(
        make_environment(TEMPLATES), config, sub, NOW, NOW + timedelta(days=2), "confirm-x@a.b"
    )
    return email.message_from_bytes(data, policy=email.policy.default)


def with_email(**email_section: Any) -> Config:
    return make_config(email=email_section)


# --- headers --------------------------------------------------------------------------------


def test_a_digest_is_marked_bulk_and_auto_generated() -> None:
    message = digest_message(make_config())
    assert message["Precedence"] == "bulk"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Feedback-ID"] is None  # only when configured


def test_a_confirmation_is_auto_generated_but_not_bulk() -> None:
    # RFC 3834: no auto-replies to either; but one person asked for this one.
    message = confirmation(make_config())
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Precedence"] is None


def test_feedback_id_fills_its_placeholders_per_kind_of_mail() -> None:
    config = with_email(feedback_id="{digest}:{kind}:{site}")
    assert digest_message(config)["Feedback-ID"] == "daily:digest:digest.newsroom.example.org"
    assert confirmation(config)["Feedback-ID"] == (
        "confirm:confirmation:digest.newsroom.example.org"
    )


def test_feedback_id_is_under_the_dkim_signature(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    dkim_section = {"domain": "newsroom.example.org", "selector": "s1"}
    config = make_config(
        root=str(tmp_path),
        templates=str(TEMPLATES),
        email={
            "feedback_id": "{digest}:{site}",
            "dkim": {**dkim_section, "private_key_file": "dkim.pem"},
        },
    )
    signed = str(digest_message(config)["DKIM-Signature"])
    headers = "".join(signed.split("h=", 1)[1].split(";", 1)[0].split())
    assert "feedback-id" in headers.split(":")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{campaign}:{site}", "unknown placeholder {campaign}"),
        ("{digest:{site}", "write placeholders as"),
        ("daily digest:{site}", "without spaces"),
    ],
)
def test_a_bad_feedback_id_is_refused_with_the_reason(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        with_email(feedback_id=value)


# --- the envelope sender and VERP -----------------------------------------------------------


def test_without_a_return_path_the_envelope_sender_is_the_from_address() -> None:
    assert envelope_sender(make_config(), "abc@x") == "digest@newsroom.example.org"
    assert envelope_sender(with_email(return_path=RETURN_PATH), "abc@x") == RETURN_PATH


def test_a_verp_return_path_names_its_message_and_reads_back() -> None:
    config = with_email(return_path=RETURN_PATH, verp=True)
    digest_id = make_message_id(config, "daily", "2026-03-02", "jane@example.org")
    confirm_id = confirmation_message_id(config, "ab" * 32)
    for message_id in (digest_id, confirm_id):
        sender = envelope_sender(config, message_id)
        local, _, domain = sender.rpartition("@")
        assert domain == "newsroom.example.org"
        assert local.startswith("bounces+") and len(local) <= 64
        assert len(local.removeprefix("bounces+")) == TOKEN_LENGTH
        assert sender == sender.lower()  # survives servers that fold letter case
        assert message_id_for(config, sender) == message_id
        assert message_id_for(config, f"<{sender.upper()}>") == message_id
    # Each delivery has its own: two addresses of one edition differ.
    other = make_message_id(config, "daily", "2026-03-02", "joe@example.org")
    assert envelope_sender(config, other) != envelope_sender(config, digest_id)


def test_a_verp_token_is_signed() -> None:
    config = with_email(return_path=RETURN_PATH, verp=True)
    message_id = make_message_id(config, "daily", "2026-03-02", "jane@example.org")
    sender = envelope_sender(config, message_id)
    local, _, domain = sender.rpartition("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    assert message_id_for(config, f"{flipped}@{domain}") is None  # altered
    assert message_id_for(config, f"{local}@elsewhere.example") is None  # not our return path
    assert message_id_for(config, RETURN_PATH) is None  # no token at all
    stranger = Config.model_validate(
        site_settings(
            site={"secret": "another-site-secret-0123456789"},
            email={"return_path": RETURN_PATH, "verp": True},
        )
    )
    assert message_id_for(stranger, sender) is None
    # After a rotation, bounces of mail sent before it are still read.
    rotated = Config.model_validate(
        site_settings(
            site={"secret": "the-new-secret-0123456789", "previous_secrets": [SECRET]},
            email={"return_path": RETURN_PATH, "verp": True},
        )
    )
    assert message_id_for(rotated, sender) == message_id


@pytest.mark.parametrize(
    ("email_section", "says"),
    [
        ({"verp": True}, "verp is on but there is no return_path"),
        ({"return_path": "Bounces <bounces@newsroom.example.org>"}, "write the bare address"),
        (
            {"return_path": "a-very-long-bounce-mailbox-name@newsroom.example.org", "verp": True},
            "at most 28 characters",
        ),
        ({"return_path": "b+x@newsroom.example.org", "verp": True}, "no '\\+'"),
    ],
)
def test_a_return_path_that_cannot_work_is_refused(
    email_section: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        with_email(**email_section)


# --- the bounces section --------------------------------------------------------------------


def test_bounces_and_the_older_mailbox_section_cannot_both_be_set() -> None:
    with pytest.raises(ValidationError, match=r"both mailbox: and bounces: \(mailbox\) are set"):
        make_config(mailbox={"maildir": "m"}, bounces={"mailbox": {"kind": "maildir", "path": "m"}})
    # A limit under bounces: beside the older section would be silently ignored: refused.
    with pytest.raises(ValidationError, match=r"bounces: \(soft_bounce_limit\) are set"):
        make_config(mailbox={"maildir": "m"}, bounces={"soft_bounce_limit": 2})
    old = make_config(mailbox={"maildir": "m", "soft_bounce_limit": 2}).bounce_settings
    assert old is not None and old.mailbox.kind == "maildir" and old.soft_bounce_limit == 2
    # Webhooks beside the older section are fine: nothing is said twice.
    hooks = {"webhooks": {"generic": {"token": "t" * 16}}}
    both = make_config(mailbox={"maildir": "m"}, bounces=hooks)
    assert both.bounces.webhooks.generic is not None and both.bounce_settings is not None


IMAP = {"kind": "imap", "host": "h", "user": "u", "password_env": "P"}


@pytest.mark.parametrize(
    ("mailbox", "says"),
    [
        ({**IMAP, "processed": "x"}, "processed"),
        ({**IMAP, "tls": "none"}, "tls"),
        ({**IMAP, "password_env": "$P"}, "password_env"),
        ({**IMAP, "folder": "Réponses"}, "ASCII"),
        ({**IMAP, "kind": "pop3", "processed": "flag"}, "delete"),
        ({"kind": "exchange"}, "kind"),
    ],
)
def test_a_mailbox_that_cannot_work_is_refused(mailbox: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        make_config(bounces={"mailbox": mailbox})
