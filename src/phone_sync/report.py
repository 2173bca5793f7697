"""The run report: its columns, and the values of one run. Pure: the tab writer lives in ``sheets.report``.

One definition serves the report tab, the task that fills it and the alerts that quote it. Every
:class:`~phone_sync.outcomes.Outcome` has its column (a test holds them together). Columns added after a
region's first report go at the end: the tab keeps the header it was created with, and rows are appended
by position.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from phone_sync.contracts import WriteBack

REPORT_COLUMNS: tuple[str, ...] = (
    "run id",
    "logical date",
    "start",
    "duration",
    "rows read",
    "updated",
    "unchanged",
    "not found",
    "invalid phone",
    "conflicts",
    "failed",
    "skipped",
    "batches failed",
    "statuses not placed",
    "FHIR requests",
    "Sheets requests",
    "link",
    # Added later, so at the end:
    "problem",
    "queued",
    "mode",  # live or preview
    "controls",  # what a manual run asked for (rows a-b, resend, ...); empty for a plain run
    "FHIR profile",  # how the FHIR server was searched and written ("search GET x1, update PATCH")
)
# The numeric columns: what an alert may show of a run.
COUNT_COLUMNS = (*REPORT_COLUMNS[REPORT_COLUMNS.index("rows read") : REPORT_COLUMNS.index("link")], "queued")


def report_values(
    result: WriteBack | None,
    *,
    run_id: str,
    logical_date: datetime,
    started: datetime | None,
    finished: datetime,
    link: str,
    problem: str | None = None,
    mode: str = "live",
    controls: str = "",
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
        "mode": mode,
        "controls": controls,
    }
    if result is not None:
        values |= {
            "rows read": result.read,
            **{outcome.report_column: count for outcome, count in result.counts.items()},
            "batches failed": len(result.batches_failed),
            "statuses not placed": result.not_placed,
            "FHIR requests": result.fhir_requests,
            "Sheets requests": result.sheets_requests,
            "FHIR profile": result.fhir_profile,
        }
    return {column: values.get(column) for column in REPORT_COLUMNS}
