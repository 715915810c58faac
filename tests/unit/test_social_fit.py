import dataclasses
from collections.abc import Callable

import jinja2
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from newsbroadcast.errors import PostTooLong, RenderError
from newsbroadcast.render.links import url_spans
from newsbroadcast.render.social import (
    PostStory,
    fit,
    hashtag,
    hashtags,
    render_post,
    shorten,
)

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
    tags = tuple(f"tag number {i}" for i in range(40))
    s = dataclasses.replace(story("summary"), tags=tags, max_hashtags=40)
    with pytest.raises(PostTooLong, match="title cut to its first character"):
        render_post(TEMPLATE, s, 280)


def test_a_template_failing_for_a_story_names_the_template_and_line() -> None:
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"social/dated.txt.j2": "{{ story.title }}\n{{ 1 // 0 }}"})
    )
    with pytest.raises(RenderError, match=r"^social/dated.txt.j2:2: ZeroDivisionError"):
        render_post(env.get_template("social/dated.txt.j2"), story(""), 280)


# --- every network's fitting over text without spaces: CJK, emoji, ZWJ sequences, links ---

ATOMS = [
    "日",
    "本",
    "語",
    "新",
    "闻",
    "한",
    "。",
    "！",
    "？",
    "、",
    "👮\u200d♀️",  # the measured case: cut to a lone 👮 before
    "👩🏽\u200d✈️",
    "👨\u200d👩\u200d👧\u200d👦",
    "🇷🇼",
    "e\u0301",
    "क्ष",
    "😀",
    " https://newsroom.example.org/2026/11/國境-guards?ref=feed&x=1 ",
    "https://newsroom.example.org/kg?from=feed ",  # straight after CJK: no space before it
    " ",
    "ab",
]
# Text with no space at all: a link in it runs on to the end (as Bluesky's and our link
# detection read it), so any cut past its start falls inside it.
NO_SPACE_ATOMS = [a for a in ATOMS if " " not in a] + ["https://newsroom.example.org/kg?x=1"]
LINK = "https://newsroom.example.org/a"


def networks() -> list[tuple[str, int, Callable[[str], int]]]:
    from newsbroadcast.channels.bluesky import MAX_GRAPHEMES
    from newsbroadcast.channels.bluesky import measure as bluesky_measure
    from newsbroadcast.channels.mastodon import countable_length
    from newsbroadcast.channels.telegram import measure as telegram_measure
    from newsbroadcast.channels.x import LIMIT, weighted_length

    return [
        ("x", LIMIT, weighted_length),
        ("mastodon", 500, countable_length),
        ("bluesky", MAX_GRAPHEMES, bluesky_measure),
        ("telegram", 400, telegram_measure),  # its real 4,096 never cuts these texts
        ("file", 200, len),
    ]


def check_cut(summary: str, shown: str) -> None:
    """``shown`` is ``summary`` whole, or a prefix of its graphemes with an ellipsis, and
    every link in it is one of the summary's links, whole."""
    if shown == summary:
        return
    if not shown:
        return  # nothing of it fitted (or only a link would have)
    assert shown.endswith("…"), shown
    body = shown[:-1].removesuffix(" ")
    kept = regex.findall(r"\X", body)
    assert regex.findall(r"\X", summary)[: len(kept)] == kept, (summary, shown)
    whole = {url for _, _, url in url_spans(summary)}
    assert {url for _, _, url in url_spans(body)} <= whole, (summary, shown)


@pytest.mark.parametrize("network", [n[0] for n in networks()])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    parts=st.one_of(
        # Long enough that most must be cut (lists are short unless told otherwise).
        st.lists(st.sampled_from(ATOMS), min_size=100, max_size=400),
        st.lists(st.sampled_from(NO_SPACE_ATOMS), min_size=100, max_size=400),
        st.lists(st.sampled_from(ATOMS), min_size=1, max_size=20),
    )
)
def test_every_network_cuts_between_graphemes_and_never_inside_a_link(
    network: str, parts: list[str]
) -> None:
    _, limit, measure = next(n for n in networks() if n[0] == network)
    summary = "".join(parts).strip()
    text = fit(lambda s: f"Title\n\n{s}\n\n{LINK}", summary, limit, measure)
    assert measure(text) <= limit
    assert text.startswith("Title\n\n") and text.endswith(f"\n\n{LINK}")
    check_cut(summary, text[len("Title\n\n") : -len(f"\n\n{LINK}")])


def test_the_zwj_sequence_of_the_issue_stays_whole_on_x() -> None:
    from newsbroadcast.channels.x import LIMIT, weighted_length

    summary = "警察" + "👮\u200d♀️" * 200
    text = fit(lambda s: s, summary, LIMIT, weighted_length)
    assert text.endswith("👮\u200d♀️…")
    assert weighted_length(text) <= LIMIT


def test_text_without_spaces_is_cut_after_a_sentence() -> None:
    sentence = "女性警察官の部隊が南スーダンへ派遣される。"
    summary = sentence * 2 + "訓練は二年間続き、各国の教官が参加した"
    assert shorten(summary, 50) == sentence * 2 + "…"
    # Without a sentence end in the last half, a clause end; without either, any grapheme.
    assert shorten("訓練は二年間続き、各国の教官が参加した", 15) == "訓練は二年間続き…"
    assert shorten("訓練は二年間続き各国の教官が参加した", 8) == "訓練は二年間続…"
    # Text with spaces keeps cutting at words, even with a sentence end nearby.
    assert shorten("One sentence here. And then another one follows", 30) == (
        "One sentence here. And then…"
    )


def test_a_summary_that_is_only_a_link_is_dropped_not_cut() -> None:
    url = "https://newsroom.example.org/2026/11/" + "a-very-long-slug-" * 10
    assert shorten(url, 40) == ""
    s = PostStory("Title", LINK, url, None, None, ("police",))
    assert render_post(TEMPLATE, s, 60) == f"Title\n\n{LINK}\n#police"


def test_a_cut_that_would_fall_inside_a_link_drops_the_link() -> None:
    url = "https://newsroom.example.org/2026/11/kigali-police-academy"
    summary = f"Read more at {url} about the recruits"
    assert shorten(summary, 30) == "Read more at…"
    # A link the cut leaves whole stays, set apart from the ellipsis.
    assert shorten(summary, len(f"Read more at {url} ab")) == f"Read more at {url} …"


def test_hashtags_are_valid_unique_and_capped() -> None:
    assert hashtag("2025") == ""  # digits alone are a number
    assert hashtag("C++") == ""  # dropping the ++ would make another word: skipped
    assert hashtag("U.S. elections") == ""
    assert hashtag("Kigali2026") == "#Kigali2026"
    assert hashtag("क्षेत्र") == "#क्षेत्र"  # combining marks belong to the word
    assert hashtag("x" * 65) == ""
    tags = ("2025", "C++", "Kigali", "kigali", "KIGALI", "police", "border guards", "women")
    s = dataclasses.replace(story(""), tags=tags)
    assert s.hashtags == "#Kigali #police #BorderGuards"  # the default: 3
    assert dataclasses.replace(s, max_hashtags=1).hashtags == "#Kigali"
    assert dataclasses.replace(s, max_hashtags=0).hashtags == ""
    assert hashtags(list(tags), 10) == ["#Kigali", "#police", "#BorderGuards", "#women"]
