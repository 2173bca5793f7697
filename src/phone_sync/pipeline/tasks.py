"""Task bodies of every region DAG. Thin: unpack the context, call the hooks and the pure rules, hand
the next task its typed, sealed contract (``phone_sync.contracts``). The DAG shape lives in
``phone_sync.dag_factory``.

Each task runs inside :func:`step`: a set-up problem (a renamed column, refused credentials, a missing
key) fails it at once without retries, an outage is retried, and either way the task records why
(:class:`~phone_sync.contracts.Failure`) so write-back, the report row and the alert name the real cause.

Each task process imports only its own side: a mapped batch never loads gspread and the Google
provider (about half a second of CPU in each of a hundred batch processes), the Sheets tasks never
load the FHIR models.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from phone_sync import links
from phone_sync.config import RegionConfig
from phone_sync.contracts import (
    Batch,
    BatchResult,
    Decided,
    Extracted,
    ExtractedRow,
    Failure,
    RowRef,
    TaskId,
    WriteBack,
    XComKey,
)
from phone_sync.controls import Controls, ControlsError
from phone_sync.crypto import Sealer, sealer_for
from phone_sync.errors import SetupError
from phone_sync.outcomes import Outcome, Reason, Status, count
from phone_sync.pipeline import batch_log
from phone_sync.pipeline.batching import clean_and_batch
from phone_sync.pipeline.collect import collect_statuses
from phone_sync.pipeline.failures import safe_reason
from phone_sync.pipeline.preview import preview_lines
from phone_sync.pipeline.run_note import note_controls
from phone_sync.pipeline.selection import Interval, select_rows
from phone_sync.report import report_values

if TYPE_CHECKING:
    from phone_sync.fhir.token_store import TokenStore
    from phone_sync.sheets.hook import SheetsHook
    from phone_sync.sheets.statuses import StatusCell

# The steps before write-back, in order: the first of them that failed is the run's cause.
UPSTREAM_STEPS = (TaskId.EXTRACT, TaskId.CLEAN, TaskId.WRITE_BACK)


@contextmanager
def step(config: RegionConfig, context: Any, task_id: TaskId) -> Iterator[None]:
    """Record why the task failed; a set-up problem fails it for good (no retries), anything else is retried."""
    try:
        yield
    except (AirflowSkipException, AirflowFailException):
        raise
    except SetupError as exc:
        reason = f"region {config.region}: {safe_reason(exc)}"
        _record(context, Failure(task=task_id, reason=reason, setup=True))
        raise AirflowFailException(reason) from exc
    except Exception as exc:
        _record(context, Failure(task=task_id, reason=safe_reason(exc)))
        raise


def _record(context: Any, failure: Failure) -> None:
    context["ti"].xcom_push(key=XComKey.FAILURE, value=failure.to_xcom())


def _sheets_hook(config: RegionConfig) -> SheetsHook:
    from phone_sync.sheets.hook import SheetsHook

    return SheetsHook(gcp_conn_id=config.sheets.conn_id, requests_per_minute=config.sheets.requests_per_minute)


def _sealer(config: RegionConfig) -> Sealer:
    return sealer_for(config.phi_key_conn_id)


def _controls(config: RegionConfig, context: Any) -> Controls:
    """The run's trigger-form controls (checked in full by extract_rows, the first task)."""
    return Controls.from_params(context.get("params") or {}, config)


