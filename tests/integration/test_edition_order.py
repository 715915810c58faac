"""The order readers get an edition's stories in: dated newest first, undated last, so an
undated story never leads the edition or names its subject (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from newsbroadcast.articles.store import upsert_articles
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article, Edition, EditionArticle
from newsbroadcast.planning.editions import bulk_plan_edition, subject_renderer
from newsbroadcast.planning.schedule import due_period
from newsbroadcast.render.templates import make_environment
from newsbroadcast.sources.base import ArticleDraft
from tests.site import TEMPLATES, make_config

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def draft(slug: str, published: datetime | None) -> ArticleDraft:
    return ArticleDraft(
        guid=slug,
        title=slug.replace("-", " ").title(),
        url=f"https://ex.org/{slug}",
        published_at=published,
    )


def test_undated_stories_come_last_and_never_name_the_subject(engine: Engine) -> None:
    config = make_config()  # subject: "{{ site.name }} daily: {{ edition.articles[0].title }}"
    digest = config.digests[0]
    with sessions(engine).begin() as session:
        # The undated story is seen last: by first sighting it is the newest of all.
        upsert_articles(session, "newsroom", [draft("older", NOW - timedelta(days=2))], NOW)
        upsert_articles(session, "newsroom", [draft("newest", NOW - timedelta(hours=1))], NOW)
        upsert_articles(session, "newsroom", [draft("undated-note", None)], NOW)

    with sessions(engine)() as session:
        period = due_period(digest, NOW, force=True)
        assert period is not None
        subject_for = subject_renderer(make_environment(TEMPLATES), config, digest, period, NOW)
        planned = bulk_plan_edition(session, digest, period, NOW, subject_for)
    assert planned is not None

    with sessions(engine)() as session:
        order = session.scalars(
            select(Article.guid)
            .join(EditionArticle, EditionArticle.article_id == Article.id)
            .where(EditionArticle.edition_id == planned.edition_id)
            .order_by(EditionArticle.position)
        ).all()
        subject = session.scalar(select(Edition.subject).where(Edition.id == planned.edition_id))
    assert order == ["newest", "older", "undated-note"]
    assert subject == "Women in Uniform daily: Newest"
