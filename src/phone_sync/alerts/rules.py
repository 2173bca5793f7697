"""The alert rules: when a region's on-call is told, and what the message says.

* ``run_failed``: a DAG run ended failed (DAG ``on_failure_callback``; runs in the DAG processor, whose
  context may hold only ``dag``, ``run_id`` and ``reason``, or also the task instance that failed last).
* ``batch_failed``: a ``process_batch`` map index failed its last try (task ``on_failure_callback``;
  Airflow calls ``on_retry_callback`` for the earlier tries, which do not alert).
* ``failure_rate``: failed + invalid phone + not found + conflicts over the rows given a status passed
  the region's threshold; one wrong column or an expired token looks like this, bad data rarely does.
* ``digest``: the report row, once per local day, when a region asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from phone_sync.alerts.message import (
    Alert,
    batch_name,
    safe_counts,
    safe_info,
    safe_name,
    safe_problem,
)
from phone_sync.config import RegionConfig
from phone_sync.contracts import TaskId, XComKey
from phone_sync.links import run_link, task_link
from phone_sync.outcomes import FAILURE_COLUMNS, SETTLED_COLUMNS
from phone_sync.time_limits import max_map_length, stopped_at, time_limits

log = logging.getLogger(__name__)



def _dag_id(config: RegionConfig, context: Mapping[str, Any]) -> str:
    dag = context.get("dag")
    return safe_name(getattr(dag, "dag_id", None), fallback=config.dag_id)


def _alert(config: RegionConfig, context: Mapping[str, Any], rule: str, headline: str, **fields: Any) -> Alert:
    dag_id, run_id = _dag_id(config, context), str(context.get("run_id") or "unknown")
    return Alert(
        rule=rule,
        region=config.region,
        region_name=config.display_name,
        dag_id=dag_id,
        run_id=run_id,
        headline=headline,
        link=run_link(dag_id, run_id),
        **fields,
    )


def _map_index(ti: Any) -> int:
    map_index = getattr(ti, "map_index", -1)
    return map_index if isinstance(map_index, int) else -1


def _failed_task(ti: Any) -> str:
    task_id = safe_name(getattr(ti, "task_id", None))
    map_index = _map_index(ti)
    if map_index < 0:
        return f"task {task_id}"
    return f"task {task_id}, batch {batch_name(getattr(ti, 'rendered_map_index', None), map_index)}"


def _report_from_xcom(ti: Any) -> dict[str, Any] | None:
    """The report values ``run_report`` pushes before it fails the run, when the context can read XCom
    (the DAG processor can; ``dag.test()`` runs DAG callbacks without a supervisor and cannot)."""
    if ti is None:
        return None
    try:
        report = ti.xcom_pull(task_ids=TaskId.REPORT, key=XComKey.REPORT, map_indexes=-1)
    except Exception as exc:  # enrichment only: the alert goes out without counts
        log.info("run report counts not available to the alert (%s)", type(exc).__name__)
        return None
    return report if isinstance(report, dict) else None


def _stopped_at_run_limit(config: RegionConfig, context: Mapping[str, Any]) -> str:
    """The DAG's own ``dagrun_timeout``, or the one the region file gives it when the context has no DAG."""
    limit = getattr(context.get("dag"), "dagrun_timeout", None) or time_limits(config, max_map_length()).run
    return f"Run {stopped_at(limit, 'timeouts.run_hours')}; its unfinished tasks were stopped."


def run_failed(config: RegionConfig, context: Mapping[str, Any]) -> Alert:
    """A run ended failed: which task failed last, why Airflow says it failed, the counts when known."""
    ti = context.get("ti")
    reason = safe_name(context.get("reason"), fallback="failed")
    timed_out = reason == "timed_out"  # Airflow's word for a run past its dagrun_timeout
    details = [_stopped_at_run_limit(config, context) if timed_out else f"Run failed ({reason})."]
    if ti is not None:
        details.append(f"Last failed: {_failed_task(ti)}.")
    report = _report_from_xcom(ti)
    problem = safe_problem((report or {}).get("problem"))
    headline = "run timed out" if timed_out else "run failed"
    if problem:
        headline = f"run failed at {safe_name(problem.split(':', 1)[0])}"
        details.append(f"Cause: {problem}")
    if report and report.get("batches failed"):
        details.append("Rows of failed batches say 'failed: batch not processed'; clear those batches once fixed.")
    dag_id, run_id = _dag_id(config, context), str(context.get("run_id") or "unknown")
    log_link = ""
    if ti is not None and getattr(ti, "task_id", None):
        log_link = task_link(dag_id, run_id, safe_name(ti.task_id), _map_index(ti))
    return _alert(
        config,
        context,
        "run_failed",
        headline,
        details=tuple(details),
        counts=safe_counts(report),
        log_link=log_link,
    )


def batch_failed(config: RegionConfig, context: Mapping[str, Any]) -> Alert:
    """A batch failed its last try: its sheet rows, the tries, the error class (never its message)."""
    ti = context["ti"]
    map_index = _map_index(ti)
    label = batch_name(getattr(ti, "rendered_map_index", None), map_index)
    error = context.get("exception")
    tries = getattr(ti, "try_number", None)
    details = (
        f"Batch {label} (task {safe_name(ti.task_id)}, map index {map_index}) failed"
        + (f" on try {tries}" if tries else "")
        + (f": {safe_name(type(error).__name__)}" if isinstance(error, BaseException) else "")
        + ".",
        "Its rows say 'failed: batch not processed'. Clear this map index (with downstream) once the cause is fixed.",
    )
    dag_id, run_id = _dag_id(config, context), str(context.get("run_id") or "unknown")
    return _alert(
        config,
        context,
        "batch_failed",
        f"batch {label} failed",
        details=details,
        log_link=task_link(dag_id, run_id, safe_name(ti.task_id), map_index),
    )


def failure_rate(values: Mapping[str, Any]) -> tuple[int, int]:
    """(rows that failed, rows given a status) from the report values; failed = failed + invalid phone +
    not found + conflicts. Skipped rows count as processed: a newer number on record is not an error."""
    counts = safe_counts(values)
    return sum(counts.get(key, 0) for key in FAILURE_COLUMNS), sum(counts.get(key, 0) for key in SETTLED_COLUMNS)


def failure_rate_alert(
    config: RegionConfig, values: Mapping[str, Any], context: Mapping[str, Any], failed: int, processed: int
) -> Alert:
    threshold = config.alerts.failure_rate_threshold or 0
    share = failed / processed
    return _alert(
        config,
        context,
        "failure_rate",
        f"{share:.0%} of rows failed",
        details=(
            f"{failed} of {processed} rows failed (failed, invalid phone, not found, conflicts), "
            f"above the region's threshold of {threshold:.0%}.",
            "So many failures usually mean a wrong column header or an expired token rather than bad data.",
        ),
        counts=safe_counts(values),
    )


def digest_due(config: RegionConfig, context: Mapping[str, Any]) -> bool:
    """One digest a local day: the run whose data interval crosses local midnight sends it (every run of
    a daily schedule, one run of an hourly one). A run without an interval sends its own."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start == end:
        return True
    return config.local_date(end) > config.local_date(start)


def digest(config: RegionConfig, values: Mapping[str, Any], context: Mapping[str, Any]) -> Alert:
    failed, processed = failure_rate(values)
    return _alert(
        config,
        context,
        "digest",
        "daily report",
        details=(f"{failed} of {processed} processed rows failed.",),
        counts=safe_counts(values),
        info=safe_info(values),
    )
