"""The bounces.webhooks section: mistakes are named with their file and line."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from newsbroadcast.config.model import load_config
from newsbroadcast.errors import ConfigError
from tests.site import site_settings


def load(tmp_path: Path, webhooks: dict[str, object]) -> None:
    path = tmp_path / "newsbroadcast.yaml"
    path.write_text(yaml.safe_dump(site_settings(tmp_path, bounces={"webhooks": webhooks})))
    load_config(path)


def der(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    raw = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(raw).decode()


def test_a_good_section_loads(tmp_path: Path) -> None:
    load(
        tmp_path,
        {
            "ses": {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:feedback"]},
            "postmark": {"token": "t" * 16},
            "mailgun": {"signing_key": "k" * 16, "max_age": "2m"},
            "sendgrid": {"public_key": der(ec.generate_private_key(ec.SECP256R1()))},
            "generic": {"token": "g" * 16},
        },
    )


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        ({"sendgrid": {"public_key": "not a key"}}, "not a base64 DER public key"),
        (
            {"sendgrid": {"public_key": der(rsa.generate_private_key(65537, 2048))}},
            "not an elliptic-curve",
        ),
        ({"postmark": {}}, "set username and password (basic auth) or token"),
        ({"postmark": {"username": "u"}}, "username and password go together"),
        ({"ses": {"topic_arns": []}}, "bounces.webhooks.ses.topic_arns"),
        ({"ses": {"topic_arns": ["my-topic"]}}, "bounces.webhooks.ses.topic_arns.0"),
        ({"generic": {"token": "short"}}, "bounces.webhooks.generic.token"),
    ],
)
def test_mistakes_are_located(tmp_path: Path, webhooks: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, webhooks)
    problem = e.value.problems[0]
    assert message in problem.message and problem.line is not None, problem
