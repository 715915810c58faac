import dataclasses

import jinja2
import pytest
import regex

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


LONG_TITLE = (
    "Rwanda to send an all-woman peacekeeping force to South Sudan, the first of its kind "
    "from the country, after two years of training with partners from the region and "
    "beyond, including instructors from Ghana, Kenya, Uganda and the United Nations "
    "Mission, with officers drawn from the national police, the defence force and the "
    "correctional service, in what officials call a milestone"
)


def test_a_title_longer_than_the_limit_is_cut_at_a_word_and_the_link_kept_whole() -> None:
    from newsbroadcast.channels.x import LIMIT, weighted_length

    s = dataclasses.replace(story("A summary that cannot fit as well."), title=LONG_TITLE)
    assert weighted_length(LONG_TITLE) > LIMIT
    text = render_post(TEMPLATE, s, LIMIT, weighted_length)
    assert weighted_length(text) <= LIMIT
    title_line, link_and_tags = text.split("\n\n")  # the summary had to go
    assert title_line.endswith("…")
    assert LONG_TITLE.startswith(title_line[:-1])
    assert title_line[:-1].split()[-1] in LONG_TITLE.split()  # a whole word before the …
    assert link_and_tags == f"{s.url}\n#peacekeeping #BorderManagement"


def test_a_title_without_spaces_is_cut_between_graphemes() -> None:
    # Bluesky counts graphemes: a ZWJ emoji or a letter with its accent is one, never split.
    title = "👩‍✈️" * 10 + "e\u0301" * 10
    s = PostStory(title, "https://newsroom.example.org/a", "", None, None, ())
    for limit in range(34, 52):  # from the title's first grapheme to all of it but one
        text = render_post(TEMPLATE, s, limit, lambda t: len(regex.findall(r"\X", t)))
        head = text.split("\n\n")[0]
        assert head.endswith("…") and title.startswith(head[:-1]), limit
        assert len(regex.findall(r"\X", text)) <= limit
    assert shorten("👩‍✈️" * 4, 3) == "👩‍✈️" * 2 + "…"
    assert shorten("cafe\u0301s", 5) == "cafe\u0301s"
    assert shorten("cafe\u0301s!", 5) == "cafe\u0301…"


def test_a_post_that_cannot_fit_at_all_says_why() -> None:
    s = dataclasses.replace(story("summary"), tags=tuple(f"tag number {i}" for i in range(40)))
    with pytest.raises(PostTooLong, match="title cut to its first character"):
        render_post(TEMPLATE, s, 280)


def test_a_template_failing_for_a_story_names_the_template_and_line() -> None:
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"social/dated.txt.j2": "{{ story.title }}\n{{ 1 // 0 }}"})
    )
    with pytest.raises(RenderError, match=r"^social/dated.txt.j2:2: ZeroDivisionError"):
        render_post(env.get_template("social/dated.txt.j2"), story(""), 280)
