"""Subscribers: adding one, importing a CSV file; addresses validated, nothing duplicated."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsbroadcast.errors import InputError, SuppressedAddress
from newsbroadcast.models import Subscriber, SubscriberStatus
from newsbroadcast.suppressions import is_suppressed


def normalize_email(raw: str) -> str:
    """The address as it should be stored, or InputError saying what is wrong with it."""
    candidate = raw.strip()
    if not candidate:
        raise InputError("empty email address")
    try:
        return validate_email(candidate, check_deliverability=False).normalized
    except EmailNotValidError as e:
        raise InputError(f"{candidate!r} is not a valid email address: {e}") from e


def email_key(address: str) -> str:
    """The uniqueness key: addresses differing only in letter case are one subscriber."""
    return address.lower()


def add_subscriber(
    session: Session,
    email: str,
    now: datetime,
    name: str | None = None,
    language: str = "en",
    status: SubscriberStatus = SubscriberStatus.active,
) -> tuple[Subscriber, bool]:
    """Add an address, or return the existing one unchanged. ``(subscriber, created)``.

    An existing address is never reactivated here: someone who unsubscribed or bounced
    stays so (re-subscribing is the subscriber's own act, through the sign-up page).
    """
    address = normalize_email(email)
    existing = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(address)))
    if existing is not None:
        return existing, False
    if is_suppressed(session, address):
        raise SuppressedAddress(f"{address} is on the suppression list; it is not added")
    sub = Subscriber(
        email=address,
        email_key=email_key(address),
        name=(name or "").strip() or None,
        language=language or "en",
        status=status,
        created_at=now,
        updated_at=now,
        confirmed_at=now if status == SubscriberStatus.active else None,
    )
    session.add(sub)
    session.flush()
    return sub, True


@dataclass
class ImportReport:
    added: int = 0
    existing: int = 0
    suppressed: int = 0  # rows skipped because the address is on the suppression list
    problems: list[str] = field(default_factory=list)  # "file:line: message"


def import_csv(session: Session, path: Path, now: datetime) -> ImportReport:
    """Import ``email[,name[,language]]`` rows (a header row is optional).

    Good rows are imported, bad rows reported with their line numbers; the caller commits.
    """
    report = ImportReport()
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    with handle:
        try:
            rows = list(_rows(csv.reader(handle)))
        except (csv.Error, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not a readable CSV file: {e}") from e
    header = [c.strip().lower() for c in rows[0][1]] if rows else []
    columns = {"email": 0, "name": 1, "language": 2}
    if "email" in header:
        columns = {c: header.index(c) for c in ("email", "name", "language") if c in header}
        rows = rows[1:]
    seen: set[str] = set()
    for line, row in rows:

        def col(key: str, row: list[str] = row) -> str:
            i = columns.get(key)
            return row[i].strip() if i is not None and i < len(row) else ""

        try:
            address = normalize_email(col("email"))
        except InputError as e:
            report.problems.append(f"{path}:{line}: {e}")
            continue
        if email_key(address) in seen:
            report.existing += 1
            continue
        seen.add(email_key(address))
        language = col("language") or "en"
        try:
            _, created = add_subscriber(session, address, now, name=col("name"), language=language)
        except SuppressedAddress:
            report.suppressed += 1
            continue
        if created:
            report.added += 1
        else:
            report.existing += 1
    return report


def _rows(reader: Any) -> list[tuple[int, list[str]]]:
    """Non-empty rows with the line each started on (a quoted field may span lines)."""
    out: list[tuple[int, list[str]]] = []
    start = 1
    for row in reader:
        if any(cell.strip() for cell in row):
            out.append((start, row))
        start = reader.line_num + 1
    return out
