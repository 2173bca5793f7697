"""Turns region files into DAGs: one ``phone_sync__<region>`` DAG per file in ``include/regions``.

Parse-time work is reading a few JSON files; everything that talks to a server is imported
and run inside the tasks. A broken region file, or a region whose DAG Airflow refuses, becomes a
visible *config-error DAG* named after its file instead of an exception, because Airflow 3.3
records import errors per Python file: one raised error would hide every region's DAG.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, dag, get_current_context, get_parsing_context, task

from phone_sync.alerts.dispatch import batch_callbacks, dag_callbacks
from phone_sync.config import DAG_ID_PREFIX, RegionConfig
from phone_sync.contracts import TaskId
from phone_sync.controls import trigger_form
from phone_sync.regions import RegionConfigError, load_regions, printable, regions_dir
from phone_sync.time_limits import TimeLimits, describe, max_map_length, time_limits

CONFIG_ERROR_TAG = "config-error"
DAG_ID_MAX = 250  # Airflow's limit on a key
# Outside Airflow's key characters, and a dot before a dot (Airflow refuses ".." in run ids and log paths).
_NOT_IN_DAG_ID = re.compile(r"[^A-Za-z0-9_.-]|\.(?=\.)")
SHOWN_PROBLEMS, SHOWN_PROBLEM_CHARS, DESCRIPTION_PROBLEM_CHARS = 20, 300, 1000

# A task whose return value is one XCom. Airflow infers multiple_outputs=True from a dict return type and
# then pushes every key again as an XCom of its own (ten API calls and a second copy per batch, not one).
one_xcom_task = functools.partial(task, multiple_outputs=False)

log = logging.getLogger(__name__)


def _task_args(config: RegionConfig, limits: TimeLimits) -> dict[str, Any]:
    return {
        "owner": config.owner,
        "retries": config.retries.count,
        "retry_delay": timedelta(seconds=config.retries.delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=config.retries.max_delay_seconds),
        "execution_timeout": limits.step,  # process_batch sets its own
    }


def _doc_md(config: RegionConfig, limits: TimeLimits) -> str:
    sheets, fhir = config.sheets, config.fhir
    selection = (
        "rows whose feed date falls in the run's data interval"
        if config.rows.select == "data_interval"
        else "every row"
    )
    mode = (
        f"**Mode: preview.** Scheduled runs decide what every row would get and write it to the "
        f"**{sheets.preview_worksheet}** worksheet; nothing is written to FHIR or to the status column. Set "
        '`"mode": "live"` in the region file once the preview looks right.'
        if config.mode == "preview"
        else "**Mode: live.**"
    )
    return f"""
### Phone sync: {config.display_name}

{mode}

Reads the worksheet **{sheets.worksheet}** of spreadsheet `{sheets.spreadsheet_id}` (Google connection
`{sheets.conn_id}`), cleans the phone numbers in column **{sheets.columns.phone}**, updates the matching
Patients on this region's FHIR server (connection `{fhir.conn_id}`, identifier system `{fhir.identifier_system}`)
in batches of {config.batch_size} rows, writes a status into column **{sheets.columns.status}**, and appends a row
to the **{sheets.report_worksheet}** worksheet.

* Rows picked up: {selection} whose status is empty{" or starts with `failed`" if config.rows.retry_failed else ""}
  (and rows an earlier run queued). To send a row again, clear its status cell.
* A failed batch (server down, throttled) shows as a red `process_batch` map index named by its sheet rows,
  and its rows say `failed: batch not processed ...`. Clear that map index (with downstream) to rerun it:
  rows already applied come back `unchanged`, nothing is written twice.
* A phone number is never replaced by an older one: a backfill that meets a newer number on record
  leaves it and says `skipped: newer number on record`.
* **Trigger with config** offers: *Mode* (preview writes the **{sheets.preview_worksheet}** worksheet only),
  *Only sheet rows* `a-b`, *Only listed identifiers* (column A of **{sheets.select_worksheet}**), and *Resend*
  (rows whatever their status, after a server restore). The report row and the run's note say what a run used.

