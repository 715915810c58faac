"""Languages: English, French and Kinyarwanda digests, plural forms, dates, fallbacks."""

from __future__ import annotations

import email
import email.policy
import shutil
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from newsbroadcast.config.checks import template_problems
from newsbroadcast.render import i18n
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.templates import format_date, make_environment
from newsbroadcast.render.views import EditionView, Recipient, StoryView
from tests.site import TEMPLATES, make_config

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
STORY = StoryView(
    "Border officers graduate",
    "https://newsroom.example.org/a",
    "<p>Summary.</p>",
    datetime(2026, 7, 10, 9, 0, tzinfo=UTC),
    author="Ann",
)


def render(language: str | None, stories: int = 2, name: str | None = "Ada", env=None) -> tuple:
    config = make_config()
    env = env or make_environment(TEMPLATES)
    view = EditionView(1, "daily", "p", NOW, [STORY] * stories)
    prepared = prepare_edition(env, config, config.digests[0], view, language)
    data = prepared.message(Recipient(1, "ada@example.org", name), "e.1@example.org", NOW)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def test_english_french_and_kinyarwanda_with_plural_forms_and_dates() -> None:
    text, html = render("en")
    assert "Hello Ada, here are the latest 2 stories" in text and "10 July 2026" in text
    assert '<html lang="en"' in html

    text, html = render("fr")
    assert "Bonjour Ada, voici les 2 derniers articles de Women in Uniform." in text
    assert "Par Ann, 10 juillet 2026" in text and "Lire la suite" in html
    assert "Se désabonner" in html and '<html lang="fr"' in html
    one, _ = render("fr", stories=1, name=None)
    assert "Voici 1 nouvel article de Women in Uniform." in one

    text, html = render("rw")
    assert "Muraho Ada, dore inkuru 2 nshya za Women in Uniform." in text
    assert "10 Nyakanga 2026" in text and "Kwiyandukuza" in html
    one, _ = render("rw", stories=1, name=None)
    assert "Dore inkuru 1 nshya ya Women in Uniform." in one


def test_unknown_language_falls_back_to_english_and_regions_to_their_language() -> None:
    assert render("de") == render("en")
    assert render(None) == render("en")
    assert render("fr-CA")[0] == render("fr")[0]
    assert i18n.resolve_language({"fr", "rw"}, "RW") == "rw"


def test_a_message_missing_from_a_catalog_falls_back_to_english(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    po = tmp_path / "templates/locale/fr/LC_MESSAGES/messages.po"
    text = po.read_text()
    # Drop the translation of "Read more" (an empty msgstr means: not translated).
    assert 'msgstr "Lire la suite"' in text
    po.write_text(text.replace('msgstr "Lire la suite"', 'msgstr ""'))
    text, html = render("fr", env=make_environment(tmp_path / "templates"))
    assert "Read more: https://newsroom.example.org/a" in text  # English for that one
    assert "Bonjour Ada" in text  # the rest still French


def test_a_broken_catalog_is_reported_by_check_with_its_line(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    po = tmp_path / "templates/locale/rw/LC_MESSAGES/messages.po"
    po.write_text(po.read_text() + '\nmsgid "dangling\n')
    config = make_config(root=str(tmp_path))
    problems = [p for p in template_problems(config) if p.file == str(po)]
    assert problems and "catalog" in problems[0].message
    # Meanwhile rendering goes on, in English for that language.
    assert render("rw", env=make_environment(tmp_path / "templates")) == render("en")


def test_every_template_message_is_translated_in_each_catalog() -> None:
    method = [("email/**.j2", "jinja2")]
    options = {"email/**.j2": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true",
                               "lstrip_blocks": "true"}}  # fmt: skip
    wanted = {
        m if isinstance(m, str) else m[0]
        for _f, _l, m, _c, _x in extract_from_dir(str(TEMPLATES), method, options)
    }
    assert wanted
    for language in ("fr", "rw"):
        po = TEMPLATES / f"locale/{language}/LC_MESSAGES/messages.po"
        with po.open("rb") as f:
            catalog = read_po(f, locale=language)
        translated = {
            m.id if isinstance(m.id, str) else m.id[0]
            for m in catalog
            if m.id and (m.string if isinstance(m.string, str) else all(m.string))
        }
        assert wanted <= translated, (language, wanted - translated)


def test_format_date_follows_the_language() -> None:
    day = datetime(2018, 7, 10, 9, 0, tzinfo=UTC)
    assert format_date(day) == "10 July 2018"
    assert format_date(day, lang="fr") == "10 juillet 2018"
    assert format_date(day, lang="rw") == "10 Nyakanga 2018"


def test_every_web_page_message_is_translated_in_each_catalog() -> None:
    method = [("web/**.j2", "jinja2")]
    options = {"web/**.j2": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true",
                             "lstrip_blocks": "true"}}  # fmt: skip
    wanted = {
        m if isinstance(m, str) else m[0]
        for _f, _l, m, _c, _x in extract_from_dir(str(TEMPLATES), method, options)
    }
    assert {"Check your inbox", "Skip to the content", "Your preferences"} <= wanted
    for language in ("fr", "rw"):
        po = TEMPLATES / f"locale/{language}/LC_MESSAGES/messages.po"
        with po.open("rb") as f:
            catalog = read_po(f, locale=language)
        translated = {
            m.id if isinstance(m.id, str) else m.id[0]
            for m in catalog
            if m.id and (m.string if isinstance(m.string, str) else all(m.string))
        }
        assert wanted <= translated, (language, wanted - translated)


def test_accept_language_is_negotiated_by_weight_among_the_offered() -> None:
    offered = ["en", "fr", "rw"]
    assert i18n.negotiate("fr-CA,fr;q=0.9,en;q=0.8", offered) == "fr"
    assert i18n.negotiate("de, rw;q=0.5, en;q=0.4", offered) == "rw"  # weights, not order
    assert i18n.negotiate("en;q=0.2, fr;q=0.2", offered) == "en"  # a tie: the header's order
    assert i18n.negotiate("RW-rw", offered) == "rw"
    assert i18n.negotiate("en;q=0, *;q=0.1", offered) == "fr"  # refused, then anything else
    assert i18n.negotiate("fr;q=0", offered) is None
    assert i18n.negotiate("de, ja", offered) is None
    assert i18n.negotiate("fr;q=abc, ;;, rw;q=2, en;q=0.5", offered) == "en"  # junk skipped
    assert i18n.negotiate(None, offered) is None and i18n.negotiate("", offered) is None
    assert i18n.negotiate("fr", []) is None


def test_languages_are_named_in_themselves_and_offered_by_catalog() -> None:
    assert [i18n.display_name(c) for c in ("en", "fr", "rw")] == [
        "English",
        "Français",
        "Ikinyarwanda",
    ]
    assert i18n.display_name("xx-nope") == "xx-nope"
    assert i18n.offered_languages([], "en", TEMPLATES) == ["en", "fr", "rw"]
    assert i18n.offered_languages([], "fr", TEMPLATES) == ["fr", "en", "rw"]  # the site's first
    assert i18n.offered_languages(["rw", "en", "rw"], "en", TEMPLATES) == ["rw", "en"]
