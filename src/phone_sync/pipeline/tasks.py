"""Task bodies of every region DAG. Thin: unpack the context, call the hooks and the pure rules,
return compact JSON for XCom. The DAG shape lives in ``phone_sync.dag_factory``.

Each task process imports only its own side: a mapped batch never loads gspread and the Google
provider (about half a second of CPU in each of a hundred batch processes), the Sheets tasks never
load the FHIR models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk.exceptions import AirflowFailException

from phone_sync.alerts import check_failure_rate, send_digest
from phone_sync.alerts.rules import REPORT_XCOM_KEY
from phone_sync.config import RegionConfig
from phone_sync.pipeline import batch_log, links
from phone_sync.pipeline.batching import SelectedRow, clean_and_batch
from phone_sync.pipeline.outcomes import Status, batch_not_processed, count, from_outcome, missing_feed_date
from phone_sync.pipeline.selection import Interval, select_rows

if TYPE_CHECKING:
    from phone_sync.sheets.hook import SheetsHook

FAILURE_KEY = "failure"
DECIDED_KEY = "decided"


def _sheets_hook(config: RegionConfig) -> SheetsHook:
    from phone_sync.sheets.hook import SheetsHook

    return SheetsHook(gcp_conn_id=config.sheets.conn_id, requests_per_minute=config.sheets.requests_per_minute)


def _local_date(moment: datetime, config: RegionConfig) -> date:
    return pendulum.instance(moment).in_timezone(config.timezone).date()


def _interval(context: Any, config: RegionConfig) -> Interval | None:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        return None
    return Interval(_local_date(start, config), _local_date(end, config))


def _logical_moment(context: Any) -> datetime:
    return context.get("logical_date") or context["dag_run"].run_after


def extract_rows(config: RegionConfig, context: Any) -> dict[str, Any]:
    """One read of the sheet; keep only the rows this run should process."""
    from phone_sync.sheets.rows import read_table

    started = datetime.now(UTC)
    hook = _sheets_hook(config)
    table = read_table(hook, config.sheets)
    rows = table.rows
    interval = _interval(context, config)
    selection = select_rows(rows, config.rows, interval)
    batch_log.summary(
        "extract_rows",
        region=config.region,
        rows_read=len(rows),
        selected=len(selection.rows),
        why=dict(selection.reasons),
        interval=f"{interval.start}..{interval.end}" if interval and config.rows.select == "data_interval" else None,
        sheets_requests=hook.request_count,
    )
    return {
        "started": started.isoformat(),
        "read": len(rows),
        "identifier_column": table.columns["identifier"],
        "rows": [[r.row, r.identifier, r.phone, r.feed_date and r.feed_date.isoformat()] for r in selection.rows],
        "missing_feed_date": [[r.row, r.identifier] for r in selection.missing_feed_date],
        "sheets_requests": hook.request_count,
    }


def clean_phones(config: RegionConfig, extracted: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    """Clean and de-duplicate; return the batches and push the statuses decided here."""
    rows = [
        SelectedRow(row, identifier, phone, feed and date.fromisoformat(feed))
        for row, identifier, phone, feed in extracted["rows"]
    ]
    fallback = _local_date(_logical_moment(context), config)
    cleaned = clean_and_batch(rows, config.phone, fallback, config.batch_size)
    decided = cleaned.decided + [missing_feed_date(row, ident) for row, ident in extracted["missing_feed_date"]]
    batch_log.row_lines("clean_phones", decided, region=config.region)
    counts = count(decided)
    batch_log.summary(
        "clean_phones",
        region=config.region,
        to_fhir=sum(len(b["rows"]) for b in cleaned.batches),
        batches=len(cleaned.batches),
        invalid_phone=counts["invalid_phone"],
        invalid_by_reason=_reasons(s for s in decided if s.kind == "invalid_phone"),
        superseded=counts["skipped"],
        other_failures=counts["failed"],
    )
    context["ti"].xcom_push(
        key=DECIDED_KEY,
        value={
            "statuses": [s.to_xcom() for s in decided],
            "started": extracted["started"],
            "read": extracted["read"],
            "identifier_column": extracted.get("identifier_column"),
            "selected": len(extracted["rows"]) + len(extracted["missing_feed_date"]),
            "sheets_requests": extracted["sheets_requests"],
        },
    )
    return cleaned.batches


def _reasons(statuses: Any) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for status in statuses:
        reason = batch_log.CORRELATION.sub("", status.text).split(", ", 1)[-1].strip()
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def process_batch(config: RegionConfig, batch: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply one batch to the region's FHIR server; per-row problems are outcomes, outages raise."""
    from phone_sync.fhir.client import FhirClient, FhirUnavailable, PhoneUpdate
    from phone_sync.fhir.hook import FhirHook

    index, label = batch["index"], batch["label"]
    # The region's request rate is shared by the batches that may run at once.
    rate = config.fhir_requests_per_second / config.max_parallel_batches
    client = FhirClient(FhirHook(config.fhir.conn_id, requests_per_second=rate), config.fhir, config.phone)
    updates = [PhoneUpdate(row, ident, phone, date.fromisoformat(eff)) for row, ident, phone, eff, _ in batch["rows"]]
    batch_log.summary("batch start", region=config.region, batch=index, rows=label, count=len(updates))
    try:
        outcomes = client.apply(updates)
    except FhirUnavailable as exc:
        context["ti"].xcom_push(key=FAILURE_KEY, value=str(exc)[:200])
        batch_log.summary(
            "batch failed", region=config.region, batch=index, rows=label, error=str(exc)[:200], **client.stats
        )
        raise
    sent = {row[0]: row for row in batch["rows"]}
    statuses = [
        from_outcome(o.row, sent[o.row][1], index, o.outcome, o.patients, o.failed, o.reason, sent[o.row][4])
        for o in outcomes
    ]
    batch_log.row_lines("batch", statuses, batch=index)
    batch_log.summary("batch done", region=config.region, batch=index, rows=label, **count(statuses), **client.stats)
    return {"index": index, "statuses": [s.to_xcom() for s in statuses], "stats": client.stats}