def _max_batches() -> int:
    """The deployment's ``[core] max_map_length``: more mapped batches than this, and Airflow refuses the run."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def _interval(context: Any, config: RegionConfig) -> Interval | None:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        return None
    return Interval(config.local_date(start), config.local_date(end))


def _logical_moment(context: Any) -> datetime:
    return context.get("logical_date") or context["dag_run"].run_after


def extract_rows(config: RegionConfig, context: Any) -> dict[str, Any]:
    """One read of the sheet; keep only the rows this run should process."""
    from phone_sync.sheets.rows import read_listed_identifiers, read_table

    with step(config, context, TaskId.EXTRACT):
        # First: a bad trigger-form value or a missing or malformed key stops the run before any read.
        controls = _controls(config, context)
        sealer = _sealer(config)
        started = datetime.now(UTC)
        hook = _sheets_hook(config)
        table = read_table(hook, config.sheets, controls.rows)
        rows = table.rows
        if controls.listed_only:
            listed = read_listed_identifiers(hook, config.sheets)
            rows = [row for row in rows if row.identifier in listed]
        interval = _interval(context, config)
        selection = select_rows(rows, config.rows, interval, resend=controls.resend)
        note_controls(config, context, controls)
        in_interval = interval and config.rows.select == "data_interval"
        batch_log.summary(
            TaskId.EXTRACT,
            region=config.region,
            controls=controls.describe(config) or None,
            mode=controls.mode,
            rows_read=len(table.rows),
            selected=len(selection.rows),
            why=dict(selection.reasons),
            interval=f"{interval.start}..{interval.end}" if in_interval else None,
            sheets_requests=hook.request_count,
        )
        extracted = Extracted(
            started=started,
            read=len(table.rows),
            identifier_column=table.columns["identifier"],
            rows=[ExtractedRow.of(row) for row in selection.rows],
            missing_feed_date=[RowRef(row=r.row, identifier=r.identifier) for r in selection.missing_feed_date],
            sheets_requests=hook.request_count,
        )
        del table, rows, selection  # the rows as read: at 100,000 rows, tens of MiB the sealing need not share
        return extracted.to_xcom(sealer)


def clean_phones(config: RegionConfig, extracted_xcom: Any, context: Any) -> list[dict[str, Any]]:
    """Clean and de-duplicate; return the batches to map over and push the statuses decided here."""
    with step(config, context, TaskId.CLEAN):
        sealer = _sealer(config)
        extracted = Extracted.from_xcom(extracted_xcom, sealer)
        fallback = config.local_date(_logical_moment(context))
        cleaned = clean_and_batch(extracted.rows, config.phone, fallback, config.batch_size, _max_batches())
        if cleaned.batches:
            _prime_fhir_token(config, sealer)
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
            queued_for_next_run=counts[Outcome.QUEUED],
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
            ).to_xcom(sealer),
        )
        return [batch.to_xcom(sealer) for batch in cleaned.batches]


def process_batch(config: RegionConfig, batch_xcom: Any, context: Any) -> dict[str, Any]:
    """Apply one batch to the region's FHIR server; per-row problems are statuses, outages raise."""
    from phone_sync.fhir.client import FhirClient
    from phone_sync.fhir.hook import FhirHook
    from phone_sync.fhir.profile_store import ProfileStore

    with step(config, context, TaskId.BATCH):
        sealer = _sealer(config)
        batch = Batch.from_xcom(batch_xcom, sealer)
        # The region's request rate is shared by the batches that may run at once.
        rate = config.fhir_requests_per_second / config.max_parallel_batches
        hook = FhirHook(config.fhir.conn_id, requests_per_second=rate, token_store=_fhir_token_store(config, sealer))
        client = FhirClient(hook, config.fhir, config.phone, profile_store=ProfileStore(config.fhir.conn_id))
        where = {"region": config.region, "batch": batch.index, "rows": batch.label}
        batch_log.summary("batch start", **where, count=len(batch.rows))
        try:
            statuses = client.apply(batch.rows, batch=batch.index, dry_run=_controls(config, context).preview)
        except Exception as exc:
            batch_log.summary("batch failed", **where, error=safe_reason(exc), **client.stats)
            raise
        batch_log.row_lines("batch", statuses)
        profile = client.profile.describe()
        batch_log.summary("batch done", **where, **batch_log.counts(count(statuses)), **client.stats, profile=profile)
        return BatchResult(index=batch.index, statuses=statuses, stats=client.stats, profile=profile).to_xcom(sealer)


# --- the region's shared FHIR token (OAuth2 connections): see phone_sync.fhir.auth -----------------------


