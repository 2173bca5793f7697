"""Which sheet rows a run processes. Pure: rows and the run's interval in, decisions out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from phone_sync.config import RowSelection
from phone_sync.outcomes import Outcome

if TYPE_CHECKING:  # the Sheets client is not loaded in task processes that never talk to Sheets
    from phone_sync.sheets.rows import SheetRow


@dataclass(frozen=True)
class Interval:
    """The run's data interval as calendar dates in the region's timezone: ``start <= d < end``."""

    start: date
    end: date

    def __contains__(self, day: date) -> bool:
        # A zero-length interval (manual or @once runs) still means "the day it covers".
        return self.start <= day < self.end if self.end > self.start else day == self.start


@dataclass(frozen=True)
class Selection:
    rows: list[SheetRow]
    missing_feed_date: list[SheetRow]
    reasons: Counter[str]


QUEUED_PREFIX = f"{Outcome.QUEUED.prefix}:"


def wants_processing(status: str, rules: RowSelection) -> bool:
    """Empty status: never processed. ``queued:``: an earlier run left it for this one. ``failed...``:
    retried when the region says so."""
    text = status.strip().lower()
    return not text or text.startswith(QUEUED_PREFIX) or (rules.retry_failed and text.startswith("failed"))


def _why(status: str, rules: RowSelection) -> str:
    if not status.strip():
        return "status empty"
    return "retrying failed" if wants_processing(status, rules) else "resending"


def _queued(status: str) -> bool:
    return status.strip().lower().startswith(QUEUED_PREFIX)


def select_rows(
    rows: list[SheetRow], rules: RowSelection, interval: Interval | None, resend: bool = False
) -> Selection:
    """Rows to process; with ``select: data_interval`` only those whose feed date is in the interval.

    ``resend`` takes rows whatever their status says (success included): after a FHIR server was restored.

    A row that should be processed but has no readable feed date cannot be placed in any run's
    interval, so it is returned separately to get a status telling the operator to fix the date.
    """
    picked: list[SheetRow] = []
    missing: list[SheetRow] = []
    reasons: Counter[str] = Counter()
    for row in rows:
        if not (resend or wants_processing(row.status, rules)):
            reasons["status already set"] += 1
        elif _queued(row.status):  # its own run already chose it, whatever this run's interval
            picked.append(row)
            reasons["queued by an earlier run"] += 1
        elif rules.select != "data_interval" or interval is None:
            picked.append(row)
            reasons[_why(row.status, rules)] += 1
        elif row.feed_date is None:
            if not row.status.strip():
                missing.append(row)
            reasons["no feed date"] += 1
        elif row.feed_date in interval:
            picked.append(row)
            reasons["in data interval"] += 1
        else:
            reasons["outside data interval"] += 1
    return Selection(picked, missing, reasons)
