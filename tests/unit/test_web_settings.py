"""The web section's production settings, and the archive's page cache (pure parts)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from newsbroadcast.config.model import load_config
from newsbroadcast.errors import ConfigError
from newsbroadcast.web.archive import ArchiveVersion, largest_id
from newsbroadcast.web.cache import PageCache, etag_matches
from newsbroadcast.web.server import ServeOptions
from tests.site import site_config, write_site_yaml


def test_trust_forwarded_for_names_its_successor(tmp_path: Path) -> None:
    path = write_site_yaml(
        tmp_path / "config/newsbroadcast.yaml", web={"trust_forwarded_for": True}
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert "web.trust_forwarded_for was replaced by web.trusted_proxies" in message
    assert "newsbroadcast.yaml" in message  # located in the file


def test_trusted_proxies_take_addresses_and_networks_only(tmp_path: Path) -> None:
    config = site_config(tmp_path, web={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]})
    assert [str(n) for n in config.web.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    path = write_site_yaml(
        tmp_path / "config/newsbroadcast.yaml", web={"trusted_proxies": ["proxy.local"]}
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "trusted_proxies" in str(refused.value)


def test_serve_options_come_from_the_web_section_and_flags_win(tmp_path: Path) -> None:
    web = {"workers": 4, "header_timeout": "3s", "keepalive_timeout": "2s", "max_connections": 50}
    config = site_config(tmp_path, web=web)
    options = ServeOptions.from_web(config.web, host="0.0.0.0", port=9000, workers=None)
    assert options == ServeOptions("0.0.0.0", 9000, 4, 3.0, 2.0, 50)
    assert ServeOptions.from_web(config.web, header_timeout=0.5).header_timeout == 0.5
    with pytest.raises(ValueError, match="more than 0"):
        site_config(tmp_path, web={"header_timeout": "0s"})
    assert site_config(tmp_path).web.signup_window == timedelta(hours=1)


def test_ids_are_bounded_by_the_database() -> None:
    assert largest_id("sqlite") == 2**63 - 1
    assert largest_id("postgresql") == 2**31 - 1


def test_the_page_cache_keeps_one_archive_version() -> None:
    cache = PageCache(size=2)
    v1, v2 = ArchiveVersion(1, 1, 1), ArchiveVersion(2, 2, 3)
    page = cache.put(v1, "/archive?", b"one", "text/html")
    assert cache.get(v1, "/archive?") == page
    assert cache.get(v2, "/archive?") is None  # a new edition: nothing kept is good
    cache.put(v2, "/archive?", b"two", "text/html")
    assert cache.get(v1, "/archive?") is None
    cache.put(v2, "/a?", b"a", "text/html")
    cache.put(v2, "/b?", b"b", "text/html")  # over the size: the least used goes
    assert cache.get(v2, "/archive?") is None and cache.get(v2, "/b?") is not None
    assert PageCache.etag(v1, "/x") != PageCache.etag(v2, "/x")
    assert PageCache.etag(v1, "/x") != PageCache.etag(v1, "/y")


def test_if_none_match() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag)
    assert etag_matches('W/"abc"', tag)
    assert etag_matches('"x", "abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"abd"', tag)
    assert not etag_matches(None, tag)
