"""Article HTML from feeds is outside input: only simple prose markup reaches an email."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

from newsbroadcast.render.templates import (
    format_date,
    html_to_text,
    make_environment,
    sanitize_html,
)


def test_scripts_are_removed_with_their_content() -> None:
    out = sanitize_html("<p>Before<script>alert('x')</script> after</p>")
    assert "script" not in out and "alert" not in out
    assert out == "<p>Before after</p>"


def test_event_handlers_and_their_tags_are_removed() -> None:
    out = sanitize_html('<p onclick="steal()">Hi <img src="x" onerror="steal()"></p>')
    assert "onclick" not in out and "onerror" not in out and "steal" not in out
    assert "<img" not in out


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox(1)",
    ],
)
def test_dangerous_url_schemes_are_dropped(href: str) -> None:
    out = sanitize_html(f'<a href="{href}">click</a>')
    assert "href" not in out
    assert "click" in out


def test_http_https_and_mailto_links_stay() -> None:
    out = sanitize_html(
        '<a href="https://a.example/x">a</a> <a href="http://b.example">b</a> '
        '<a href="mailto:desk@newsroom.example.org">c</a>'
    )
    assert 'href="https://a.example/x"' in out
    assert 'href="http://b.example"' in out
    assert 'href="mailto:desk@newsroom.example.org"' in out


def test_relative_links_are_resolved_against_the_base_or_dropped() -> None:
    assert 'href="https://news.example/2024/story"' in sanitize_html(
        '<a href="/2024/story">s</a>', base_url="https://news.example/"
    )
    assert "href" not in sanitize_html('<a href="/2024/story">s</a>')


def test_style_iframe_and_layout_tags_do_not_survive() -> None:
    out = sanitize_html(
        '<style>body{display:none}</style><iframe src="https://x"></iframe>'
        '<div style="position:fixed"><table><tr><td>cell</td></tr></table></div>'
        '<p style="color:red" class="x">text</p>'
    )
    assert out == "cell<p>text</p>"


def test_allowed_prose_markup_is_kept() -> None:
    html = (
        "<p><em>a</em> <strong>b</strong> <b>c</b> <i>d</i><br></p>"
        "<ul><li>e</li></ul><ol><li>f</li></ol><blockquote>g</blockquote>"
    )
    assert sanitize_html(html) == html


def test_html_to_text_strips_tags_decodes_entities_and_collapses_space() -> None:
    html = (
        "<p>Police &amp; border\n\n   officers</p><p>met&nbsp;in <b>Kigali</b>"
        "<script>var x = 1;</script></p><ul><li>one</li><li>two</li></ul>"
    )
    assert html_to_text(html) == "Police & border officers met in Kigali one two"


def test_html_to_text_keeps_non_latin_text_and_emoji() -> None:
    assert html_to_text("<p>Женщины &mdash; 女警察 🇷🇼</p>") == "Женщины — 女警察 🇷🇼"


def test_date_filter() -> None:
    assert format_date(datetime(2018, 7, 10, 9, 0, tzinfo=UTC)) == "10 July 2018"
    assert format_date(None) == ""
    # 23:30 UTC is already the next day in Kigali (UTC+2).
    assert (
        format_date(datetime(2018, 7, 10, 23, 30, tzinfo=UTC), tz="Africa/Kigali") == "11 July 2018"
    )


def test_environment_escapes_html_templates_only(tmp_path: Path) -> None:
    (tmp_path / "a.html.j2").write_text("{{ v }}", encoding="utf-8")
    (tmp_path / "a.txt.j2").write_text("{{ v }}", encoding="utf-8")
    (tmp_path / "b.html.j2").write_text("{{ v|sanitize_html }}|{{ v|html_to_text }}")
    env = make_environment(tmp_path)
    assert env.get_template("a.html.j2").render(v="<b>&") == "&lt;b&gt;&amp;"
    assert env.get_template("a.txt.j2").render(v="<b>&") == "<b>&"
    assert env.get_template("b.html.j2").render(v="<b>x</b><script>y</script>") == "<b>x</b>|x"
    assert isinstance(env.filters["sanitize_html"]("<b>x</b>"), Markup)


def test_environment_fails_on_undefined_names(tmp_path: Path) -> None:
    (tmp_path / "t.txt.j2").write_text("{{ missing }}", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError):
        make_environment(tmp_path).get_template("t.txt.j2").render()
