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
    "problem",  # last, so report tabs made before it keep their columns
)
# The numeric columns: what an alert may show of a run.
COUNT_COLUMNS = REPORT_COLUMNS[REPORT_COLUMNS.index("rows read") : REPORT_COLUMNS.index("link")]


def report_values(
    result: WriteBack | None,
    *,
    run_id: str,
    logical_date: datetime,
    started: datetime | None,
    finished: datetime,
    link: str,
    problem: str | None = None,
) -> dict[str, object]:
    """The report row of one run, by column; ``logical_date`` already in the region's timezone.

    Without a write-back result (a step before it failed) the counts stay empty and ``problem`` says why.
    """
    begun = result.started if result else started
    values: dict[str, object] = {
        "run id": run_id,
        "logical date": logical_date.isoformat(),
        "start": begun.isoformat() if begun else None,
        "duration": str(timedelta(seconds=round((finished - begun).total_seconds()))) if begun else None,
        "link": link,
        "problem": problem,
    }
    if result is not None:
        values |= {
            "rows read": result.read,
            **{outcome.report_column: count for outcome, count in result.counts.items()},
            "batches failed": len(result.batches_failed),
            "statuses not placed": result.not_placed,
            "FHIR requests": result.fhir_requests,
            "Sheets requests": result.sheets_requests,
        }
    return {column: values.get(column) for column in REPORT_COLUMNS}
