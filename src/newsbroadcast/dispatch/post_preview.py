"""`newsbroadcast post preview`: what each channel would post for an article, and how long
it is by that channel's own measure. Renders exactly as planning does; posts nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from newsbroadcast.db.models import Article
from newsbroadcast.errors import InputError, RenderError
from newsbroadcast.planning.posts import post_story
from newsbroadcast.render.social import render_post

if TYPE_CHECKING:  # the service sits on top: it is handed in, never imported
    from newsbroadcast.service import Service


@dataclass(frozen=True)
class PostPreview:
    channel: str
    kind: str  # the channel's type: x, mastodon, file, …
    text: str
    length: int
    limit: int
    problem: str | None = None  # why no text fits, when none does


def preview_posts(
    service: Service, article_id: int | None = None
) -> tuple[Article, list[PostPreview]]:
    """The article (the newest when no id is given) and each channel's post for it."""
    with service.sessions() as session:
        if article_id is None:
            newest = func.coalesce(Article.published_at, Article.first_seen_at).desc()
            article = session.scalars(select(Article).order_by(newest, Article.id.desc())).first()
            if article is None:
                raise InputError("there are no articles yet: run `newsbroadcast run --once` first")
        else:
            article = session.get(Article, article_id)
            if article is None:
                raise InputError(f"there is no article {article_id}")
    story = post_story(article)
    previews = []
    for entry in service.config.social:
        channel = service.channels[entry.name]
        template = service.templates.get_template(f"social/{entry.template}")
        try:
            text = render_post(template, story, channel.limit, channel.measure)
        except RenderError as e:
            previews.append(PostPreview(entry.name, entry.type, "", 0, channel.limit, str(e)))
            continue
        previews.append(
            PostPreview(entry.name, entry.type, text, channel.measure(text), channel.limit)
        )
    return article, previews
