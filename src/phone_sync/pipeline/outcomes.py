"""What each row's status says in the sheet, and how the run report counts it.

Every failed or skipped status ends in a short correlation id (``b07-r123``: batch 7, row 123;
``clean-r12``: decided while cleaning) that appears verbatim in the task log, so an operator
can go from the row to the log line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from phone_sync.phones import CleanedPhone

# Report categories, in report order.
KINDS = ("updated", "unchanged", "not_found", "invalid_phone", "conflict", "failed", "skipped")


@dataclass(frozen=True)
class Status:
    row: int
    identifier: str
    kind: str
    text: str

    def to_xcom(self) -> list[Any]:
        return [self.row, self.identifier, self.kind, self.text]

    @classmethod
    def from_xcom(cls, item: list[Any]) -> Status:
        return cls(*item)


def correlation_id(row: int, batch: int | None = None) -> str:
    return f"clean-r{row}" if batch is None else f"b{batch:02d}-r{row}"


def _failed(row: int, identifier: str, kind: str, reason: str, batch: int | None = None) -> Status:
    return Status(row, identifier, kind, f"failed: {reason} ({correlation_id(row, batch)})")


def _skipped(row: int, identifier: str, reason: str, batch: int | None = None) -> Status:
    return Status(row, identifier, "skipped", f"skipped: {reason} ({correlation_id(row, batch)})")


def invalid_phone(row: int, identifier: str, result: CleanedPhone) -> Status:
    return _failed(row, identifier, "invalid_phone", f"invalid phone, {result.message}")


def missing_identifier(row: int, identifier: str) -> Status:
    return _failed(row, identifier, "failed", "identifier missing")


def missing_feed_date(row: int, identifier: str) -> Status:
    return _failed(row, identifier, "failed", "feed date missing or unreadable; fix it and clear this status")


def superseded(row: int, identifier: str, winner_row: int) -> Status:
    return _skipped(row, identifier, f"superseded by row {winner_row}")


def batch_not_processed(row: int, identifier: str, batch: int, reason: str) -> Status:
    return _failed(row, identifier, "failed", f"batch not processed ({reason}), will retry", batch)


def from_outcome(
    row: int,
    identifier: str,
    batch: int,
    outcome: str,
    patients: int,
    failed: int,
    reason: str | None,
    note: str | None,
) -> Status:
    """The status of a row that went to FHIR, from the client's per-row outcome."""
    if outcome == "updated":
        detail = [f"{patients} patients"] if patients > 1 else []
        detail += [note] if note else []
        return Status(row, identifier, "updated", "success" + (f" ({'; '.join(detail)})" if detail else ""))
    if outcome == "unchanged":
        return Status(row, identifier, "unchanged", "unchanged")
    if outcome == "not_found":
        return _failed(row, identifier, "not_found", "patient not found", batch)
    if outcome == "conflict":
        return _failed(row, identifier, "conflict", "patient kept changing on the server, not updated", batch)
    if outcome == "newer_on_record":
        return _skipped(row, identifier, "newer number on record", batch)
    if outcome == "partial":
        return _failed(row, identifier, "failed", f"{failed}/{patients} patients not updated: {reason}", batch)
    return _failed(row, identifier, "failed", f"rejected by the FHIR server: {reason or 'no reason given'}", batch)


def count(statuses: list[Status]) -> dict[str, int]:
    counts = Counter(s.kind for s in statuses)
    return {kind: counts.get(kind, 0) for kind in KINDS}
