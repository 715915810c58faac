"""The automatic pause: an edition whose recent messages are mostly refused (by
every dispatcher's outcomes in the database) is paused before a block burns the whole list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsbroadcast.config.model import AutoPause
from newsbroadcast.db.models import Delivery, Edition, EditionStatus
from newsbroadcast.outbox.steering import pause_edition


def note_refusal(session: Session, settings: AutoPause | None, edition_id: int) -> bool:
    """Feed the automatic pause after a refusal: when, of the edition's last ``window``
    outcomes in the database (every dispatcher's), at least ``failure_share`` were
    refusals, pause it, so a block does not burn through the whole list. True when the
    edition no longer sends (paused now, or halted by someone else meanwhile)."""
    status, since = session.execute(
        select(Edition.status, Edition.autopause_from).where(Edition.id == edition_id)
    ).one()
    if status != EditionStatus.sending:
        return True
    if settings is None:
        return False
    outcomes = sorted(
        [
            (at, False)
            for at in _latest(session, Delivery.sent_at, edition_id, since, settings.window)
        ]
        + [
            (at, True)
            for at in _latest(session, Delivery.refused_at, edition_id, since, settings.window)
        ],
        reverse=True,
    )[: settings.window]
    if len(outcomes) < settings.window:
        return False
    if sum(refused for _, refused in outcomes) / len(outcomes) < settings.failure_share:
        return False
    # One statement: a sibling that looks now sees the edition paused, never a fresh
    # window on a still-sending edition (which would let it send on). Resuming starts
    # the fresh window (resume_edition).
    pause_edition(
        session,
        edition_id,
        f"at least {settings.failure_share:.0%} of the last {settings.window} "
        "messages were refused; see `newsbroadcast status`, then "
        f"`newsbroadcast edition resume {edition_id}`",
    )
    return True


def _latest(
    session: Session, column: Any, edition_id: int, since: datetime | None, window: int
) -> list[datetime]:
    """The edition's latest ``window`` times in ``column`` (after ``since``)."""
    query = select(column).where(Delivery.edition_id == edition_id, column.is_not(None))
    if since is not None:
        query = query.where(column > since)
    return list(session.scalars(query.order_by(column.desc()).limit(window)))