def _fhir_token_store(config: RegionConfig, sealer: Sealer) -> TokenStore:
    from phone_sync.fhir.token_store import TokenStore

    return TokenStore(config.fhir.conn_id, sealer)


def _prime_fhir_token(config: RegionConfig, sealer: Sealer) -> None:
    """Ready one token for every batch of the run, here, once, before any batch starts (no-op without OAuth2),
    and the server's interaction profile from its CapabilityStatement (``phone_sync.fhir.profile_store``).

    Refused credentials fail this task at once (a set-up error), before a batch could try them again.
    """
    from phone_sync.fhir.hook import FhirHook
    from phone_sync.fhir.profile_store import ProfileStore, prime_profile

    hook = FhirHook(config.fhir.conn_id, token_store=_fhir_token_store(config, sealer))
    try:
        hook.prime_token()
        prime_profile(hook, config.fhir.interactions, ProfileStore(config.fhir.conn_id))
    finally:
        hook.close()


def write_back_statuses(config: RegionConfig, context: Any) -> dict[str, Any]:
    """Every decided status into the sheet; rows of failed batches say they will be retried.

    Reads its inputs itself rather than as task arguments: when cleaning never finished there is
    nothing to write, and the task skips instead of failing on a missing XCom.
    """
    from phone_sync.sheets.preview import write_preview
    from phone_sync.sheets.statuses import WriteResult, write_statuses

    ti, run_id = context["ti"], context["run_id"]
    decided_xcom = ti.xcom_pull(task_ids=TaskId.CLEAN, key=XComKey.DECIDED, map_indexes=-1)
    if decided_xcom is None:
        raise AirflowSkipException("clean_phones did not finish: there are no statuses to write")
    with step(config, context, TaskId.WRITE_BACK):
        sealer = _sealer(config)
        decided = Decided.from_xcom(decided_xcom, sealer)
        preview = _controls(config, context).preview
        results = [BatchResult.from_xcom(r, sealer) for r in _batch_results(ti)]
        done = {result.index for result in results}
        fhir_profile = "; ".join(sorted({result.profile for result in results if result.profile})) or None
        # The rows of a batch are needed only where it has no result (or for a preview's phones).
        wires = ti.xcom_pull(task_ids=TaskId.CLEAN, map_indexes=-1) or []
        batches = [Batch.from_xcom(wire, sealer) for wire in wires if preview or wire.get("index") not in done]

        def failure_of(index: int) -> Failure | None:
            value = ti.xcom_pull(task_ids=TaskId.BATCH, key=XComKey.FAILURE, map_indexes=index)
            return Failure.from_xcom(value) if value is not None else None

        collected = collect_statuses(decided, batches, results, failure_of)
        del results  # their statuses live on in `collected` alone
        counts = count(collected.statuses)
        batch_log.row_lines(TaskId.WRITE_BACK, collected.not_processed)
        if preview:
            lines = preview_lines(collected.statuses, batches, run_id)
            requests = write_preview(_sheets_hook(config), config.sheets, lines)
            written = WriteResult(written=len(lines), requests=requests)
        else:
            cells = _status_cells(config, run_id, collected.statuses)
            collected.statuses.clear()  # at 100,000 rows tens of MiB: only the cells are needed from here on
            written = write_statuses(
                _sheets_hook(config),
                config.sheets,
                cells,
                run_id=run_id,
                run_time=datetime.now(UTC),
                identifier_column=decided.identifier_column,
            )

        batch_log.summary(
            TaskId.WRITE_BACK,
            region=config.region,
            written=written.written,
            moved=written.moved,
            not_placed=len(written.not_placed),
            not_placed_rows=written.not_placed[:50],
            batches_failed=collected.failed_labels,
            sheets_requests=written.requests,
            **batch_log.counts(counts),
        )
        return WriteBack(
            counts=counts,
            started=decided.started,
            read=decided.read,
            selected=decided.selected,
            batches=len(wires),
            batches_failed=collected.failed_labels,
            problem=collected.problem,
            written=written.written,
            not_placed=len(written.not_placed),
            fhir_requests=collected.fhir_requests,
            sheets_requests=decided.sheets_requests + written.requests,
            fhir_profile=fhir_profile,
        ).to_xcom()


