"""The run report: its columns, and the values of one run. Pure: the tab writer lives in ``sheets.report``.

One definition serves the report tab, the task that fills it and the alerts that quote it; the outcome
columns come from :class:`phone_sync.outcomes.Outcome`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from phone_sync.contracts import WriteBack
from phone_sync.outcomes import OUTCOME_COLUMNS

REPORT_COLUMNS: tuple[str, ...] = (
    "run id",
    "logical date",
    "start",
    "duration",
    "rows read",
    *OUTCOME_COLUMNS,
    "batches failed",
    "statuses not placed",
    "FHIR requests",
    "Sheets requests",
    "link",
)
# The numeric columns: what an alert may show of a run.
COUNT_COLUMNS = REPORT_COLUMNS[REPORT_COLUMNS.index("rows read") : REPORT_COLUMNS.index("link")]


def report_values(
    result: WriteBack, *, run_id: str, logical_date: datetime, finished: datetime, link: str
) -> dict[str, object]:
    """The report row of one run, by column; ``logical_date`` already in the region's timezone."""
    return {
        "run id": run_id,
        "logical date": logical_date.isoformat(),
        "start": result.started.isoformat(),
        "duration": str(timedelta(seconds=round((finished - result.started).total_seconds()))),
        "rows read": result.read,
        **{outcome.report_column: count for outcome, count in result.counts.items()},
        "batches failed": len(result.batches_failed),
        "statuses not placed": result.not_placed,
        "FHIR requests": result.fhir_requests,
        "Sheets requests": result.sheets_requests,
        "link": link,
    }
