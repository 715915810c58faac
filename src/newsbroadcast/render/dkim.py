"""DKIM signing of digest messages: the key read and checked once per edition."""

from __future__ import annotations

import dkim

from newsbroadcast.config.model import Config
from newsbroadcast.errors import ConfigError, Problem

# Headers DKIM covers. Receivers (Gmail) expect both List-Unsubscribe headers to be signed,
# or one-click unsubscribe is not offered.
DKIM_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)


class DkimSigner:
    """The DKIM key read and checked once per edition, not once per message."""

    def __init__(self, config: Config) -> None:
        settings = config.email.dkim
        assert settings is not None
        key_file = config.path(settings.private_key_file)
        problem_at = str(config.config_file or "configuration")
        try:
            # dkimpy's PEM parser expects LF line endings; a key saved on Windows has CRLF.
            key = key_file.read_bytes().replace(b"\r\n", b"\n")
            dkim.crypto.parse_pem_private_key(key)
        except OSError as e:
            raise ConfigError(
                [
                    Problem(
                        problem_at,
                        None,
                        f"email.dkim.private_key_file: cannot read {key_file}: {e.strerror}",
                    )
                ]
            ) from e
        except dkim.crypto.UnparsableKeyError as e:
            raise ConfigError(
                [
                    Problem(
                        problem_at,
                        None,
                        f"email.dkim.private_key_file: {key_file}"
                        f" is not a PEM RSA private key ({e})",
                    )
                ]
            ) from e
        self._key = key
        self._selector = settings.selector.encode("ascii")
        self._domain = settings.domain.encode("ascii")
        # Only headers every message has: Reply-To is there exactly when configured.
        self._headers = [
            h.encode("ascii") for h in DKIM_HEADERS if h != "reply-to" or config.site.reply_to
        ]
        if config.email.feedback_id is not None:
            # Receivers trust a Feedback-ID only under the sender's DKIM signature.
            self._headers.append(b"feedback-id")

    def sign(self, message: bytes) -> bytes:
        # relaxed/relaxed: a relay that rewraps headers or trims trailing spaces must not
        # break the signature.
        signature = dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self._headers,
        )
        return signature + message