Owner: {config.owner}. Schedule `{config.schedule}` ({config.timezone}). At most
{config.max_parallel_batches} batches run at once, {config.fhir_requests_per_second:g} FHIR requests per second.
Time limits: {describe(limits.batch)} a batch, {describe(limits.step)} each other task, {describe(limits.run)} the
run (`timeouts` in the region file overrides them); a task past its limit fails and says so.
"""


def _timetable(config: RegionConfig) -> CronDataIntervalTimetable | str | None:
    """Cron schedules run over data intervals, so a backfill day selects that day's feed rows."""
    if config.schedule in (None, "@once"):
        return config.schedule
    return CronDataIntervalTimetable(config.schedule, timezone=config.timezone)


def build_region_dag(config: RegionConfig) -> DAG:
    """The pipeline for one region: extract -> clean -> process batches (mapped) -> write back -> report."""
    limits = time_limits(config, max_map_length())

    @dag(
        dag_id=config.dag_id,
        dag_display_name=f"Phone sync: {config.display_name}" + (" (PREVIEW)" if config.mode == "preview" else ""),
        description=f"Sheet {config.sheets.worksheet!r} -> FHIR {config.fhir.conn_id!r} phone numbers"
        + (" (preview: no FHIR writes)" if config.mode == "preview" else ""),
        schedule=_timetable(config),
        start_date=pendulum.datetime(
            config.start_date.year, config.start_date.month, config.start_date.day, tz=config.timezone
        ),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=limits.run,
        tags=["phone-sync", config.region, *config.tags],
        default_args=_task_args(config, limits),
        doc_md=_doc_md(config, limits),
        params=trigger_form(config),
        **dag_callbacks(config),
    )
    def phone_sync() -> None:
        # Bodies live in phone_sync.pipeline.tasks, imported inside each task so parsing stays cheap.
        @one_xcom_task(task_id=TaskId.EXTRACT, show_return_value_in_logs=False)
        def extract_rows() -> dict[str, Any]:
            from phone_sync.pipeline import tasks

            return tasks.extract_rows(config, get_current_context())

        @one_xcom_task(task_id=TaskId.CLEAN, show_return_value_in_logs=False)
        def clean_phones(extracted: dict[str, Any]) -> list[dict[str, Any]]:
            """Returns the batch refs to map over; pushes each batch's (sealed) rows and the statuses decided here."""
            from phone_sync.pipeline import tasks

            return tasks.clean_phones(config, extracted, get_current_context())

        @one_xcom_task(
            task_id=TaskId.BATCH,
            map_index_template="{{ batch_label }}",
            show_return_value_in_logs=False,
            max_active_tis_per_dag=config.max_parallel_batches,
            execution_timeout=limits.batch,
            **batch_callbacks(config),
        )
        def process_batch(batch: int) -> dict[str, Any]:
            from phone_sync.pipeline import tasks

            return tasks.process_batch(config, batch, get_current_context())

        # Write-back and the report read their inputs themselves: they run after failures too (all_done),
        # when some of those inputs do not exist.
        @one_xcom_task(task_id=TaskId.WRITE_BACK, trigger_rule="all_done", show_return_value_in_logs=False)
        def write_back_statuses() -> dict[str, Any]:
            from phone_sync.pipeline import tasks

            return tasks.write_back_statuses(config, get_current_context())

        @one_xcom_task(task_id=TaskId.REPORT, trigger_rule="all_done")
        def run_report() -> dict[str, object]:
            from phone_sync.pipeline import tasks

            return tasks.run_report(config, get_current_context())

        batches = process_batch.expand(batch=clean_phones(extract_rows()))
        report = run_report()
        # The report also waits for the batches themselves: clearing only the run's failed tasks reruns the
        # failed batches and the report but not write-back (it succeeded), and the report counts their results.
        batches >> write_back_statuses() >> report
        batches >> report

    return phone_sync()


def config_error_dag_id(file_name: str, hash_chars: int = 0) -> str:
    """The dag_id under which a broken region file shows: ``phone_sync__<file name without .json>``.

    Characters Airflow refuses become ``_``; when that changed the name (or ``hash_chars`` asks for it,
    on a collision) a hash of the exact file name follows, so the id is stable across parses and
    two files never share one. A region file that breaks keeps its region's dag_id and history.
    """
    stem = file_name.removesuffix(".json")
    clean = _NOT_IN_DAG_ID.sub("_", stem)
    if not hash_chars and clean and clean == stem and len(DAG_ID_PREFIX) + len(clean) <= DAG_ID_MAX:
        return DAG_ID_PREFIX + clean
    digest = hashlib.sha256(os.fsencode(file_name)).hexdigest()[: hash_chars or 8]
    return f"{DAG_ID_PREFIX}{clean[: DAG_ID_MAX - len(DAG_ID_PREFIX) - len(digest) - 2]}__{digest}"


