"""Canonical URLs: one spelling per page (scheme and host lower-cased, default port, escapes
and tracking parameters dropped), so a story met under two URLs is stored once.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import quote, unquote_plus, urlsplit

# Parameters that say how a reader arrived, never which page they read.
_TRACKING_PREFIXES = ("utm_", "mtm_")
_TRACKING = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "pk_campaign",
        "pk_kwd",
        "pk_source",
        "pk_medium",
        "pk_content",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "/;:@!$&'()*+,=-._~%"
_QUERY_SAFE = "/;:@!$&'()*+,=-._~%?"


def canonical_url(url: str | None) -> str | None:
    """The key that makes two spellings of one article's address equal, or None.

    Only http(s) URLs with a host have one. The key is for deduplication only and is never
    shown or linked (``Article.url`` keeps the address as published), so it may fold
    spellings that a server could in theory tell apart but news sites never do:

    - ``http`` becomes ``https``: a site moving to HTTPS must not announce its archive again;
    - scheme and host are lower-cased, a trailing dot and ``user:password@`` are dropped,
      and so is the default port;
    - percent-escapes are normalised (unreserved characters decoded, hex upper-cased,
      non-ASCII characters encoded as UTF-8), so an IRI and its URI form are equal;
    - a trailing slash is dropped from any path but ``/``: CMSs serve ``/story`` and
      ``/story/`` as one page and feeds and listing pages disagree on which to write;
    - tracking parameters go (``utm_*``, ``fbclid``, ``gclid``, ``mc_cid``, ``mc_eid`` …);
      ``ref`` stays, because some sites use it to pick the content (a branch, an edition);
      the rest are sorted;
    - the fragment goes, unless it is a ``#!`` route, where it names the page itself.
    """
    if not url or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname  # lower-cased, without brackets or user info
        port = parts.port
    except ValueError:  # a port out of range, an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not host:
        return None
    host = host.rstrip(".")
    if not host.isascii():
        # Not valid IDNA: the lower-cased Unicode form is still a stable key.
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme.lower()]:
        host = f"{host}:{port}"
    path = _normalise_escapes(quote(parts.path, safe=_PATH_SAFE)) or "/"
    if path != "/":
        path = path.rstrip("/") or "/"
    params = sorted(
        _normalise_escapes(quote(p, safe=_QUERY_SAFE))
        for p in parts.query.split("&")
        if p and not _is_tracking(p)
    )
    query = "?" + "&".join(params) if params else ""
    fragment = "#" + parts.fragment if parts.fragment.startswith("!") else ""
    return f"https://{host}{path}{query}{fragment}"


def _is_tracking(param: str) -> bool:
    name = unquote_plus(param.partition("=")[0]).strip().lower()
    return name in _TRACKING or name.startswith(_TRACKING_PREFIXES)


def _normalise_escapes(text: str) -> str:
    def fix(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        return char if char in _UNRESERVED else "%" + m.group(1).upper()

    return _ESCAPE.sub(fix, text)
