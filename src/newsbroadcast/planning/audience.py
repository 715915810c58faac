"""Who an edition goes to, beyond "active": the subscribers' own preferences, as SQL.

The conditions are correlated EXISTS clauses on ``subscribers``, so the planner's fan-out
stays one ``INSERT … SELECT`` whatever the number of subscribers.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, false, or_, select
from sqlalchemy.orm import Session

from newsbroadcast.db.models import (
    Article,
    Edition,
    EditionArticle,
    Subscriber,
    SubscriberDigest,
    SubscriberTopic,
)

__all__ = ["edition_audience"]


def edition_audience(session: Session, edition_id: int) -> list[ColumnElement[bool]]:
    """WHERE conditions on ``Subscriber`` for edition ``edition_id``: not paused; chose
    this digest or none (none means all); chose a topic among the edition's articles' tags
    or none (none means all)."""
    digest = session.scalar(select(Edition.digest).where(Edition.id == edition_id))
    # An edition holds at most a few hundred articles: their tags are read once, here.
    tag_lists = session.scalars(
        select(Article.tags)
        .join(EditionArticle, EditionArticle.article_id == Article.id)
        .where(EditionArticle.edition_id == edition_id)
    )
    tags = sorted({t.casefold() for tags in tag_lists for t in (tags or ())})
    mine = SubscriberDigest.subscriber_id == Subscriber.id
    my_topic = SubscriberTopic.subscriber_id == Subscriber.id
    topic_match = exists().where(my_topic, SubscriberTopic.topic.in_(tags)) if tags else false()
    return [
        Subscriber.paused.is_(False),
        or_(~exists().where(mine), exists().where(mine, SubscriberDigest.digest == digest)),
        or_(~exists().where(my_topic), topic_match),
    ]