def _fhir_requests(stats: dict[str, Any]) -> int:
    return sum(v for k, v in stats.items() if k.startswith("requests"))


def write_back_statuses(
    config: RegionConfig,
    decided: dict[str, Any],
    batches: list[dict[str, Any]],
    results: list[dict[str, Any]],
    context: Any,
) -> dict[str, Any]:
    """Every decided status into the sheet; rows of failed batches say they will be retried."""
    from phone_sync.sheets.statuses import StatusCell, write_statuses

    ti, run_id, dag_id = context["ti"], context["run_id"], config.dag_id
    done = {result["index"]: result for result in results}
    statuses = [Status.from_xcom(s) for s in decided["statuses"]]
    failed_labels = []
    for batch in batches or []:
        index = batch["index"]
        if index in done:
            statuses += [Status.from_xcom(s) for s in done[index]["statuses"]]
            continue
        failed_labels.append(batch["label"])
        reason = ti.xcom_pull(task_ids="process_batch", key=FAILURE_KEY, map_indexes=index) or "task failed"
        not_processed = [batch_not_processed(row[0], row[1], index, reason) for row in batch["rows"]]
        batch_log.row_lines("write_back_statuses", not_processed, batch=index)
        statuses += not_processed

    base = links.base_url()
    batch_of_row = {row[0]: batch["index"] for batch in batches or [] for row in batch["rows"]}

    def link(status: Status) -> str:
        index = batch_of_row.get(status.row)
        task = "clean_phones" if index is None else "process_batch"
        return links.task_link(base, dag_id, run_id, task, index)

    hook = _sheets_hook(config)
    written = write_statuses(
        hook,
        config.sheets,
        [
            StatusCell(s.row, s.identifier, s.text, link(s) if config.sheets.columns.status_link else None)
            for s in statuses
        ],
        run_id=run_id,
        run_time=datetime.now(UTC),
        identifier_column=decided.get("identifier_column"),  # a hint; runs started before it existed lack it
    )
    counts = count(statuses)
    fhir_requests = sum(_fhir_requests(result["stats"]) for result in done.values())
    batch_log.summary(
        "write_back_statuses",
        region=config.region,
        written=written.written,
        moved=written.moved,
        not_placed=len(written.not_placed),
        not_placed_rows=written.not_placed[:50],
        batches_failed=failed_labels,
        sheets_requests=written.requests,
        **counts,
    )
    return {
        "counts": counts,
        "started": decided["started"],
        "read": decided["read"],
        "selected": decided["selected"],
        "batches": len(batches or []),
        "batches_failed": failed_labels,
        "written": written.written,
        "not_placed": len(written.not_placed),
        "fhir_requests": fhir_requests,
        "sheets_requests": decided["sheets_requests"] + written.requests,
    }


def run_report(config: RegionConfig, written: dict[str, Any], context: Any) -> dict[str, Any]:
    """Append the report row, log a readable summary, and fail the run if a batch failed."""
    from phone_sync.sheets.report import append_report

    started = datetime.fromisoformat(written["started"])
    counts = written["counts"]
    hook = _sheets_hook(config)
    values = {
        "run id": context["run_id"],
        "logical date": pendulum.instance(_logical_moment(context)).in_timezone(config.timezone).isoformat(),
        "start": started.isoformat(),
        "duration": str(timedelta(seconds=round((datetime.now(UTC) - started).total_seconds()))),
        "rows read": written["read"],
        "updated": counts["updated"],
        "unchanged": counts["unchanged"],
        "not found": counts["not_found"],
        "invalid phone": counts["invalid_phone"],
        "conflicts": counts["conflict"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
        "batches failed": len(written["batches_failed"]),
        "statuses not placed": written["not_placed"],
        "FHIR requests": written["fhir_requests"],
        "Sheets requests": written["sheets_requests"],
        "link": links.run_link(links.base_url(), config.dag_id, context["run_id"]),
    }
    append_report(hook, config.sheets, values)
    batch_log.summary(
        "run_report",
        region=config.region,
        **{k.replace(" ", "_"): v for k, v in values.items() if k not in ("link", "run id", "start")},
    )
    # After the append and before any raise, so a retried report cannot alert twice.
    check_failure_rate(config, values, context)
    send_digest(config, values, context)
    if written["batches_failed"]:
        context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=values)  # the run-failure alert reads its counts
        raise AirflowFailException(
            f"{len(written['batches_failed'])} batch(es) failed: {', '.join(written['batches_failed'])}. "
            "Their rows say 'failed: batch not processed'. Clear those process_batch map indexes "
            "(with downstream) once the server is back."
        )
    return values
