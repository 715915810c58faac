import jinja2
import pytest

from newsbroadcast.errors import PostTooLong, RenderError
from newsbroadcast.render.social import PostStory, fit, hashtag, render_post, shorten

TEMPLATE = jinja2.Environment().from_string(
    "{{ story.title }}\n\n{{ summary }}\n\n{{ story.url }}\n{{ story.hashtags }}"
)


def story(summary: str) -> PostStory:
    return PostStory(
        title="Rwanda to send all-woman peacekeeping force to South Sudan",
        url="https://newsroom.example.org/2018/07/rwanda-all-woman-unit?utm_source=x",
        summary=summary,
        published_at=None,
        author=None,
        tags=("peacekeeping", "border management"),
    )


def test_short_post_is_left_alone() -> None:
    text = render_post(TEMPLATE, story("A short summary."), 500)
    assert "A short summary." in text
    assert text.endswith("#peacekeeping #BorderManagement")


def test_long_summary_is_cut_at_a_word_with_an_ellipsis_and_url_kept_whole() -> None:
    s = story("Officers " + "trained in border management and community policing " * 20)
    text = render_post(TEMPLATE, s, 280)
    assert len(text) <= 280
    assert s.url in text  # never cut
    assert "#BorderManagement" in text
    summary_line = text.split("\n\n")[1]
    assert summary_line.endswith("…")
    assert summary_line[:-1].split()[-1] in s.summary.split()  # a whole word before the …


def test_fit_uses_the_given_measure() -> None:
    # A measure that weighs every character double: the text must fit half as many.
    text = fit(lambda s: f"T {s}", "word " * 100, 100, measure=lambda t: 2 * len(t))
    assert 2 * len(text) <= 100


def test_too_long_without_summary_is_an_error() -> None:
    with pytest.raises(PostTooLong, match="without its summary"):
        fit(lambda s: "x" * 50 + s, "abc", 40)


def test_shorten_and_hashtag() -> None:
    assert shorten("one two three", 20) == "one two three"
    assert shorten("one two three", 9) == "one two…"
    assert hashtag("central-asia") == "#CentralAsia"
    assert hashtag("Кыргызстан") == "#Кыргызстан"
    assert hashtag("!!") == ""
