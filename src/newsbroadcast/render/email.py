"""Digest emails: an edition rendered once per variant (template × language).

``prepare_edition`` renders the subject, the HTML part (CSS-inlined) and the text part once,
with unguessable placeholders where per-recipient values go; ``render.mime`` writes each
recipient's message from that (``PreparedEdition.message``), no template runs per recipient.

Pure: no database, no network, no clock (``now`` is an argument).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import css_inline
import jinja2
from markupsafe import Markup

from newsbroadcast.config.model import Config, Digest
from newsbroadcast.errors import ConfigError, Problem
from newsbroadcast.render import i18n
from newsbroadcast.render.excerpt import excerpt_html, html_paragraphs, shorten
from newsbroadcast.render.mime import SLOTS, Body, PreparedEdition, one_line
from newsbroadcast.render.templates import html_to_text, sanitize_html
from newsbroadcast.render.views import EditionView, StoryView

__all__ = [
    "ArticleView",
    "prepare_edition",
    "template_context",
]

# Long enough for any real subject; longer ones are cut (clients show ~60-130 characters)
# so a runaway article title cannot make a header line too long to send.
MAX_SUBJECT = 255
MAX_PREHEADER = 140
# A story's picture is shown this size at most (the story column's width) and keeps its own
# shape (height: auto in the CSS); the attributes let a client reserve the room before it
# loads, at the 16:9 most news pictures have.
IMAGE_WIDTH = 544
IMAGE_HEIGHT = 306


@dataclass(frozen=True)
class ArticleView:
    """A story as templates see it: ``summary_html`` is sanitised, URLs are http(s) or None.

    ``excerpt_html`` is the summary shortened to the digest's ``excerpt`` (whole when it is
    0, and for a story without a link), every tag closed and loose text in ``<p>``;
    ``excerpt_text`` is the same as text paragraphs separated by blank lines. ``image_alt``
    describes ``image`` (the title)."""

    title: str
    url: str | None
    summary_html: Markup
    summary_text: str
    published_at: datetime | None
    image: str | None
    author: str | None
    tags: tuple[str, ...]
    excerpt_html: Markup
    excerpt_text: str
    image_alt: str
    image_width: int = IMAGE_WIDTH
    image_height: int = IMAGE_HEIGHT


def template_context(
    env: jinja2.Environment,
    config: Config,
    digest: Digest,
    edition: EditionView,
    language: str | None = None,
) -> dict[str, Any]:
    """What the digest templates see, except the per-recipient values (``subscriber``,
    ``unsubscribe_url``, ``preferences_url``): ``site``, ``digest``, ``edition`` (with its
    ``articles`` and, for a stored edition, its archive page's ``archive_url``), ``subject``
    and ``preheader``. Raises ConfigError for a bad subject."""
    articles = [_article_view(story, config.site.url, digest.excerpt) for story in edition.stories]
    site = {
        "name": config.site.name,
        "url": config.site.url,
        "language": config.site.language,
        "description": config.site.description,
        "postal_address": config.site.postal_address,
    }
    edition_context = {
        "id": edition.id,
        "digest": edition.digest,
        "period": edition.period,
        "created_at": edition.created_at,
        "articles": articles,
        "archive_url": _archive_url(config, edition),
    }
    context: dict[str, Any] = {
        "site": site,
        "digest": digest,
        "edition": edition_context,
        "language": language or config.site.language,
    }
    context["subject"] = _render_subject(env, digest, context)
    context["preheader"] = _preheader(articles)
    return context


def prepare_edition(
    env: jinja2.Environment,
    config: Config,
    digest: Digest,
    edition: EditionView,
    language: str | None = None,
    subject_prefix: str = "",
) -> PreparedEdition:
    """Render ``edition`` with ``digest``'s templates (``email/<template>.html.j2`` and
    ``.txt.j2``) once, in ``language`` (its catalog, else English: see render.i18n).
    Raises ConfigError, located in the template, when a template is missing or fails."""
    with i18n.language(env, language) as used:
        return _prepare(env, config, digest, edition, used, subject_prefix)


def _prepare(
    env: jinja2.Environment,
    config: Config,
    digest: Digest,
    edition: EditionView,
    language: str,
    subject_prefix: str,
) -> PreparedEdition:
    context = template_context(env, config, digest, edition, language)
    subject = context["subject"] = one_line(subject_prefix + context["subject"])

    # A fresh random marker per edition: article text cannot contain it by accident or design.
    nonce = secrets.token_hex(8)
    sentinels = [f"nbslot{nonce}{i}x" for i in range(len(SLOTS))]
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    variants: dict[bool, tuple[Body, Body]] = {}
    # Two variants, with and without a name, so `{% if subscriber.name %}` in a template
    # decides for real instead of always seeing the (truthy) placeholder.
    html_name = f"email/{digest.template}.html.j2"
    text_name = f"email/{digest.template}.txt.j2"
    for named in (True, False):
        per_recipient = {
            "subscriber": {"name": sentinels[0] if named else None, "email": sentinels[1]},
            "unsubscribe_url": sentinels[2],
            "preferences_url": sentinels[3],
        }
        page = _render(env, html_name, {**context, **per_recipient})
        try:
            page = inliner.inline(page)
        except (css_inline.InlineError, ValueError) as e:
            raise ConfigError([Problem(html_name, None, f"CSS could not be inlined: {e}")]) from e
        text = _render(env, text_name, {**context, **per_recipient})
        variants[named] = (Body(page, sentinels), Body(text, sentinels))

    # Derived from the content, not random: a preview of an edition carries the very bytes
    # the real send will. "=_" cannot occur in quoted-printable text, so it never collides.
    content = hashlib.sha256()
    for bodies in variants.values():
        for body in bodies:
            content.update(b"\0".join(body.literals))
    boundary = f"=_nb_{content.hexdigest()[:16]}"
    return PreparedEdition(
        config=config,
        digest=digest,
        period=edition.period,
        subject=subject,
        variants=variants,
        boundary=boundary,
    )


def _article_view(story: StoryView, site_url: str, excerpt: int) -> ArticleView:
    url = _web_url(story.url)
    summary = sanitize_html(story.summary or "", base_url=url or site_url)
    # Cut from sanitised HTML and sanitised again: whatever the cut, only safe markup leaves.
    # A story without a link has no "Read more" to the rest: it is shown whole.
    short = sanitize_html(excerpt_html(summary, excerpt if url else 0))
    title = one_line(story.title)
    return ArticleView(
        title=title,
        url=url,
        summary_html=Markup(summary),
        summary_text=html_to_text(summary),
        published_at=story.published_at,
        image=_web_url(story.image),
        author=one_line(story.author or "") or None,
        tags=story.tags,
        excerpt_html=Markup(short),
        excerpt_text="\n\n".join(html_paragraphs(short)),
        image_alt=title,
    )


def _archive_url(config: Config, edition: EditionView) -> str | None:
    # Only a stored edition has an archive page (web/archive: /archive/<edition id>); the
    # trial renders of `check` and of the planner's subject use id 0.
    if edition.id <= 0:
        return None
    return f"{config.site.public_url.rstrip('/')}/archive/{edition.id}"


def _web_url(url: str | None) -> str | None:
    # Feeds are outside input: a `javascript:` or `data:` link must never become an href.
    if not url:
        return None
    url = url.strip()
    return url if re.match(r"(?i)https?://[^\s\"'<>]+$", url) else None


def _render_subject(env: jinja2.Environment, digest: Digest, context: dict[str, Any]) -> str:
    # A subject is a header, not HTML: never escaped, whatever the environment's default.
    source = "{% autoescape false %}" + digest.subject + "{% endautoescape %}"
    where = f"digests[{digest.name}].subject"
    try:
        subject = env.from_string(source).render(context)
    except jinja2.TemplateError as e:
        raise ConfigError([Problem(where, None, f"the subject template fails: {e}")]) from e
    # Code points, as a header's length goes; cut between grapheme clusters, never in a flag.
    subject = shorten(one_line(subject), MAX_SUBJECT, code_points=True)
    return subject or str(context["site"]["name"])


def _preheader(articles: list[ArticleView]) -> str:
    return shorten(" · ".join(a.title for a in articles[:3]), MAX_PREHEADER)


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError([Problem(e.filename or name, e.lineno, e.message or str(e))]) from e
    except jinja2.TemplateNotFound as e:
        raise ConfigError(
            [Problem(name, None, f"template not found (looked under {_search_path(env)})")]
        ) from e
    except jinja2.TemplateError as e:
        raise ConfigError([Problem(name, _template_line(e, name), str(e))]) from e


def _template_line(error: Exception, name: str) -> int | None:
    # Jinja rewrites tracebacks so that template frames carry the template's file and line.
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.replace("\\", "/").endswith(name):
            return frame.lineno
    return None


def _search_path(env: jinja2.Environment) -> str:
    loader = env.loader
    paths = getattr(loader, "searchpath", None)
    return ", ".join(map(str, paths)) if paths else "the template loader"