def _status_cells(config: RegionConfig, run_id: str, statuses: list[Status]) -> list[StatusCell]:
    """Each status as its cell (see ``sheets.statuses``), with a link to its task log when configured."""
    from phone_sync.sheets.statuses import StatusCell

    base = links.base_url()

    def cell(status: Status) -> StatusCell:
        link = None
        if config.sheets.columns.status_link:
            task = TaskId.CLEAN if status.batch is None else TaskId.BATCH
            link = links.task_link(base, config.dag_id, run_id, task, status.batch)
        return StatusCell(status.row, status.identifier, status.text, link)

    return [cell(status) for status in statuses]


def _batch_results(ti: Any) -> list[Any]:
    """Every successful batch's result, in one request (all map indexes); a failed batch has none.

    Airflow hands back a lone value unwrapped and nothing as an empty list.
    """
    values = ti.xcom_pull(task_ids=TaskId.BATCH)
    return [value for value in (values if isinstance(values, list) else [values]) if value is not None]


def _upstream_failure(ti: Any) -> Failure | None:
    """The first step before the report that recorded a failure."""
    for task_id in UPSTREAM_STEPS:
        value = ti.xcom_pull(task_ids=task_id, key=XComKey.FAILURE, map_indexes=-1)
        if value is not None:
            return Failure.from_xcom(value)
    return None


def run_report(config: RegionConfig, context: Any) -> dict[str, object]:
    """Append the report row, log a readable summary, and fail the run if any step or batch failed."""
    from phone_sync.sheets.report import append_report

    ti, run_id = context["ti"], context["run_id"]
    written_xcom = ti.xcom_pull(task_ids=TaskId.WRITE_BACK, map_indexes=-1)
    written = WriteBack.from_xcom(written_xcom) if written_xcom is not None else None
    problem = written.problem if written else None
    if written is None:
        failure = _upstream_failure(ti)
        problem = f"{failure.task}: {failure.reason}" if failure else "an earlier step did not finish; see the grid"
    try:
        controls: Controls | None = _controls(config, context)
    except ControlsError:  # extract_rows refused them: the problem says why
        controls = None
    values = report_values(
        written,
        run_id=run_id,
        logical_date=_logical_moment(context).astimezone(config.zone),
        started=context["dag_run"].start_date,
        finished=datetime.now(UTC),
        link=links.run_link(links.base_url(), config.dag_id, run_id),
        problem=problem,
        mode=controls.mode if controls else "invalid controls",
        controls=controls.describe(config) if controls else "",
    )
    try:
        append_report(_sheets_hook(config), config.sheets, values)
    except Exception as exc:
        if problem is None:
            raise
        # The sheet may be what failed: the run still fails with its real cause, below.
        batch_log.summary(TaskId.REPORT, region=config.region, report_row="not written", error=safe_reason(exc))
    batch_log.summary(
        TaskId.REPORT,
        region=config.region,
        **{k.replace(" ", "_"): v for k, v in values.items() if k not in ("link", "run id", "start")},
    )
    if written is None:
        ti.xcom_push(key=XComKey.REPORT, value=values)
        raise AirflowFailException(f"The run stopped before writing statuses: {problem}")
    if controls is None or not controls.preview:
        from phone_sync.alerts.dispatch import check_failure_rate, send_digest

        # After the append and before any raise, so a retried report cannot alert twice.
        check_failure_rate(config, values, context)
        send_digest(config, values, context)
    if written.batches_failed:
        ti.xcom_push(key=XComKey.REPORT, value=values)  # the run-failure alert reads its counts
        raise AirflowFailException(
            f"{len(written.batches_failed)} batch(es) failed: {', '.join(written.batches_failed)}. "
            "Their rows say 'failed: batch not processed'. Clear those process_batch map indexes "
            "(with downstream) once the server is back."
        )
    return values