def _config_error_dag_ids(errors: list[RegionConfigError], taken: set[str]) -> dict[Path, str]:
    """A dag_id per broken file, none equal (ignoring case, as some metadata databases do) to another or to ``taken``.

    Colliding files all move to a longer hash together, so which file gets which id does not depend on order.
    """
    used = {dag_id.lower() for dag_id in taken}
    ids: dict[Path, str] = {}
    for hash_chars in (0, 8, 64):
        wanted = {e.path: config_error_dag_id(e.path.name, hash_chars) for e in errors if e.path not in ids}
        counts = Counter(dag_id.lower() for dag_id in wanted.values())
        for path, dag_id in wanted.items():
            if counts[dag_id.lower()] == 1 and dag_id.lower() not in used:
                ids[path] = dag_id
        used |= {dag_id.lower() for dag_id in ids.values()}
    return ids


def _code_span(text: str) -> str:
    """``text`` as a Markdown code span that shows it literally, whatever backticks or markup it holds.

    The fence is longer than any run of backticks inside; the padding spaces are dropped by the renderer.
    """
    text = printable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_config_error_dag(error: RegionConfigError, dag_id: str) -> DAG:
    """A DAG that shows an operator which region file is broken, and why, without running anything.

    Unscheduled; paused when new. A region that ran keeps its dag_id and stays unpaused, so fixing the
    file resumes its schedule; a manual run fails with the problems.
    """
    name = printable(error.path.name)
    shown = [_clipped(printable(problem), SHOWN_PROBLEM_CHARS) for problem in error.problems[:SHOWN_PROBLEMS]]
    if more := len(error.problems) - len(shown):
        shown.append(f"... and {more} more (make check-regions lists them all)")
    problems = "\n".join(f"* {_code_span(problem)}" for problem in shown)

    @dag(
        dag_id=dag_id,
        dag_display_name=f"Phone sync: {name} (REGION FILE INVALID)",
        description=f"Invalid region file {name}: " + _clipped("; ".join(shown), DESCRIPTION_PROBLEM_CHARS),
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        tags=["phone-sync", CONFIG_ERROR_TAG],
        doc_md=f"### Region file {_code_span(name)} is invalid\n\nFix these fields, then wait for the next parse "
        f"(or run `make check-regions`):\n\n{problems}\n\nThe region does not run until the file is valid; "
        "other regions are not affected.",
        is_paused_upon_creation=True,
    )
    def config_error() -> None:
        @task(retries=0)
        def region_file_invalid() -> None:
            raise RuntimeError(str(error))

        region_file_invalid()

    return config_error()


def build_all(directory: Path | None = None) -> dict[str, DAG]:
    """Every region's DAG by dag_id; broken files, and regions Airflow refuses, give config-error DAGs.

    Never raises for a region's sake: Airflow would then show none of them.
    """
    directory = directory or regions_dir()
    configs, errors = load_regions(directory)
    # A task process parses the file for one DAG (Airflow says which): it builds that one, not every region's.
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    refused: set[str] = set()
    for config in configs:
        if wanted and config.dag_id != wanted:
            continue
        try:
            dags[config.dag_id] = build_region_dag(config)
        except Exception as exc:  # e.g. a start_date or retry delay beyond what Airflow can hold
            log.warning("region %s: Airflow refused its DAG", config.region, exc_info=True)
            problem = f"(DAG): Airflow refused the region's DAG: {type(exc).__name__}: {exc}"
            errors.append(RegionConfigError(directory / f"{config.region}.json", [problem]))
            refused.add(config.dag_id)
    ids = _config_error_dag_ids(errors, taken={config.dag_id for config in configs} - refused)
    for error in errors:
        if error.path in ids and (not wanted or ids[error.path] == wanted):
            log.warning("%s shown as the config-error DAG %s", printable(error.path.name), ids[error.path])
            dags[ids[error.path]] = build_config_error_dag(error, ids[error.path])
    return dags
