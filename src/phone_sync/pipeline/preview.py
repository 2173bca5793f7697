"""What a preview shows for each row: the decision a live run would take. Pure.

The preview worksheet is part of the region's own spreadsheet, so it may name the identifier and the
number a live run would write; nothing of it goes to logs or to Airflow's database in clear.
"""

from __future__ import annotations

from phone_sync.contracts import Batch
from phone_sync.outcomes import PHONE_PROBLEMS, Outcome, Status


def decision(status: Status, phone: str | None) -> str:
    """``would update +62812...``, ``unchanged``, ``not found``, ``invalid phone: ...``, or the status text."""
    if status.outcome is Outcome.UPDATED:
        patients = f" ({status.patients} patients)" if status.patients > 1 else ""
        return f"would update {phone}{patients}"
    if status.outcome is Outcome.NOT_FOUND:
        return "not found"
    if status.outcome is Outcome.INVALID_PHONE:
        return f"invalid phone: {PHONE_PROBLEMS.get(status.detail or '', status.detail or 'not usable')}"
    return status.summary


def preview_lines(statuses: list[Status], batches: list[Batch], run_id: str) -> list[list[object]]:
    """One line per row, in sheet order: row, identifier, the phone a live run would write, the decision."""
    phones = {row.row: row.phone for batch in batches for row in batch.rows}
    return [
        [status.row, status.identifier, phones.get(status.row, ""), decision(status, phones.get(status.row)), run_id]
        for status in sorted(statuses, key=lambda s: s.row)
    ]
