"""What a preview shows for each row: the decision a live run would take, at its line. Pure.

The preview worksheet is part of the region's own spreadsheet, so it may name the identifier and the
number a live run would write; nothing of it goes to logs or to Airflow's database in clear. Each row of
the run has its line, fixed by ``clean_phones`` (the run's rows in sheet order, after the header), so the
batches and write-back can each write their own lines in any order.
"""

from __future__ import annotations

from collections.abc import Iterable

from phone_sync.outcomes import PHONE_PROBLEMS, Outcome, Status

Line = tuple[int, list[object]]  # (line in the preview worksheet, its values)


def line_numbers(rows: Iterable[int]) -> dict[int, int]:
    """Each of the run's sheet rows -> its line in the preview worksheet (line 1 is the header)."""
    return {row: line for line, row in enumerate(sorted(set(rows)), start=2)}


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


def preview_line(line: int, status: Status, phone: str | None, run_id: str) -> Line:
    """Row, identifier, the phone a live run would write, the decision, the run id."""
    return line, [status.row, status.identifier, phone or "", decision(status, phone), run_id]
