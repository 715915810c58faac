"""What one dispatch pass did: counts of sent, retried, failed, skipped, and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.errors += other.errors

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.skipped
