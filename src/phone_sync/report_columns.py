"""The run report's columns, in sheet order: one definition for the report tab, the task that fills
it and the alerts that quote it."""

from __future__ import annotations

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
)
# The numeric columns: what an alert may show of a run.
COUNT_COLUMNS = REPORT_COLUMNS[REPORT_COLUMNS.index("rows read") : REPORT_COLUMNS.index("link")]
