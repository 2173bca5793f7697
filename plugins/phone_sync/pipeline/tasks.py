"""Task bodies of every region DAG. Thin: unpack the context, call the hooks and the pure rules,
return compact JSON for XCom. The DAG shape lives in ``phone_sync.dag_factory``.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk.exceptions import AirflowFailException

from phone_sync.config import RegionConfig
from phone_sync.fhir.client import FhirClient, FhirUnavailable, PhoneUpdate
from phone_sync.fhir.hook import FhirHook
from phone_sync.pipeline.batching import SelectedRow, clean_and_batch
from phone_sync.pipeline.outcomes import (
    Status,
    batch_not_processed,
    count,
    from_outcome,
    missing_feed_date,
)
from phone_sync.pipeline.selection import Interval, select_rows
from phone_sync.sheets.hook import SheetsHook
from phone_sync.sheets.report import append_report
from phone_sync.sheets.rows import read_rows
from phone_sync.sheets.statuses import StatusCell, write_statuses

log = logging.getLogger(__name__)
FAILURE_KEY = "failure"
DECIDED_KEY = "decided"


def _sheets_hook(config: RegionConfig) -> SheetsHook:
    return SheetsHook(gcp_conn_id=config.sheets.conn_id, requests_per_minute=config.sheets.requests_per_minute)


def _local_date(moment: datetime, config: RegionConfig) -> date:
    return pendulum.instance(moment).in_timezone(config.timezone).date()


def _interval(context: Any, config: RegionConfig) -> Interval | None:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        return None
    return Interval(_local_date(start, config), _local_date(end, config))


def _run_date(context: Any, config: RegionConfig) -> date:
    """The date a new number counts from when its row has no feed date: the run's logical date."""
    moment = context.get("logical_date") or context["dag_run"].run_after
    return _local_date(moment, config)


