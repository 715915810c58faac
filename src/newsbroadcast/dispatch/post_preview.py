"""`newsbroadcast post preview`: what each channel would post for an article, and how long
it is by that channel's own measure. Renders exactly as planning does, and shows each
network's payload as the channel's own code builds it for sending; posts nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import func, select

from newsbroadcast.channels.base import OutgoingPost, Payload, story_identity
from newsbroadcast.db.models import Article, Post
from newsbroadcast.errors import InputError, NewsBroadcastError, RenderError
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
    payload: Payload | None = None  # what would be sent (None: the channel cannot say)

    @property
    def fits(self) -> bool:
        return self.problem is None and self.length <= self.limit

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["fits"] = self.fits
        return found


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
        # A planned post's row id is what a generic webhook body carries; 0 before planning.
        rows = dict(
            session.execute(select(Post.channel, Post.id).where(Post.article_id == article.id))
            .tuples()
            .all()
        )
    previews = []
    for entry in service.config.social:
        channel = service.channels[entry.name]
        story = post_story(article, entry.max_hashtags)
        template = service.templates.get_template(f"social/{entry.template}")
        try:
            text = render_post(template, story, channel.limit, channel.measure)
        except RenderError as e:
            previews.append(PostPreview(entry.name, entry.type, "", 0, channel.limit, str(e)))
            continue
        outgoing = OutgoingPost(
            rows.get(entry.name, 0),
            article.id,
            entry.name,
            text,
            article.url,
            article.title,
            summary=article.summary,
            image=article.image,
            language=article.language,
            story=story_identity(service.config.site.list_id, article.source, article.guid),
        )
        payload, problem = _payload(channel, outgoing)
        previews.append(
            PostPreview(
                entry.name,
                entry.type,
                text,
                channel.measure(text),
                channel.limit,
                problem,
                payload,
            )
        )
    return article, previews


def _payload(channel: object, post: OutgoingPost) -> tuple[Payload | None, str | None]:
    preview = getattr(channel, "preview", None)
    if preview is None:
        return None, None
    try:
        return preview(post), None
    except NewsBroadcastError as e:  # e.g. a thumbnail fetch gone wrong beyond its own care
        return None, f"cannot build the payload: {e}"


class _Dumper(yaml.SafeDumper):
    """YAML for people: a text with line breaks shown as the block it is."""


def _text_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text_block)


def payload_lines(payload: Payload) -> list[str]:
    """``payload`` for a terminal: the request, its body as YAML, then what else sending
    would do."""
    body = yaml.dump(
        _type_first(payload.body), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000
    )
    lines = [payload.request, *(f"  {line}".rstrip() for line in body.rstrip("\n").splitlines())]
    lines += [f"+ {note}" for note in payload.notes]
    return lines


def _type_first(value: Any) -> Any:
    """``value`` with each object's ``$type`` (AT Protocol's) first: a person reads what a
    thing is before its fields. The JSON form keeps the order as sent."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k != "$type")
        return {k: _type_first(value[k]) for k in keys}
    if isinstance(value, list):
        return [_type_first(v) for v in value]
    return value
