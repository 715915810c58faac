"""Subscribers: adding one, importing a CSV file; addresses validated, nothing duplicated."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsbroadcast.db.models import Subscriber, SubscriberStatus
from newsbroadcast.errors import InputError, SuppressedAddress
from newsbroadcast.subscribers.suppressions import is_suppressed


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


# What spreadsheets write between fields; the first is the default.
DELIMITERS = (",", ";", "\t", "|")


def import_csv(
    session: Session,
    path: Path,
    now: datetime,
    *,
    languages: Sequence[str] | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> ImportReport:
    """Import ``email[,name[,language]]`` rows (a header row is optional).

    The delimiter is found from the file (comma, semicolon, tab or bar) unless given. With
    ``languages`` a row's language must be one of them (compared case-insensitively; an
    empty one is the first). Good rows are imported, bad rows reported with their line
    numbers; a file that cannot be decoded is refused with the line of the first bad byte
    (InputError). The caller commits.
    """
    report = ImportReport()
    text = _read_text(path, encoding)
    delimiter = delimiter or sniff_delimiter(text)
    try:
        rows = list(_rows(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)))
    except csv.Error as e:
        raise InputError(f"{path}: not a readable CSV file: {e}") from e
    header = [c.strip().lower() for c in rows[0][1]] if rows else []
    columns = {"email": 0, "name": 1, "language": 2}
    if "email" in header:
        columns = {c: header.index(c) for c in ("email", "name", "language") if c in header}
        rows = rows[1:]
    offered = {lang.casefold(): lang for lang in languages or ()}
    seen: set[str] = set()
    for line, row in rows:

        def col(key: str, row: list[str] = row) -> str:
            i = columns.get(key)
            return row[i].strip() if i is not None and i < len(row) else ""

        try:
            address = normalize_email(col("email"))
            language = _language(col("language"), offered, languages)
        except InputError as e:
            report.problems.append(f"{path}:{line}: {e}{_delimiter_hint(col('email'), delimiter)}")
            continue
        if email_key(address) in seen:
            report.existing += 1
            continue
        seen.add(email_key(address))
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


def _read_text(path: Path, encoding: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first address.
        return data.decode("utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding)
    except LookupError as e:
        raise InputError(f"unknown encoding {encoding!r}") from e
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        hint = " (saved by a spreadsheet? try --encoding latin-1 or cp1252)"
        raise InputError(
            f"{path}:{line}: not {encoding} text: byte 0x{data[e.start]:02x} cannot be read"
            + (hint if codecs.lookup(encoding).name == "utf-8" else "")
        ) from e


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first row (usually the header) into the most fields,
    then the other first rows into the most; a comma when nothing splits anything."""
    sample = [line for line in text[: 64 * 1024].splitlines() if line.strip()][:20]
    if not sample:
        return DELIMITERS[0]

    def score(candidate: str) -> tuple[int, int]:
        try:
            counts = [len(row) for row in csv.reader(sample, delimiter=candidate)]
        except csv.Error:
            return (0, 0)
        return (counts[0], min(counts)) if counts else (0, 0)

    return max(DELIMITERS, key=score)  # the first of equals: a comma wins a tie


def _language(given: str, offered: dict[str, str], languages: Sequence[str] | None) -> str:
    if not languages:
        return given or "en"
    if not given:
        return languages[0]
    if given.casefold() not in offered:
        raise InputError(
            f"language {given!r} is not offered (web.languages: {', '.join(languages)})"
        )
    return offered[given.casefold()]


def _delimiter_hint(cell: str, delimiter: str) -> str:
    """Why a row may have been split wrongly: another delimiter inside the address cell."""
    for other in DELIMITERS:
        if other != delimiter and other in cell:
            shown = "\\t" if other == "\t" else other
            return f" (fields separated by '{shown}'? use --delimiter '{shown}')"
    return ""


def _rows(reader: Any) -> list[tuple[int, list[str]]]:
    """Non-empty rows with the line each started on (a quoted field may span lines)."""
    out: list[tuple[int, list[str]]] = []
    start = 1
    for row in reader:
        if any(cell.strip() for cell in row):
            out.append((start, row))
        start = reader.line_num + 1
    return out
