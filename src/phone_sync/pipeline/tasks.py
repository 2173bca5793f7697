"""Task bodies of every region DAG. Thin: unpack the context, call the hooks and the pure rules, hand
the next task its typed contract (``phone_sync.contracts``). The DAG shape lives in ``phone_sync.dag_factory``.

Each task process imports only its own side: a mapped batch never loads gspread and the Google
provider (about half a second of CPU in each of a hundred batch processes), the Sheets tasks never
load the FHIR models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from phone_sync import links
from phone_sync.alerts.dispatch import check_failure_rate, send_digest
from phone_sync.config import RegionConfig
from phone_sync.contracts import (
    Batch,
    BatchResult,
    Decided,
    Extracted,
    ExtractedRow,
    RowRef,
    TaskId,
    WriteBack,
    XComKey,
)
from phone_sync.outcomes import Outcome, Reason, Status, count
from phone_sync.pipeline import batch_log
from phone_sync.pipeline.batching import clean_and_batch
from phone_sync.pipeline.collect import collect_statuses
from phone_sync.pipeline.selection import Interval, select_rows
from phone_sync.report import report_values

if TYPE_CHECKING:
    from phone_sync.sheets.hook import SheetsHook


def _sheets_hook(config: RegionConfig) -> SheetsHook:
    from phone_sync.sheets.hook import SheetsHook

    return SheetsHook(gcp_conn_id=config.sheets.conn_id, requests_per_minute=config.sheets.requests_per_minute)


def _interval(context: Any, config: RegionConfig) -> Interval | None:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        return None
    return Interval(config.local_date(start), config.local_date(end))


def _logical_moment(context: Any) -> datetime:
    return context.get("logical_date") or context["dag_run"].run_after


def extract_rows(config: RegionConfig, context: Any) -> dict[str, Any]:
    """One read of the sheet; keep only the rows this run should process."""
    from phone_sync.sheets.rows import read_table

    started = datetime.now(UTC)
    hook = _sheets_hook(config)
    table = read_table(hook, config.sheets)
    interval = _interval(context, config)
    selection = select_rows(table.rows, config.rows, interval)
    batch_log.summary(
        TaskId.EXTRACT,
        region=config.region,
        rows_read=len(table.rows),
        selected=len(selection.rows),
        why=dict(selection.reasons),
        interval=f"{interval.start}..{interval.end}" if interval and config.rows.select == "data_interval" else None,
        sheets_requests=hook.request_count,
    )
    return Extracted(
        started=started,
        read=len(table.rows),
        identifier_column=table.columns["identifier"],
        rows=[ExtractedRow.model_validate(row, from_attributes=True) for row in selection.rows],
        missing_feed_date=[RowRef(row=r.row, identifier=r.identifier) for r in selection.missing_feed_date],
        sheets_requests=hook.request_count,
    ).to_xcom()


def clean_phones(config: RegionConfig, extracted_xcom: Any, context: Any) -> list[dict[str, Any]]:
    """Clean and de-duplicate; return the batches to map over and push the statuses decided here."""
    extracted = Extracted.from_xcom(extracted_xcom)
    fallback = config.local_date(_logical_moment(context))
    cleaned = clean_and_batch(extracted.rows, config.phone, fallback, config.batch_size)
    decided = cleaned.decided + [
        Status(row=r.row, identifier=r.identifier, outcome=Outcome.FAILED, reason=Reason.FEED_DATE_MISSING)
        for r in extracted.missing_feed_date
    ]
    batch_log.row_lines(TaskId.CLEAN, decided, region=config.region)
    counts = count(decided)
    invalid = [s.detail or "" for s in decided if s.outcome is Outcome.INVALID_PHONE]
    batch_log.summary(
        TaskId.CLEAN,
        region=config.region,
        to_fhir=sum(len(b.rows) for b in cleaned.batches),
        batches=len(cleaned.batches),
        invalid_phone=counts[Outcome.INVALID_PHONE],
        invalid_by_reason={reason: invalid.count(reason) for reason in sorted(set(invalid))},
        superseded=counts[Outcome.SKIPPED],
        other_failures=counts[Outcome.FAILED],
    )
    context["ti"].xcom_push(
        key=XComKey.DECIDED,
        value=Decided(
            statuses=decided,
            started=extracted.started,
            read=extracted.read,
            identifier_column=extracted.identifier_column,
            selected=len(extracted.rows) + len(extracted.missing_feed_date),
            sheets_requests=extracted.sheets_requests,
        ).to_xcom(),
    )
    return [batch.to_xcom() for batch in cleaned.batches]


def process_batch(config: RegionConfig, batch_xcom: Any, context: Any) -> dict[str, Any]:
    """Apply one batch to the region's FHIR server; per-row problems are statuses, outages raise."""
    from phone_sync.fhir.client import FhirClient
    from phone_sync.fhir.errors import FhirUnavailable
    from phone_sync.fhir.hook import FhirHook

    batch = Batch.from_xcom(batch_xcom)
    # The region's request rate is shared by the batches that may run at once.
    rate = config.fhir_requests_per_second / config.max_parallel_batches
    client = FhirClient(FhirHook(config.fhir.conn_id, requests_per_second=rate), config.fhir, config.phone)
    where = {"region": config.region, "batch": batch.index, "rows": batch.label}
    batch_log.summary("batch start", **where, count=len(batch.rows))
    try:
        statuses = client.apply(batch.rows, batch=batch.index)
    except FhirUnavailable as exc:
        context["ti"].xcom_push(key=XComKey.FAILURE, value=str(exc)[:200])
        batch_log.summary("batch failed", **where, error=str(exc)[:200], **client.stats)
        raise
    batch_log.row_lines("batch", statuses)
    batch_log.summary("batch done", **where, **batch_log.counts(statuses), **client.stats)
    return BatchResult(index=batch.index, statuses=statuses, stats=client.stats).to_xcom()


