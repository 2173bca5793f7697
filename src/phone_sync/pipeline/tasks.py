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

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, AirflowTaskTimeout

from phone_sync import links, time_limits
from phone_sync.config import RegionConfig
from phone_sync.contracts import (
    Batches,
    BatchRef,
    BatchResult,
    Decided,
    Extracted,
    ExtractedRow,
    Failure,
    RowRef,
    RunFacts,
    TaskId,
    WriteBack,
    XComKey,
)
from phone_sync.controls import Controls, ControlsError
from phone_sync.crypto import Sealer, sealer_for
from phone_sync.errors import SetupError
from phone_sync.http.pacing import SharedRate
from phone_sync.outcomes import Outcome, Reason, Status, count
from phone_sync.pipeline import step_log
from phone_sync.pipeline.batching import clean_and_batch
from phone_sync.pipeline.collect import ToWrite, tally, to_write
from phone_sync.pipeline.preview import Line, line_numbers, preview_line
from phone_sync.pipeline.run_note import note_controls
from phone_sync.pipeline.run_xcom import RunXCom
from phone_sync.pipeline.selection import Interval, select_rows
from phone_sync.redaction import safe_reason, shown
from phone_sync.report import Tally, report_values

if TYPE_CHECKING:
    from airflow.sdk import Context

    from phone_sync.fhir.token_store import TokenStore
    from phone_sync.sheets.headers import HeaderRow
    from phone_sync.sheets.hook import SheetsHook
    from phone_sync.sheets.placement import StatusCell

log = logging.getLogger(__name__)

# The steps before write-back, in order: the first of them that failed is the run's cause.
UPSTREAM_STEPS = (TaskId.EXTRACT, TaskId.CLEAN, TaskId.WRITE_BACK)


@contextmanager
def step(config: RegionConfig, context: Context, task_id: TaskId) -> Iterator[None]:
    """Record why the task failed; a set-up problem fails it for good (no retries), anything else is retried.

    What Airflow logs of the failure is phone-sync's own text: an exception is raised ``from None`` (the
    exceptions chained behind it may quote the sheet or the server), a library's without its message
    (``phone_sync.redaction.shown``). A task past its time limit says which limit, and is retried.
    """
    try:
        yield
    except (AirflowSkipException, AirflowFailException):
        raise
    except AirflowTaskTimeout:
        reason = _timed_out(context)
        _record(context, Failure(task=task_id, reason=reason))
        raise AirflowTaskTimeout(reason) from None
    except SetupError as exc:
        reason = f"region {config.region}: {safe_reason(exc)}"
        _record(context, Failure(task=task_id, reason=reason, setup=True))
        raise AirflowFailException(reason) from None
    except Exception as exc:
        _record(context, Failure(task=task_id, reason=safe_reason(exc)))
        raise shown(exc) from None


def _timed_out(context: Context) -> str:
    """Why a task that Airflow stopped at its ``execution_timeout`` failed, in an operator's words."""
    limit = getattr(getattr(context["ti"], "task", None), "execution_timeout", None)
    return time_limits.stopped_at(limit, "see timeouts")


def _record(context: Context, failure: Failure) -> None:
    context["ti"].xcom_push(key=XComKey.FAILURE, value=failure.to_xcom())


def _sheets_hook(config: RegionConfig) -> SheetsHook:
    from phone_sync.sheets.hook import SheetsHook

    return SheetsHook(gcp_conn_id=config.sheets.conn_id, requests_per_minute=config.sheets.requests_per_minute)


def _sealer(config: RegionConfig) -> Sealer:
    return sealer_for(config.phi_key_conn_id)


def _controls(config: RegionConfig, context: Context) -> Controls:
    """The run's trigger-form controls (checked in full by extract_rows, the first task)."""
    return Controls.from_context(context, config)


def _interval(context: Context, config: RegionConfig) -> Interval | None:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        return None
    return Interval(config.local_date(start), config.local_date(end))


