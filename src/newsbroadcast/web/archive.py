"""The public archive: every edition as a page, and an Atom feed of editions.

Rendered from the stored edition and its articles through the digest's own template
context, without any subscriber: no name, no address, no personal link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

import jinja2
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsbroadcast.config.model import Config, Digest
from newsbroadcast.db.models import Edition, EditionStatus
from newsbroadcast.outbox.steering import edition_articles
from newsbroadcast.render.email import template_context
from newsbroadcast.render.views import edition_view

__all__ = [
    "ArchiveVersion",
    "ArchivedEdition",
    "archive_version",
    "atom_feed",
    "edition_context",
    "largest_id",
    "list_editions",
]

ATOM = "http://www.w3.org/2005/Atom"
PUBLIC = (EditionStatus.sending, EditionStatus.done)


@dataclass(frozen=True)
class ArchivedEdition:
    id: int
    digest: str
    subject: str
    created_at: datetime


@dataclass(frozen=True)
class ArchiveVersion:
    """What the public archive holds, in one cheap aggregate: how many editions, the
    newest, and the sum of their ids (a pause and a resume at once still change it)."""

    count: int
    newest: int
    id_sum: int


def archive_version(session: Session) -> ArchiveVersion:
    row = session.execute(
        select(func.count(), func.max(Edition.id), func.sum(Edition.id)).where(
            Edition.status.in_(PUBLIC)
        )
    ).one()
    return ArchiveVersion(int(row[0]), int(row[1] or 0), int(row[2] or 0))


def largest_id(dialect: str) -> int:
    """The largest edition id the database can hold: a number above it is no edition, and
    must not reach the database, which refuses it (PostgreSQL: integer out of range;
    SQLite's driver: Python int too large to convert)."""
    # editions.id is INTEGER: 32 bits on PostgreSQL, 64 on SQLite.
    return 2**63 - 1 if dialect == "sqlite" else 2**31 - 1


def list_editions(
    session: Session, limit: int = 50, before: int | None = None
) -> list[ArchivedEdition]:
    """The newest public editions, newest first; ``before``: only those older than that
    edition id (the next page of the archive: ids grow with time, and unlike an offset a
    page boundary stays put while new editions go out)."""
    query = select(Edition.id, Edition.digest, Edition.subject, Edition.created_at).where(
        Edition.status.in_(PUBLIC)
    )
    if before is not None:
        query = query.where(Edition.id < before)
    rows = session.execute(query.order_by(Edition.id.desc()).limit(limit)).all()
    return [ArchivedEdition(*row) for row in rows]


def _digest(config: Config, name: str) -> Digest:
    try:
        return config.digest(name)
    except KeyError:
        # A digest removed from the config still has its old editions in the archive.
        return Digest(name=name, cron="0 0 * * *")


def edition_context(
    session: Session, env: jinja2.Environment, config: Config, edition_id: int
) -> dict[str, Any] | None:
    """The digest template context of one public edition (None if there is none)."""
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status not in PUBLIC:
        return None
    view = edition_view(edition, edition_articles(session, edition.id))
    context = template_context(env, config, _digest(config, edition.digest), view)
    context["subject"] = edition.subject  # as it was sent
    return context


def atom_feed(session: Session, env: jinja2.Environment, config: Config, limit: int = 30) -> bytes:
    """An Atom 1.0 document of the newest editions, each entry with its stories as HTML."""
    base = config.site.public_url.rstrip("/")
    editions = list_editions(session, limit)
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")

    def child(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    child(feed, "id", f"{base}/archive.atom")
    child(feed, "title", f"{config.site.name}: digest archive")
    child(feed, "link", rel="self", href=f"{base}/archive.atom")
    child(feed, "link", rel="alternate", href=f"{base}/archive")
    updated = editions[0].created_at if editions else datetime(2000, 1, 1).astimezone()
    child(feed, "updated", updated.isoformat())
    author = child(feed, "author")
    child(author, "name", config.site.name)
    for e in editions:
        context = edition_context(session, env, config, e.id)
        if context is None:
            continue
        entry = child(feed, "entry")
        child(entry, "id", f"{base}/archive/{e.id}")
        child(entry, "title", e.subject)
        child(entry, "link", rel="alternate", href=f"{base}/archive/{e.id}")
        child(entry, "updated", e.created_at.isoformat())
        html = env.get_template("web/edition_entry.html.j2").render(context)
        child(entry, "content", html, type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