def extract_rows(config: RegionConfig, context: Any) -> dict[str, Any]:
    """One read of the sheet; keep only the rows this run should process."""
    started = datetime.now(UTC)
    hook = _sheets_hook(config)
    rows = read_rows(hook, config.sheets)
    interval = _interval(context, config)
    selection = select_rows(rows, config.rows, interval)
    log.info(
        "extract_rows: read %d rows, selected %d (%s)%s",
        len(rows),
        len(selection.rows),
        ", ".join(f"{reason}: {n}" for reason, n in sorted(selection.reasons.items())),
        f", interval {interval.start}..{interval.end}" if interval else "",
    )
    return {
        "started": started.isoformat(),
        "read": len(rows),
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
    cleaned = clean_and_batch(rows, config.phone, _run_date(context, config), config.batch_size)
    decided = cleaned.decided + [missing_feed_date(row, ident) for row, ident in extracted["missing_feed_date"]]
    counts = count(decided)
    log.info(
        "clean_phones: %d rows in %d batches; invalid phone %d, skipped %d, other failures %d",
        sum(len(b["rows"]) for b in cleaned.batches),
        len(cleaned.batches),
        counts["invalid_phone"],
        counts["skipped"],
        counts["failed"],
    )
    context["ti"].xcom_push(
        key=DECIDED_KEY,
        value={
            "statuses": [s.to_xcom() for s in decided],
            "started": extracted["started"],
            "read": extracted["read"],
            "selected": len(extracted["rows"]) + len(extracted["missing_feed_date"]),
            "sheets_requests": extracted["sheets_requests"],
        },
    )
    return cleaned.batches


def process_batch(config: RegionConfig, batch: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply one batch to the region's FHIR server; per-row problems are outcomes, outages raise."""
    # The region's request rate is shared by the batches that may run at once.
    rate = config.fhir_requests_per_second / config.max_parallel_batches
    client = FhirClient(FhirHook(config.fhir.conn_id, requests_per_second=rate), config.fhir, config.phone)
    updates = [PhoneUpdate(row, ident, phone, date.fromisoformat(eff)) for row, ident, phone, eff, _ in batch["rows"]]
    log.info("process_batch %d: %s, %d rows", batch["index"], batch["label"], len(updates))
    try:
        outcomes = client.apply(updates)
    except FhirUnavailable as exc:
        context["ti"].xcom_push(key=FAILURE_KEY, value=str(exc)[:200])
        log.error("process_batch %d: FHIR server unavailable after retries: %s", batch["index"], exc)
        raise
    log.info("process_batch %d: done, FHIR requests %s", batch["index"], client.stats)
    return {
        "index": batch["index"],
        "outcomes": [[o.row, o.outcome, o.patients, o.failed, o.reason] for o in outcomes],
        "stats": client.stats,
    }


def _batch_statuses(
    batches: list[dict[str, Any]], results: dict[int, dict[str, Any]], failure_reason: Any
) -> tuple[list[Status], list[str]]:
    statuses: list[Status] = []
    failed_labels: list[str] = []
    for batch in batches:
        index = batch["index"]
        result = results.get(index)
        if result is None:
            failed_labels.append(batch["label"])
            reason = failure_reason(index) or "task failed"
            statuses += [batch_not_processed(row[0], row[1], index, reason) for row in batch["rows"]]
            continue
        notes = {row[0]: row[4] for row in batch["rows"]}
        identifiers = {row[0]: row[1] for row in batch["rows"]}
        statuses += [
            from_outcome(row, identifiers[row], index, outcome, patients, failed, reason, notes[row])
            for row, outcome, patients, failed, reason in result["outcomes"]
        ]
    return statuses, failed_labels


def write_back_statuses(
    config: RegionConfig,
    decided: dict[str, Any],
    batches: list[dict[str, Any]],
    results: list[dict[str, Any]],
    context: Any,
) -> dict[str, Any]:
    """Every decided status into the sheet; rows of failed batches say they will be retried."""
    ti = context["ti"]

    def failure_reason(index: int) -> str | None:
        return ti.xcom_pull(task_ids="process_batch", key=FAILURE_KEY, map_indexes=index)

    done = {result["index"]: result for result in results}
    batch_statuses, failed_labels = _batch_statuses(batches or [], done, failure_reason)
    statuses = [Status.from_xcom(s) for s in decided["statuses"]] + batch_statuses
    hook = _sheets_hook(config)
    written = write_statuses(
        hook,
        config.sheets,
        [StatusCell(s.row, s.identifier, s.text) for s in statuses],
        run_id=context["run_id"],
        run_time=datetime.now(UTC),
    )
    counts = count(statuses)
    log.info(
        "write_back_statuses: %d statuses written (%d moved), %d not placed; %s",
        written.written,
        written.moved,
        len(written.not_placed),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
    fhir_requests = sum(
        sum(v for k, v in result["stats"].items() if k.startswith("requests")) for result in done.values()
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
    dag_run = context["dag_run"]
    started = datetime.fromisoformat(written["started"])
    counts = written["counts"]
    hook = _sheets_hook(config)
    values = {
        "run id": context["run_id"],
        "logical date": pendulum.instance(context.get("logical_date") or dag_run.run_after)
        .in_timezone(config.timezone)
        .isoformat(),
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
        "Sheets requests": written["sheets_requests"] + 1,
        "link": "",
    }
    append_report(hook, config.sheets, values)
    log.info(
        "run_report %s: %s",
        config.region,
        "; ".join(f"{key} {value}" for key, value in values.items() if key not in ("link", "run id")),
    )
    if written["batches_failed"]:
        context["ti"].xcom_push(key="report", value=values)
        raise AirflowFailException(
            f"{len(written['batches_failed'])} batch(es) failed: {', '.join(written['batches_failed'])}. "
            "Their rows say 'failed: batch not processed'. Clear those process_batch map indexes "
            "(with downstream) once the server is back."
        )
    return values
