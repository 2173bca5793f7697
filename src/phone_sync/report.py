"""The run report: its columns, and the values of one run. Pure: the tab writer lives in ``sheets.report``.

One definition serves the report tab, the task that fills it and the alerts that quote it. Every
:class:`~phone_sync.outcomes.Outcome` has its column (a test holds them together). Columns added after a
region's first report go at the end: the tab keeps the header it was created with, and rows are appended
by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from phone_sync.contracts import RunFacts, WriteBack
from phone_sync.outcomes import Outcome

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
    "statuses written live",  # by the batches as they finished
    "statuses written at end",  # by write-back
    "FHIR profile",  # how the FHIR server was searched and written ("search GET x1, update PATCH")
)
# The numeric columns: what an alert may show of a run.
COUNT_COLUMNS = (
    *REPORT_COLUMNS[REPORT_COLUMNS.index("rows read") : REPORT_COLUMNS.index("link")],
    "queued",
    "statuses written live",
    "statuses written at end",
)


@dataclass(frozen=True)
class Tally:
    """The run as the report counts it (``pipeline.collect.tally``): from readable values only."""

    counts: dict[Outcome, int]
    failed_labels: list[str]  # "rows 2-101" of each batch without a result
    problem: str | None  # the first set-up failure among those batches
    fhir_requests: int
    sheets_requests: int  # the batches' progress writes
    written_live: int  # statuses the batches wrote themselves
    batches: int
    fhir_profile: str | None = None  # how the batches searched and wrote ("search GET x1, update PATCH")


def report_values(
    counted: Tally | None,
    facts: RunFacts | None,
    written: WriteBack | None,
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

    Without a tally (a step before write-back failed) the counts stay empty and ``problem`` says why;
    without the run's facts (extract_rows failed) so do the rows read.
    """
    begun = facts.started if facts else started
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
    if facts is not None:
        values["rows read"] = facts.read
    if counted is not None:
        values |= {
            **{outcome.report_column: count for outcome, count in counted.counts.items()},
            "batches failed": len(counted.failed_labels),
            "FHIR requests": counted.fhir_requests,
            "statuses written live": counted.written_live,
            "FHIR profile": counted.fhir_profile,
        }
    if counted is not None and written is not None:
        values |= {
            "statuses not placed": written.not_placed,
            "statuses written at end": written.written,
            "Sheets requests": (facts.sheets_requests if facts else 0)
            + counted.sheets_requests
            + written.sheets_requests,
        }
    return {column: values.get(column) for column in REPORT_COLUMNS}
