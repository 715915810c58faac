"""Channels and digests that could not be planned: recorded for `status` (which, why, since
when) and forgotten when they next plan without failing. Posts and sources keep their
failures in their own rows (posts.last_error, source_state.last_error)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsbroadcast.db.models import StepFailure

__all__ = ["clear_failure", "current_failures", "record_failure"]


def record_failure(session: Session, kind: str, name: str, error: str, now: datetime) -> None:
    """Remember that ``kind`` ``name`` failed at ``now`` with ``error``; ``since`` keeps the
    first failure of an unbroken run of them. The caller commits."""
    row = session.get(StepFailure, (kind, name))
    if row is None:
        session.add(StepFailure(kind=kind, name=name, error=error, since=now, last_at=now))
    else:
        row.error, row.last_at = error, now


def clear_failure(session: Session, kind: str, name: str) -> None:
    """``kind`` ``name`` planned without failing: it is healthy again. The caller commits."""
    session.execute(delete(StepFailure).where(StepFailure.kind == kind, StepFailure.name == name))


def current_failures(session: Session) -> list[StepFailure]:
    return list(session.scalars(select(StepFailure).order_by(StepFailure.kind, StepFailure.name)))
