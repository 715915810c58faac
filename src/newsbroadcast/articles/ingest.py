"""Polling sources into the article store, one transaction per source.

A source that fails is recorded in ``source_state.last_error`` and reported; it never
stops the others. The fetch happens outside any transaction (it may take the whole
timeout), and the articles and the new ETag are committed together: a validator saved
without its articles would make the next poll answer 304 and lose them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast import __version__
from newsbroadcast.articles.store import upsert_articles
from newsbroadcast.config.model import Config, Source
from newsbroadcast.db.models import SourceState
from newsbroadcast.errors import InputError, SourceError
from newsbroadcast.sources.http import make_client
from newsbroadcast.sources.registry import fetch_source, known_guids

__all__ = ["PollReport", "poll_all", "poll_source", "user_agent"]

log = logging.getLogger("newsbroadcast.ingest")

# Sources polled at the same time: enough that a few slow servers do not hold up the rest,
# few enough for a small machine and one SQLite writer.
PARALLEL_POLLS = 4
_NOTES_KEPT = 20  # SourceState.notes: the newest this many


@dataclass
class PollReport:
    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    not_modified: bool = False
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def user_agent(config: Config) -> str:
    """Names us and the site we work for, so a feed's operator knows whom to ask."""
    return f"newsbroadcast/{__version__} (+{config.site.url})"


def poll_source(
    sessions: sessionmaker[Session],
    config: Config,
    source: Source,
    now: datetime,
    client: httpx.Client | None = None,
) -> PollReport:
    """Fetch ``source``, store its articles and its state, commit. A ``SourceError`` is
    recorded and returned in ``PollReport.error``; other exceptions (a database failure)
    propagate."""
    with sessions() as session:
        state = session.get(SourceState, source.name)
        etag, last_modified = (state.etag, state.last_modified) if state else (None, None)
        cursor = state.cursor if state else None
        # Until a poll has read the source to its end, what it lists is its archive.
        meeting = state is None or state.caught_up_at is None
    try:
        result = fetch_source(
            source,
            config.base_dir,
            etag,
            last_modified,
            cursor,
            client,
            user_agent=user_agent(config),
            known=known_guids(sessions, source.name),
        )
    except SourceError as e:
        log.warning("%s", e)
        with sessions.begin() as session:
            state = source_state(session, source.name)
            state.last_polled_at = now
            state.last_error = str(e)
        return PollReport(source=source.name, error=str(e))

    with sessions.begin() as session:
        stored = upsert_articles(session, source.name, result.drafts, now, archive=meeting)
        state = source_state(session, source.name)
        notes = list(stored.notes)
        if meeting and stored.new_ids:
            notes.insert(
                0,
                f"first read: {len(stored.new_ids)} stories kept as the archive; a channel "
                "announces only the newest `backfill` of them",
            )
        if meeting and not result.more and state.caught_up_at is None:
            state.caught_up_at = now
        if notes:
            earlier = (state.notes or "").splitlines()
            state.notes = "\n".join(list(dict.fromkeys(notes + earlier))[:_NOTES_KEPT])
        state.last_polled_at = now
        state.last_success_at = now
        state.last_error = None
        state.items_seen = (state.items_seen or 0) + len(result.drafts)
        if result.cursor is not None:
            state.cursor = result.cursor
        if not result.not_modified:
            state.last_problems = "\n".join(result.skipped[:50]) or None
        state.etag = result.etag
        state.last_modified = result.last_modified
    for reason in result.skipped:
        log.info("source %r: skipped %s", source.name, reason)
    for note in notes:
        log.info("source %r: %s", source.name, note)
    report = PollReport(
        source=source.name,
        new=len(stored.new_ids),
        updated=stored.updated,
        unchanged=stored.unchanged,
        not_modified=result.not_modified,
        skipped=list(result.skipped),
    )
    log.info(
        "source %r: %s",
        source.name,
        "not modified"
        if report.not_modified
        else f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged",
    )
    return report


def poll_all(
    sessions: sessionmaker[Session],
    config: Config,
    now: datetime,
    client: httpx.Client | None = None,
    names: Iterable[str] | None = None,
) -> list[PollReport]:
    """Poll every configured source (or only those in ``names``); reports come in
    configuration order.

    Sources are polled at the same time (at most ``PARALLEL_POLLS``), each in its own
    transactions, so a slow server costs only its own source its timeout. One source's
    failure, even an unexpected crash, is logged and reported and the rest are still
    polled. Raises ``InputError`` for a name that is not configured.
    """
    sources = list(config.sources)
    if names is not None:
        wanted = list(dict.fromkeys(names))
        known = {s.name for s in sources}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise InputError(
                f"no source named {', '.join(map(repr, unknown))} "
                f"(configured: {', '.join(sorted(known)) or 'none'})"
            )
        sources = [s for s in sources if s.name in wanted]
    own_client = client is None
    # One client for the whole round (it is thread-safe): connections to a host serving
    # several feeds are reused.
    http = client or make_client()

    def poll(source: Source) -> PollReport:
        try:
            return poll_source(sessions, config, source, now, http)
        except Exception as e:  # one broken source must not stop the others
            log.exception("source %r: polling failed", source.name)
            return PollReport(
                source=source.name, error=f"source {source.name!r}: internal error: {e!r}"
            )

    try:
        if len(sources) <= 1:
            return [poll(source) for source in sources]
        # SQLite takes one writer at a time: the others wait for it (busy_timeout), and the
        # store treats a row a concurrent poll inserted meanwhile as existing.
        with ThreadPoolExecutor(
            min(PARALLEL_POLLS, len(sources)), thread_name_prefix="poll"
        ) as pool:
            return list(pool.map(poll, sources))
    finally:
        if own_client:
            http.close()


def source_state(session: Session, name: str) -> SourceState:
    """The source's state row, created on first use (safe when two pollers race to it)."""
    state = session.get(SourceState, name)
    if state is not None:
        return state
    try:
        with session.begin_nested():
            state = SourceState(name=name, items_seen=0)
            session.add(state)
            session.flush()
    except IntegrityError:
        state = session.get(SourceState, name)
        if state is None:
            raise
    return state