def _logical_moment(context: Context) -> datetime:
    return context.get("logical_date") or context["dag_run"].run_after


def extract_rows(config: RegionConfig, context: Context) -> dict[str, Any]:
    """One read of the sheet; keep only the rows this run should process, and ready the sheet for progress."""
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
        selected = len(selection.rows) + len(selection.missing_feed_date)
        columns = _ready_for_progress(config, hook, table.header, sealer, lines=selected, preview=controls.preview)
        note_controls(config, context, controls)
        in_interval = interval and config.rows.select == "data_interval"
        step_log.summary(
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
        facts = RunFacts(
            started=started,
            read=len(table.rows),
            selected=selected,
            identifier_column=table.columns["identifier"],
            columns={"identifier": table.columns["identifier"], **columns},
            sheets_requests=hook.request_count,
        )
        context["ti"].xcom_push(key=XComKey.FACTS, value=facts.to_xcom())
        selected, missing = selection.rows, selection.missing_feed_date
        del table, rows, selection  # the rows as read and not selected: at 100,000 rows, tens of MiB
        extracted = Extracted(
            rows=[ExtractedRow.of(row) for row in _drained(selected)],
            missing_feed_date=[RowRef(row=r.row, identifier=r.identifier) for r in missing],
        )
        return extracted.to_xcom(sealer)


T = TypeVar("T")


def _drained(items: list[T]) -> Iterator[T]:
    """The items of ``items`` in order, each let go by the list as it is handed out (``items`` ends empty): a
    caller that turns 100,000 rows into others never holds both whole."""
    items.reverse()
    while items:
        yield items.pop()


def _extracted_rows(lines: Iterator[tuple[str, list[Any]]], missing_feed_date: list[RowRef]) -> Iterator[ExtractedRow]:
    """The rows of an :class:`Extracted` value as they are opened (see ``Contract.streamed``), each let go once
    handed out: at 100,000 rows, cleaning never holds the rows and what it makes of them at once. The rows without
    a feed date are put in ``missing_feed_date``."""
    for field, items in lines:
        if field == "rows":
            yield from _drained(items)
        else:
            missing_feed_date.extend(items)


def _ready_for_progress(
    config: RegionConfig, hook: SheetsHook, header: HeaderRow, sealer: Sealer, *, lines: int, preview: bool
) -> dict[str, int]:
    """What the batches need to write their progress: the status columns (headers added when missing), or for a
    preview an empty preview worksheet; and the region's Sheets access token, shared (``sheets.access``).

    Returns the write columns by field (none for a preview: it never touches the status column).
    """
    from phone_sync.sheets.access import AccessStore
    from phone_sync.sheets.preview import prepare_preview
    from phone_sync.sheets.statuses import add_write_columns

    if preview:
        prepare_preview(hook, config.sheets, lines)
        columns: dict[str, int] = {}
    else:
        columns = add_write_columns(hook, config.sheets, header)
    access = hook.shared_access()
    try:
        if access is not None:
            AccessStore(config.sheets.conn_id, sealer).save(access)
    except Exception as exc:  # the batches then leave their statuses to write-back; the run goes on
        log.warning("Sheets access not shared with the batches (%s): write-back writes it all", type(exc).__name__)
    return columns


def clean_phones(config: RegionConfig, extracted_xcom: Any, context: Context) -> list[int]:
    """Clean and de-duplicate; push each batch and the statuses decided here, return the batch indexes to map over."""
    with step(config, context, TaskId.CLEAN):
        sealer = _sealer(config)
        facts = RunXCom(context["ti"]).facts()  # pushed by extract_rows before it succeeded
        if facts is None:
            raise AirflowFailException("the run's facts are not in XCom; clear the whole run")
        fallback = config.local_date(_logical_moment(context))
        max_batches = time_limits.max_map_length()
        missing_feed_date: list[RowRef] = []
        rows = _extracted_rows(Extracted.streamed(extracted_xcom, sealer), missing_feed_date)
        cleaned = clean_and_batch(rows, config.phone, fallback, config.batch_size, max_batches)
        if cleaned.batches:
            _prime_fhir_token(config, sealer)
        decided = cleaned.decided + [
            Status(row=r.row, identifier=r.identifier, outcome=Outcome.FAILED, reason=Reason.FEED_DATE_MISSING)
            for r in missing_feed_date
        ]
        step_log.row_lines(TaskId.CLEAN, decided, region=config.region)
        counts = count(decided)
        invalid = [s.detail or "" for s in decided if s.outcome is Outcome.INVALID_PHONE]
        step_log.summary(
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
        batches = cleaned.batches
        line: dict[int, int] = {}
        if _controls(config, context).preview:  # each row's line in the preview worksheet, in sheet order
            line = line_numbers([s.row for s in decided] + [r.row for b in batches for r in b.rows])
            batches = [b.model_copy(update={"lines": [line[r.row] for r in b.rows]}) for b in batches]
        ti = context["ti"]
        # Ten batches per key: a mapped batch pulls its neighbours' rows with its own, not every batch of the run.
        where = {"identifier_column": facts.identifier_column, "columns": facts.columns}
        for key, group in Batches.by_key(batches, **where).items():
            ti.xcom_push(key=key, value=group.to_xcom(sealer))
        lines = [line[s.row] for s in decided] if line else []
        ti.xcom_push(key=XComKey.DECIDED, value=Decided(statuses=decided, counts=counts, lines=lines).to_xcom(sealer))
        refs = [BatchRef(index=b.index, label=b.label, size=len(b.rows)).to_xcom() for b in batches]
        ti.xcom_push(key=XComKey.BATCH_REFS, value=refs)
        return [b.index for b in batches]  # what process_batch maps over: see phone_sync.contracts


def process_batch(config: RegionConfig, index: int, context: Context) -> dict[str, Any]:
    """Apply batch ``index`` to the region's FHIR server and write its statuses (``pipeline.progress``); per-row
    problems are statuses, outages raise."""
    from phone_sync.fhir.client import FhirClient
    from phone_sync.fhir.hook import FhirHook
    from phone_sync.fhir.profile_store import ProfileStore
    from phone_sync.pipeline.progress import batch_progress

    with step(config, context, TaskId.BATCH):
        xcom = RunXCom(context["ti"])
        group = xcom.batch_group(index)
        label = group.label(index) if group is not None else None
        if label is None:
            raise AirflowFailException(f"batch {index}: its rows are not in XCom; clear the whole run")
        context["batch_label"] = label  # type: ignore[typeddict-unknown-key]  # the grid's name (map_index_template)
        xcom.sealer = sealer = _sealer(config)
        batch = xcom.batch(index)
        if batch is None:
            raise AirflowFailException(f"batch {label}: its rows are not in XCom; clear the whole run")
        preview = _controls(config, context).preview
        rate = _fhir_rate(config, context)
        hook = FhirHook(config.fhir.conn_id, requests_per_second=rate, token_store=_fhir_token_store(config, sealer))
        client = FhirClient(hook, config.fhir, config.phone, profile_store=ProfileStore(config.fhir.conn_id))
        where = {"region": config.region, "batch": batch.index, "rows": batch.label}
        step_log.summary("batch start", **where, count=len(batch.rows))
        try:
            statuses = client.apply(batch.rows, batch=batch.index, dry_run=preview)
        except Exception as exc:
            step_log.summary("batch failed", **where, error=safe_reason(exc), **client.stats)
            raise
        step_log.row_lines("batch", statuses)
        cells = list(map(_status_cell(config, context["run_id"]), statuses))
        progress = batch_progress(config, context, group, batch, statuses, cells, sealer, preview=preview)
        counts = count(statuses)
        profile = client.profile.describe()
        step_log.summary(
            "batch done",
            **where,
            **step_log.counts(counts),
            **client.stats,
            written_live=len(progress.written),
            left_for_write_back=len(progress.left),
            why_left=progress.reason,
            sheets_requests=progress.requests,
            profile=profile,
            fhir_rate=round(rate.rate if isinstance(rate, SharedRate) else rate, 2),
        )
        return BatchResult(
            index=batch.index,
            statuses=statuses,
            counts=counts,
            left=progress.left,
            stats=client.stats,
            sheets_requests=progress.requests,
            profile=profile,
        ).to_xcom(sealer)


def _fhir_rate(config: RegionConfig, context: Context) -> SharedRate | float:
    """The region's FHIR request rate, shared by its batches running now (across runs, as
    ``max_parallel_batches`` counts them): see :class:`~phone_sync.http.pacing.SharedRate`."""
    ti = context["ti"]
    began = getattr(ti, "start_date", None)
    if began is None:  # nothing to count against: the fixed share
        return config.fhir_requests_per_second / config.max_parallel_batches

    def running() -> int:
        return ti.get_ti_count(dag_id=config.dag_id, task_ids=[TaskId.BATCH], states=["running"])

    return SharedRate(config.fhir_requests_per_second, config.max_parallel_batches, running, began=began.timestamp())


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


def write_back_statuses(config: RegionConfig, context: Context) -> dict[str, Any]:
    """Every status the batches did not write into the sheet; rows of failed batches say they will be retried.

    Reads its inputs itself rather than as task arguments: when cleaning never finished there is
    nothing to write, and the task skips instead of failing on a missing XCom.
    """
    from phone_sync.sheets.preview import write_preview_lines
    from phone_sync.sheets.statuses import WriteResult, write_statuses

    run_id = context["run_id"]
    xcom = RunXCom(context["ti"])
    if not xcom.pushed(TaskId.CLEAN, XComKey.DECIDED):
        raise AirflowSkipException("clean_phones did not finish: there are no statuses to write")
    with step(config, context, TaskId.WRITE_BACK):
        xcom.sealer = _sealer(config)
        facts, decided = xcom.facts(), xcom.decided()
        assert decided is not None  # checked above
        preview = _controls(config, context).preview
        # Live, each status becomes its cell as it is opened: at 100,000 rows both at once are tens of MiB.
        keep = None if preview else _status_cell(config, run_id)
        pending = to_write(xcom, decided, xcom.refs(), preview=preview, keep=keep)
        collected = pending.collected
        step_log.row_lines(TaskId.WRITE_BACK, collected.not_processed)
        if preview:
            lines = _preview_lines(pending, run_id)
            requests = write_preview_lines(_sheets_hook(config), config.sheets, lines)
            written = WriteResult(written=len(lines), requests=requests)
        else:
            del pending, decided  # the decided statuses are cells now, and at 100,000 rows every byte counts
            written = write_statuses(
                _sheets_hook(config),
                config.sheets,
                collected.statuses,
                run_id=run_id,
                run_time=datetime.now(UTC),
                identifier_column=facts.identifier_column if facts else None,
            )
        step_log.summary(
            TaskId.WRITE_BACK,
            region=config.region,
            written=written.written,
            moved=written.moved,
            not_placed=len(written.not_placed),
            not_placed_rows=written.not_placed[:50],
            batches_failed=collected.failed_labels,
            sheets_requests=written.requests,
        )
        return WriteBack(
            written=written.written, not_placed=len(written.not_placed), sheets_requests=written.requests
        ).to_xcom()


def _preview_lines(pending: ToWrite, run_id: str) -> list[Line]:
    """The preview lines write-back writes: decided rows, and the rows batches left or could not process."""
    decided = pending.decided
    line = dict(zip((s.row for s in decided.statuses), decided.lines, strict=True))
    phones: dict[int, str] = {}
    for batch in pending.batches:
        line |= zip((r.row for r in batch.rows), batch.lines, strict=True)
        phones |= {r.row: r.phone for r in batch.rows}
    return [preview_line(line[s.row], s, phones.get(s.row), run_id) for s in pending.collected.statuses]


def _status_cell(config: RegionConfig, run_id: str) -> Callable[[Status], StatusCell]:
    """A status as its cell (see ``sheets.statuses``), with a link to its task log when configured."""
    from phone_sync.sheets.placement import StatusCell

    base = links.base_url()

    def cell(status: Status) -> StatusCell:
        link = None
        if config.sheets.columns.status_link:
            task = TaskId.CLEAN if status.batch is None else TaskId.BATCH
            link = links.task_link(config.dag_id, run_id, task, status.batch, base=base)
        return StatusCell(status.row, status.identifier, status.text, link)

    return cell


def run_report(config: RegionConfig, context: Context) -> dict[str, object]:
    """Append the report row, log a readable summary, and fail the run if any step or batch failed."""
    from phone_sync.sheets.report import append_report

    values, counted, controls = _report_row(config, context)
    problem = values["problem"]
    try:
        append_report(_sheets_hook(config), config.sheets, values)
    except Exception as exc:
        if problem is None:
            raise shown(exc) from None  # a Sheets error's text may quote the sheet
        # The sheet may be what failed: the run still fails with its real cause, below.
        step_log.summary(TaskId.REPORT, region=config.region, report_row="not written", error=safe_reason(exc))
    step_log.summary(
        TaskId.REPORT,
        region=config.region,
        **{k.replace(" ", "_"): v for k, v in values.items() if k not in ("link", "run id", "start")},
    )
    ti = context["ti"]
    if counted is None:
        ti.xcom_push(key=XComKey.REPORT, value=values)
        raise AirflowFailException(f"The run stopped before writing statuses: {problem}")
    if controls is None or not controls.preview:
        from phone_sync.alerts.dispatch import check_failure_rate, send_digest

        # After the append and before any raise, so a retried report cannot alert twice.
        check_failure_rate(config, values, context)
        send_digest(config, values, context)
    if counted.failed_labels:
        ti.xcom_push(key=XComKey.REPORT, value=values)  # the run-failure alert reads its counts
        raise AirflowFailException(
            f"{len(counted.failed_labels)} batch(es) failed: {', '.join(counted.failed_labels)}. "
            "Their rows say 'failed: batch not processed'. Clear those process_batch map indexes "
            "(with downstream) once the server is back."
        )
    return values


def _report_row(config: RegionConfig, context: Context) -> tuple[dict[str, object], Tally | None, Controls | None]:
    """The run's report row, its tally, and the controls it used.

    The counts come from the batches' current results (``pipeline.collect.tally``): a report rerun after
    clearing failed batches counts what they did, whether write-back ran again or not. Without them (a step
    before write-back failed) the row says which step failed and why.
    """
    run_id = context["run_id"]
    xcom = RunXCom(context["ti"])
    facts, decided, written = xcom.facts(), xcom.decided(public_only=True), xcom.write_back()
    counted = tally(xcom, decided, xcom.refs()) if decided is not None and written is not None else None
    problem = counted.problem if counted else None
    if counted is None:
        failure = xcom.first_failure(UPSTREAM_STEPS)
        problem = f"{failure.task}: {failure.reason}" if failure else "an earlier step did not finish; see the grid"
    try:
        controls: Controls | None = _controls(config, context)
    except ControlsError:  # extract_rows refused them: the problem says why
        controls = None
    values = report_values(
        counted,
        facts,
        written,
        run_id=run_id,
        logical_date=_logical_moment(context).astimezone(config.zone),
        started=context["dag_run"].start_date,
        finished=datetime.now(UTC),
        link=links.run_link(config.dag_id, run_id),
        problem=problem,
        mode=controls.mode if controls else "invalid controls",
        controls=controls.describe(config) if controls else "",
    )
    return values, counted, controls
