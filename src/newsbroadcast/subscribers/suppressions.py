"""The suppression list: addresses never to be added or mailed again.

Entries are SHA-256 hashes of the lower-cased address, so the list can outlive an erased
subscriber without keeping the address itself. Import, add and sign-up all consult it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsbroadcast.db.models import Suppression

__all__ = ["email_hash", "is_suppressed", "suppress"]


def email_hash(address: str) -> str:
    """The key an address is suppressed under (letter case does not matter)."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def is_suppressed(session: Session, address: str) -> bool:
    key = email_hash(address)
    return (
        session.scalar(select(Suppression.email_hash).where(Suppression.email_hash == key))
        is not None
    )


def suppress(session: Session, address: str, reason: str, now: datetime) -> bool:
    """Add ``address`` to the list; False when it was there already (the first reason stays)."""
    if is_suppressed(session, address):
        return False
    session.add(Suppression(email_hash=email_hash(address), reason=reason[:200], created_at=now))
    session.flush()
    return True
