"""Digest emails: rendered once per edition, one correct RFC 5322 message per recipient."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import dkim
import jinja2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsbroadcast.config.model import Config, load_config
from newsbroadcast.errors import ConfigError, PermanentSendError
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.mime import PreparedEdition, make_message_id, recipient_links
from newsbroadcast.render.templates import html_to_text, make_environment
from newsbroadcast.render.views import EditionView, Recipient, StoryView
from newsbroadcast.subscribers import tokens
from tests.site import DAILY, SECRET, TEMPLATES, make_config

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
PUBLISHED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
PERIOD = "2026-03-02"
JANE = "jane@example.org"


def story(title: str = "Rwanda's first women border officers graduate", **kw: Any) -> StoryView:
    fields: dict[str, Any] = {
        "url": "https://newsroom.example.org/2026/03/border-officers",
        "summary": "<p>Forty officers completed <em>twelve weeks</em> of training.</p>",
        "published_at": PUBLISHED,
        **kw,
    }
    return StoryView(title=title, **fields)


def edition(*stories: StoryView) -> EditionView:
    return EditionView(
        id=12,
        digest="daily",
        period=PERIOD,
        created_at=NOW,
        stories=list(stories) or [story()],
    )


def prepare(
    config: Config | None = None, *stories: StoryView, env: jinja2.Environment | None = None
) -> PreparedEdition:
    config = config or make_config()
    return prepare_edition(
        env or make_environment(TEMPLATES), config, config.digests[0], edition(*stories)
    )


def send(
    prepared: PreparedEdition,
    subscriber_id: int = 34,
    address: str = "jane@example.org",
    name: str | None = "Jane Uwase",
    config: Config | None = None,
) -> bytes:
    config = config or make_config()
    message_id = make_message_id(config, prepared.digest, prepared.period, address)
    return prepared.message(Recipient(subscriber_id, address, name), message_id, NOW)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(data: bytes) -> tuple[str, str]:
    message = parse(data)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


# --- structure ------------------------------------------------------------------------------


def test_multipart_alternative_with_text_then_html_in_utf8_quoted_printable() -> None:
    message = parse(send(prepare()))
    assert message.get_content_type() == "multipart/alternative"
    subparts = list(message.iter_parts())
    assert [p.get_content_type() for p in subparts] == ["text/plain", "text/html"]
    for part in subparts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    text, html = parts(send(prepare()))
    assert "Rwanda's first women border officers graduate" in text
    assert ">Rwanda's first women border officers graduate</a>" in html


def test_every_line_ends_with_crlf_and_none_is_too_long() -> None:
    huge = "<p>" + "Officers " * 600 + "x" * 5000 + "</p>"
    whole = make_config(digests=[{**DAILY, "excerpt": 0}])  # the summary in full
    data = send(prepare(whole, story(summary=huge), story(title="T" * 5000)))
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert lines[-1] == b""  # the message ends with CRLF
    assert max(len(line) for line in lines) <= 998
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 78
    text, html = parts(data)
    assert "x" * 5000 in html and "x" * 5000 in text  # intact after decoding


def test_headers() -> None:
    config = make_config()
    message = parse(send(prepare(config), config=config))
    assert message["From"] == "Women in Uniform <digest@newsroom.example.org>"
    assert message["To"].addresses[0].display_name == "Jane Uwase"
    assert message["To"].addresses[0].addr_spec == "jane@example.org"
    assert message["Subject"] == (
        "Women in Uniform daily: Rwanda's first women border officers graduate"
    )
    assert message["Date"].datetime == NOW
    assert message["MIME-Version"] == "1.0"
    assert message["Message-ID"] == f"<{make_message_id(config, 'daily', PERIOD, JANE)}>"
    assert message["Reply-To"] is None
    assert message["List-Id"] == (
        '"Women in Uniform daily digest" <daily.digest.newsroom.example.org>'
    )


def test_list_unsubscribe_headers_are_exactly_rfc_8058() -> None:
    config = make_config()
    message = parse(send(prepare(config), subscriber_id=34))
    token = tokens.sign(SECRET, "unsubscribe", 34)
    assert message["List-Unsubscribe"] == (
        f"<https://news.example.org/unsubscribe/{token}>, "
        f"<mailto:unsubscribe@newsroom.example.org?subject=unsubscribe%20{token}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert recipient_links(config, 34)["unsubscribe_url"] == (
        f"https://news.example.org/unsubscribe/{token}"
    )


def test_reply_to_when_configured() -> None:
    config = make_config(site={"reply_to": "Desk <desk@newsroom.example.org>"})
    message = parse(send(prepare(config), config=config))
    assert message["Reply-To"] == "Desk <desk@newsroom.example.org>"


def test_message_id_is_deterministic_per_site_digest_period_and_address() -> None:
    config = make_config()
    first = make_message_id(config, "daily", PERIOD, JANE)
    assert first == make_message_id(config, "daily", PERIOD, "Jane@Example.ORG")
    assert first != make_message_id(config, "daily", PERIOD, "john@example.org")
    assert first != make_message_id(config, "daily", "2026-03-03T07:00Z", JANE)
    assert first != make_message_id(config, "weekly", PERIOD, JANE)
    # No row id in it: a rebuilt database numbering editions anew cannot repeat an old id.
    assert re.fullmatch(r"[0-9a-f]{32}@newsroom\.example\.org", first)
    prepared = prepare(config)
    assert send(prepared).split(b"Message-ID: ")[1].split(b"\r\n")[0] == f"<{first}>".encode()


def test_two_sites_sharing_a_secret_make_different_message_ids() -> None:
    newsroom = make_config()
    sister = make_config(site={"list_id": "digest.sister.example.org"})
    assert newsroom.site.secret == sister.site.secret
    assert make_message_id(newsroom, "daily", PERIOD, JANE) != make_message_id(
        sister, "daily", PERIOD, JANE
    )


# --- per-recipient parts --------------------------------------------------------------------


def test_unsubscribe_links_verify_back_to_the_subscriber() -> None:
    data = send(prepare(), subscriber_id=34)
    message = parse(data)
    text, html = parts(data)
    header_token = re.search(r"/unsubscribe/([A-Za-z0-9_-]+)>", message["List-Unsubscribe"])
    html_token = re.search(r'href="https://news\.example\.org/unsubscribe/([A-Za-z0-9_-]+)"', html)
    text_token = re.search(r"Unsubscribe: https://news\.example\.org/unsubscribe/(\S+)", text)
    prefs = re.search(r'href="https://news\.example\.org/preferences/([A-Za-z0-9_-]+)"', html)
    assert header_token and html_token and text_token and prefs
    for found in (header_token, html_token, text_token):
        assert tokens.verify([SECRET], "unsubscribe", found.group(1), NOW) == 34
    assert tokens.verify([SECRET], "preferences", prefs.group(1), NOW) == 34


def test_two_recipients_get_their_own_links_around_identical_stories() -> None:
    prepared = prepare()
    first, second = (send(prepared, 34, "a@example.org"), send(prepared, 35, "b@example.org"))
    _, html_a = parts(first)
    _, html_b = parts(second)
    links_a, links_b = recipient_links(make_config(), 34), recipient_links(make_config(), 35)
    assert links_a["unsubscribe_url"] != links_b["unsubscribe_url"]
    assert links_a["unsubscribe_url"] in html_a and links_b["unsubscribe_url"] in html_b
    assert links_a["unsubscribe_url"] not in html_b

    def neutral(html: str, links: dict[str, str], address: str) -> str:
        for value in (links["unsubscribe_url"], links["preferences_url"], address):
            html = html.replace(value, "RECIPIENT")
        return html

    assert neutral(html_a, links_a, "a@example.org") == neutral(html_b, links_b, "b@example.org")


def test_no_template_runs_per_recipient(monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = prepare()
    renders = []
    original = jinja2.Template.render

    def counting(self: jinja2.Template, *args: Any, **kwargs: Any) -> str:
        renders.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", counting)
    for n in range(20):
        send(prepared, subscriber_id=n, address=f"r{n}@example.org", name=None if n % 2 else "R")
    assert renders == []


def test_html_special_characters_in_a_name_are_escaped_in_html_only() -> None:
    name = '<b>Eve</b> & "Co"'
    text, html = parts(send(prepare(), name=name))
    assert "<b>Eve</b>" not in html
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; &quot;Co&quot;" in html
    assert f"Hello {name}," in text
    assert parse(send(prepare(), name=name))["To"].addresses[0].display_name == name


def test_a_recipient_without_a_name_is_greeted_without_one() -> None:
    text, html = parts(send(prepare(), name=None))
    assert "Hello" not in text and "Hello" not in html
    assert "Here is the latest 1 story from Women in Uniform." in text
    assert parse(send(prepare(), name=None))["To"] == "jane@example.org"


def test_placeholders_never_leak() -> None:
    prepared = prepare()
    for name in ("Jane", None):
        data = send(prepared, name=name)
        text, html = parts(data)
        assert "nbslot" not in text and "nbslot" not in html


def test_an_address_that_cannot_be_written_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentSendError):
        send(prepare(), address="пользователь@example.org")
    # An internationalised domain is fine: it is written in its ASCII (IDNA) form.
    assert (
        parse(send(prepare(), address="jane@bücher.example"))["To"].addresses[0].domain
        == "xn--bcher-kva.example"
    )


# --- untrusted article data -----------------------------------------------------------------


def test_title_with_cr_lf_does_not_inject_headers() -> None:
    evil = story(title="Big news\r\nBcc: victim@example.org\r\nX-Evil: 1\n\nbody")
    data = send(prepare(None, evil), name="Jane\r\nCc: other@example.org")
    message = parse(data)
    assert message["Bcc"] is None and message["X-Evil"] is None and message["Cc"] is None
    assert (
        message["Subject"]
        == "Women in Uniform daily: Big news Bcc: victim@example.org X-Evil: 1 body"
    )
    assert message["To"].addresses[0].addr_spec == "jane@example.org"
    assert len(message["To"].addresses) == 1
    assert sorted(message.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "Precedence",
            "Auto-Submitted",
            "MIME-Version",
            "Content-Type",
        ]
    )


def test_scripts_handlers_and_javascript_urls_never_reach_the_html() -> None:
    evil = story(
        title='<img src=x onerror="alert(1)">Title',
        url="javascript:alert(1)",
        image="javascript:alert(2)",
        summary=(
            '<p onclick="alert(3)">Hi<script>alert(4)</script>'
            '<img src="x" onerror="alert(5)"><a href="javascript:alert(6)">x</a></p>'
        ),
    )
    text, html = parts(send(prepare(None, evil)))
    elements = _elements(html)
    assert "script" not in [tag for tag, _ in elements]
    for tag, attrs in elements:
        for attr, value in attrs:
            assert not attr.startswith("on"), (tag, attr)
            if attr in ("href", "src"):
                assert (value or "").startswith(("https://", "http://", "mailto:")), (tag, value)
    assert [attrs for tag, attrs in elements if tag == "img"] == []
    assert "alert(4)" not in html and "alert(4)" not in text
    assert "&lt;img src=x onerror=" in html  # the title is shown as text, escaped


def _elements(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collector().feed(html)
    return found


def test_subject_is_plain_text_not_html_escaped() -> None:
    message = parse(send(prepare(None, story(title='Police & army <3 "women"'))))
    assert message["Subject"] == 'Women in Uniform daily: Police & army <3 "women"'


@pytest.mark.parametrize(
    "title",
    [
        "Abapolisikazi b'u Rwanda bahawe amapeti mashya 🇷🇼👮‍♀️",
        "Женщины в полиции получили новые звания",
        "女警察在边境机构中担任领导职务",
    ],
)
def test_non_latin_text_and_emoji_survive_in_subject_body_and_name(title: str) -> None:
    summary = f"<p>{title} — 🎖️</p>"
    data = send(prepare(None, story(title=title, summary=summary)), name=title[:20])
    assert data.isascii()  # headers encoded (RFC 2047), bodies quoted-printable
    message = parse(data)
    assert message["Subject"] == f"Women in Uniform daily: {title}"
    assert message["To"].addresses[0].display_name == title[:20]
    text, html = parts(data)
    assert title in text and f"{title} — 🎖️" in text
    assert title in html


def test_a_very_long_subject_is_cut_not_refused() -> None:
    message = parse(send(prepare(None, story(title="Word " * 200))))
    assert len(message["Subject"]) <= 255
    assert message["Subject"].endswith("…")


# --- design ---------------------------------------------------------------------------------


def test_html_is_inlined_but_keeps_responsive_and_dark_mode_rules() -> None:
    _, html = parts(send(prepare()))
    assert '<html lang="en"' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (max-width: 600px)" in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert 'role="presentation"' in html
    assert re.search(r'<h2 class="story-title" style="[^"]*font-size: 20px', html)
    assert ">Unsubscribe</a>" in html and ">Change your preferences</a>" in html


def test_text_part_lists_each_story_with_date_url_and_summary() -> None:
    text, _ = parts(send(prepare(None, story(), story(title="Second story", url=None))))
    assert "1. Rwanda's first women border officers graduate" in text
    assert "1 March 2026" in text
    assert "Read more: https://newsroom.example.org/2026/03/border-officers" in text
    assert "Forty officers completed twelve weeks of training." in text
    assert "2. Second story" in text
    assert "Unsubscribe: https://news.example.org/unsubscribe/" in text
    assert "Change your preferences: https://news.example.org/preferences/" in text


def test_a_broken_template_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.html.j2").write_text("<p>ok</p>\n<p>{{ nope.x }}</p>\n")
    (tmp_path / "email" / "digest.txt.j2").write_text("ok\n")
    with pytest.raises(ConfigError) as caught:
        prepare(None, env=make_environment(tmp_path))
    problem = caught.value.problems[0]
    assert problem.file.endswith("digest.html.j2") and problem.line == 2
    with pytest.raises(ConfigError, match="not found"):
        prepare(None, env=make_environment(tmp_path / "nowhere"))


# --- DKIM -----------------------------------------------------------------------------------


@pytest.fixture
def dkim_config(tmp_path: Path) -> tuple[Config, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    config = make_config(
        root=str(tmp_path),
        email={
            "dkim": {
                "domain": "newsroom.example.org",
                "selector": "nb2026",
                "private_key_file": "dkim.pem",
            }
        },
    )
    return config, record


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(
    dkim_config: tuple[Config, bytes],
) -> None:
    config, record = dkim_config

    def dns(name: bytes | str, timeout: float = 5) -> bytes | None:
        wanted = "nb2026._domainkey.newsroom.example.org."
        return record if (name.decode() if isinstance(name, bytes) else name) == wanted else None

    data = send(prepare(config), config=config)
    assert data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(data, dnsfunc=dns)
    signature = parse(data)["DKIM-Signature"]
    signed = {h.strip() for h in re.search(r"h=([^;]+)", signature).group(1).split(":")}
    assert {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "mime-version",
    } <= signed
    tampered = data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click",
    )
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_missing_dkim_key_is_a_config_error(tmp_path: Path) -> None:
    config = make_config(
        root=str(tmp_path),
        email={
            "dkim": {
                "domain": "newsroom.example.org",
                "selector": "s",
                "private_key_file": "none.pem",
            }
        },
    )
    with pytest.raises(ConfigError, match="private_key_file"):
        prepare(config)


# --- what readers see (issue #16) -----------------------------------------------------------


SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "newsbroadcast.yaml"
FLAG = "🇷🇼"


def readable(data: bytes) -> tuple[str, str]:
    """The text and HTML parts with plain newlines."""
    text, html = parts(data)
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def summary_div(html: str) -> str:
    found = re.search(r'<div class="summary"[^>]*>(.*?)</div>', html, re.S)
    assert found, "no summary"
    return found.group(1)


def test_a_long_summary_goes_out_as_an_excerpt_in_both_parts_then_read_more() -> None:
    long = "<p>" + "Forty officers completed twelve weeks of training. " * 100 + "</p>"
    text, html = readable(send(prepare(None, story(summary=long))))
    shown = html_to_text(summary_div(html))
    assert 200 <= len(shown) <= 300 and shown.endswith("training.")
    assert text.count("Forty officers") == html.count("Forty officers") == shown.count("Forty")
    assert re.search(r"training\.\n\nRead more: https://newsroom", text)
    assert html.index("</div>", html.index('class="summary"')) < html.index('class="read-more"')


def test_excerpt_setting_sets_the_length_and_zero_keeps_the_whole_summary() -> None:
    long = "<p>" + "Officers trained hard. " * 100 + "</p>"
    short = make_config(digests=[{**DAILY, "excerpt": 50}])
    whole = make_config(digests=[{**DAILY, "excerpt": 0}])
    _, html = readable(send(prepare(short, story(summary=long))))
    assert len(html_to_text(summary_div(html))) <= 50
    _, html = readable(send(prepare(whole, story(summary=long))))
    assert html_to_text(summary_div(html)) == html_to_text(long)
    # Without a link to the full story there is no rest to read: it is shown whole.
    _, html = readable(send(prepare(short, story(summary=long, url=None))))
    assert html_to_text(summary_div(html)) == html_to_text(long)


def test_the_picture_is_the_declared_one_never_an_img_of_the_summary() -> None:
    declared = "https://newsroom.example.org/images/graduation.jpg"
    summary = '<p>Officers <img src=x onerror="alert(1)"> graduated.</p>'
    _, html = readable(send(prepare(None, story(summary=summary, image=declared))))
    (img,) = [dict(attrs) for tag, attrs in _elements(html) if tag == "img"]
    assert img["src"] == declared
    assert img["alt"] == "Rwanda's first women border officers graduate"
    assert (img["width"], img["height"]) == ("544", "306")
    assert "height: auto" in (img["style"] or "")
    # Without a declared http(s) picture there is none, whatever the summary holds.
    for image in (None, "x", "/images/a.jpg", "data:image/png;base64,AAAA"):
        _, html = readable(send(prepare(None, story(summary=summary, image=image))))
        assert [tag for tag, _ in _elements(html) if tag == "img"] == []


def test_the_text_part_keeps_blank_lines_between_its_pieces() -> None:
    plain = story(title="Plain", summary="No paragraph markup here.")
    marked = story(title="Marked", summary="<p>One.</p><p>Two.</p>")
    for name in ("Jane", None):
        text, _ = readable(send(prepare(None, plain, marked), name=name))
        assert re.search(r"from Women in Uniform\.\n\n1\. Plain\n", text)
        assert "\n\nNo paragraph markup here.\n\nRead more: " in text
        assert "\n\nOne.\n\nTwo.\n\nRead more: " in text
        assert re.search(r"\(https://newsroom\.example\.org\)\.\n\nUnsubscribe: ", text)
        assert "\n\n\n" not in text


def test_read_more_follows_a_paragraph_whatever_the_summary_looked_like() -> None:
    for summary in ("Loose text.", "<p>A paragraph.</p>", "Text <em>then</em><p>more</p>"):
        _, html = readable(send(prepare(None, story(summary=summary))))
        inner = summary_div(html)
        assert inner.startswith("<p") and inner.endswith("</p>"), inner


def test_the_footer_is_the_sites_own() -> None:
    _, html = readable(send(prepare()))
    assert "women serving in police" not in html  # the sample site's words, not every site's
    site = {
        "description": "Stories from the border posts.",
        "postal_address": "Women in Uniform newsroom\n  P.O. Box 12, Kigali\nRwanda\n",
    }
    config = make_config(site=site)
    text, html = readable(send(prepare(config), config=config))
    footer = html[html.index('class="footer"') :]
    assert "Stories from the border posts." in footer
    assert "Women in Uniform newsroom, P.O. Box 12, Kigali, Rwanda" in footer
    tail = text[text.rindex("-" * 72) :]
    assert "Stories from the border posts." in tail
    assert tail.rstrip().endswith("Women in Uniform newsroom\nP.O. Box 12, Kigali\nRwanda")


def test_a_stored_edition_links_to_its_archive_page() -> None:
    text, html = readable(send(prepare()))
    link = "https://news.example.org/archive/12"
    assert f'href="{link}"' in html and f"View this digest in your browser: {link}" in text
    # A trial render (check, the planner's subject) has no page to link to.
    config = make_config()
    unstored = EditionView(0, "daily", PERIOD, NOW, [story()])
    env = make_environment(TEMPLATES)
    text, html = readable(send(prepare_edition(env, config, config.digests[0], unstored)))
    assert "/archive/" not in html and "in your browser" not in text


def test_the_html_part_has_one_h1() -> None:
    _, html = readable(send(prepare(None, story(), story(title="Second"))))
    assert [tag for tag, _ in _elements(html)].count("h1") == 1
    assert re.search(r"<h1[^>]*>.*Women in Uniform</a></h1>", html)


def test_a_long_subject_is_cut_between_grapheme_clusters() -> None:
    for lead in ("", "x", "xy"):  # every parity: a cut inside a flag would show somewhere
        subject = parse(send(prepare(None, story(title=lead + FLAG * 200))))["Subject"]
        assert len(subject) <= 255 and subject.endswith("…")
        tail = subject.removeprefix("Women in Uniform daily: " + lead).removesuffix("…")
        assert tail == FLAG * (len(tail) // 2)


def sample_config() -> Config:
    return load_config(SAMPLE_CONFIG, env={"NEWSBROADCAST_SECRET": SECRET})


@pytest.mark.parametrize(
    ("language", "one", "three"),
    [
        ("en", "weekly: 1 story", "weekly: 3 stories"),
        ("fr", "weekly: 1 article", "weekly: 3 articles"),
    ],
)
def test_the_sample_weekly_subject_says_1_story(language: str, one: str, three: str) -> None:
    config = sample_config()
    weekly = config.digest("weekly")
    env = make_environment(TEMPLATES)
    for count, expected in ((1, one), (3, three)):
        view = EditionView(12, "weekly", PERIOD, NOW, [story()] * count)
        subject = prepare_edition(env, config, weekly, view, language).subject
        assert subject == f"Women in Uniform {expected}"


def test_the_default_subject_says_1_new_story() -> None:
    config = make_config(digests=[DAILY])  # no subject of its own
    env = make_environment(TEMPLATES)
    one = EditionView(12, "daily", PERIOD, NOW, [story()])
    two = EditionView(12, "daily", PERIOD, NOW, [story(), story()])
    assert prepare_edition(env, config, config.digests[0], one).subject == (
        "Women in Uniform: 1 new story"
    )
    assert prepare_edition(env, config, config.digests[0], two, "fr").subject == (
        "Women in Uniform: 2 nouveaux articles"
    )