def write_back_statuses(
    config: RegionConfig, decided_xcom: Any, batches_xcom: list[Any], results_xcom: list[Any], context: Any
) -> dict[str, Any]:
    """Every decided status into the sheet; rows of failed batches say they will be retried."""
    from phone_sync.sheets.statuses import StatusCell, write_statuses

    ti, run_id = context["ti"], context["run_id"]
    decided = Decided.from_xcom(decided_xcom)
    batches = [Batch.from_xcom(b) for b in batches_xcom or []]

    def failure_of(index: int) -> str | None:
        return ti.xcom_pull(task_ids=TaskId.BATCH, key=XComKey.FAILURE, map_indexes=index)

    collected = collect_statuses(decided, batches, [BatchResult.from_xcom(r) for r in results_xcom], failure_of)
    batch_log.row_lines(TaskId.WRITE_BACK, collected.not_processed)
    base = links.base_url()

    def cell(status: Status) -> StatusCell:
        link = None
        if config.sheets.columns.status_link:
            task = TaskId.CLEAN if status.batch is None else TaskId.BATCH
            link = links.task_link(base, config.dag_id, run_id, task, status.batch)
        return StatusCell(status.row, status.identifier, status.text, link)

    written = write_statuses(
        _sheets_hook(config),
        config.sheets,
        [cell(status) for status in collected.statuses],
        run_id=run_id,
        run_time=datetime.now(UTC),
        identifier_column=decided.identifier_column,
    )
    counts = count(collected.statuses)
    batch_log.summary(
        TaskId.WRITE_BACK,
        region=config.region,
        written=written.written,
        moved=written.moved,
        not_placed=len(written.not_placed),
        not_placed_rows=written.not_placed[:50],
        batches_failed=collected.failed_labels,
        sheets_requests=written.requests,
        **batch_log.counts(collected.statuses),
    )
    return WriteBack(
        counts=counts,
        started=decided.started,
        read=decided.read,
        selected=decided.selected,
        batches=len(batches),
        batches_failed=collected.failed_labels,
        written=written.written,
        not_placed=len(written.not_placed),
        fhir_requests=collected.fhir_requests,
        sheets_requests=decided.sheets_requests + written.requests,
    ).to_xcom()


def run_report(config: RegionConfig, written_xcom: Any, context: Any) -> dict[str, object]:
    """Append the report row, log a readable summary, and fail the run if a batch failed."""
    from phone_sync.sheets.report import append_report

    written = WriteBack.from_xcom(written_xcom)
    run_id = context["run_id"]
    values = report_values(
        written,
        run_id=run_id,
        logical_date=_logical_moment(context).astimezone(config.zone),
        finished=datetime.now(UTC),
        link=links.run_link(links.base_url(), config.dag_id, run_id),
    )
    append_report(_sheets_hook(config), config.sheets, values)
    batch_log.summary(
        TaskId.REPORT,
        region=config.region,
        **{k.replace(" ", "_"): v for k, v in values.items() if k not in ("link", "run id", "start")},
    )
    # After the append and before any raise, so a retried report cannot alert twice.
    check_failure_rate(config, values, context)
    send_digest(config, values, context)
    if written.batches_failed:
        context["ti"].xcom_push(key=XComKey.REPORT, value=values)  # the run-failure alert reads its counts
        raise AirflowFailException(
            f"{len(written.batches_failed)} batch(es) failed: {', '.join(written.batches_failed)}. "
            "Their rows say 'failed: batch not processed'. Clear those process_batch map indexes "
            "(with downstream) once the server is back."
        )
    return values
