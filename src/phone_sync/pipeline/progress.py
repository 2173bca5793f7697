"""A batch's statuses into the sheet as it finishes, or left for write-back (see ``sheets.progress``).

The live write is best effort: it needs the region's shared Sheets token (left by ``extract_rows``) and room
in the progress share of the region's Sheets quota (``sheets.quota``); without either, or when the sheet
refuses, the statuses wait for write-back. Except when write-back has already run for this run: an operator
cleared only the failed tasks (the run's Clear dialog, "only failed"), and write-back, which succeeded, will
not run again. Then the batch writes its statuses itself, with the region's Google connection, the quota's
pacing and retries, as write-back would have.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from phone_sync.config import RegionConfig
from phone_sync.contracts import Batch, Batches, TaskId
from phone_sync.crypto import Sealer
from phone_sync.outcomes import Status
from phone_sync.pipeline.preview import Line, preview_line
from phone_sync.sheets.placement import StatusCell
from phone_sync.sheets.progress import Progress

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def batch_progress(
    config: RegionConfig,
    context: Context,
    group: Batches,
    batch: Batch,
    statuses: list[Status],
    cells: list[StatusCell],
    sealer: Sealer,
    *,
    preview: bool,
) -> Progress:
    """Write the batch's statuses (a preview: its lines) now if the quota allows; what is left, write-back writes."""
    lines = _lines(batch, statuses, context["run_id"]) if preview else []
    rows = [status.row for status in statuses]
    # An identifier on several rows of the run: its statuses are placed together, so write-back writes them.
    alone = [cell for cell, row in zip(cells, batch.rows, strict=True) if not row.repeated]
    try:
        progress = _live(config, context, group, alone, lines, sealer, preview=preview)
        progress.left += [cell.row for cell, row in zip(cells, batch.rows, strict=True) if row.repeated]
    except Exception as exc:  # best effort: never fail a batch whose FHIR work is done for a progress write
        progress = Progress(left=rows, reason=f"progress write failed ({type(exc).__name__})")
    if preview:  # the preview's lines go or stay together
        progress.written, progress.left = ([], rows) if progress.reason else (rows, [])
    if progress.left and _write_back_done(config, context):
        log.info("write_back_statuses already ran in this run: the batch writes its %d statuses itself", len(rows))
        progress = _after_write_back(config, context, group, cells, lines, progress, preview=preview)
    return progress


def _lines(batch: Batch, statuses: list[Status], run_id: str) -> list[Line]:
    """The batch's preview lines: statuses come in the order of the batch's rows (one each)."""
    return [
        preview_line(line, status, row.phone, run_id)
        for line, status, row in zip(batch.lines, statuses, batch.rows, strict=True)
    ]


def _live(
    config: RegionConfig,
    context: Context,
    group: Batches,
    cells: list[StatusCell],
    lines: list[Line],
    sealer: Sealer,
    *,
    preview: bool,
) -> Progress:
    from phone_sync.sheets.access import AccessStore
    from phone_sync.sheets.placement import line_ranges
    from phone_sync.sheets.progress import LiveSheet, write_preview_live, write_statuses_live
    from phone_sync.sheets.quota import SheetsQuota

    left = [cell.row for cell in cells]
    sheets = config.sheets
    if not preview and set(group.columns) == {"identifier"}:
        return Progress(left=left, reason="no status column yet")
    # The quota first: most batches of a large run find the minute spent and need not read the token.
    quota = SheetsQuota(sheets.conn_id, sheets.requests_per_minute, racers=config.max_parallel_batches)
    if not quota.try_take(1 if preview else 2):
        return Progress(left=left, reason="the minute's Sheets quota for progress is spent")
    access = AccessStore(sheets.conn_id, sealer).load()
    if access is None:  # the claim goes unused: the ledger errs on the side of the quota
        return Progress(left=left, reason="no shared Sheets token")
    sheet = LiveSheet(access, sheets.spreadsheet_id)
    if preview:
        return write_preview_live(sheet, line_ranges(sheets.preview_worksheet, lines))
    return write_statuses_live(
        sheet, sheets, group.columns, cells, run_id=context["run_id"], run_time=datetime.now(UTC)
    )


def _write_back_done(config: RegionConfig, context: Context) -> bool:
    """Whether write_back_statuses has already succeeded in this run (so it will not write what is left).

    Write-back waits for every batch: on a batch's first try it cannot have run yet (clearing adds a try), and
    the batch asks Airflow nothing."""
    if getattr(context["ti"], "try_number", 2) <= 1:
        return False
    try:
        done = context["ti"].get_ti_count(
            dag_id=config.dag_id, task_ids=[TaskId.WRITE_BACK], run_ids=[context["run_id"]], states=["success"]
        )
    except Exception as exc:  # no way to ask (a run outside Airflow): write-back is still to come
        log.info("could not ask whether write-back ran (%s)", type(exc).__name__)
        return False
    return bool(done)


def _after_write_back(
    config: RegionConfig,
    context: Context,
    group: Batches,
    cells: list[StatusCell],
    lines: list[Line],
    live: Progress,
    *,
    preview: bool,
) -> Progress:
    """Write what the live write left with the region's Google connection, as write-back does."""
    from phone_sync.sheets.hook import SheetsHook
    from phone_sync.sheets.preview import write_preview_lines
    from phone_sync.sheets.statuses import write_statuses

    hook = SheetsHook(gcp_conn_id=config.sheets.conn_id, requests_per_minute=config.sheets.requests_per_minute)
    left = set(live.left)
    if preview:
        write_preview_lines(hook, config.sheets, lines)
        return Progress(written=live.written + live.left, requests=live.requests + hook.request_count)
    result = write_statuses(
        hook,
        config.sheets,
        [cell for cell in cells if cell.row in left],
        run_id=context["run_id"],
        run_time=datetime.now(UTC),
        identifier_column=group.identifier_column,
    )
    not_placed = set(result.not_placed)
    return Progress(
        written=live.written + [row for row in live.left if row not in not_placed],
        left=sorted(not_placed),
        reason="not placed: rows moved and are not unique" if not_placed else None,
        requests=live.requests + hook.request_count,
    )
