"""How long a task and a run may take before Airflow stops them, derived from the region's size and pacing.

A region runs one DAG run at a time, so a run that hangs would hold back every later day. Every task gets
an ``execution_timeout`` and the run a ``dagrun_timeout``: a hang becomes a red task (retried, then failed)
that says which limit it hit, and at worst a failed run, never a silent stall.

The limits are what the slowest legitimate run needs, with room to spare, so a slow but healthy run is
never stopped. A batch is sized for the worst FHIR interaction profile (a gateway that takes one
identifier per search and one update per request: :data:`REQUESTS_PER_ROW` requests a row, a conflict
re-read included), its requests one after another at the batch's share of the region's rate, or at
:data:`SLOW_ANSWER_SECONDS` each when the server is slower than that, doubled (:data:`MARGIN`), plus one
wait for a rate-limited token endpoint (:data:`TOKEN_WAIT_SECONDS`, the FHIR connection's default). The
run is sized for the largest run Airflow maps (``[core] max_map_length`` batches, in waves of
``max_parallel_batches``), every other step once, one token wait, and each of the region's task retries.
A region file's ``timeouts`` section overrides any of the three (``step_minutes``, ``batch_minutes``,
``run_hours``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from phone_sync.config import RegionConfig

REQUESTS_PER_ROW = 3
SLOW_ANSWER_SECONDS = 0.5
MARGIN = 2
TOKEN_WAIT_SECONDS = 300
# Extract, clean, write-back and the report: their Sheets requests (retries and quota waits included), the
# token clean_phones readies, and the CPU of the run's rows, a minute per 10,000 rows.
STEP_BASE_MINUTES = 30
ROWS_PER_STEP_MINUTE = 10_000
STEPS = 4  # extract_rows, clean_phones, write_back_statuses, run_report
DEFAULT_MAX_MAP_LENGTH = 1024


@dataclass(frozen=True)
class TimeLimits:
    step: timedelta  # each of extract_rows, clean_phones, write_back_statuses, run_report
    batch: timedelta  # each process_batch
    run: timedelta  # the whole run (dagrun_timeout)


def max_map_length() -> int:
    """The deployment's ``[core] max_map_length``: more mapped batches than this, and Airflow refuses the run."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)


def time_limits(config: RegionConfig, max_batches: int = DEFAULT_MAX_MAP_LENGTH) -> TimeLimits:
    """The region's limits: derived from its batch size, pacing and retries, unless its file overrides them."""
    override = config.timeouts
    rows = max_batches * config.batch_size
    step = _minutes(override.step_minutes) or _whole_minutes(
        60 * (STEP_BASE_MINUTES + rows / ROWS_PER_STEP_MINUTE) + TOKEN_WAIT_SECONDS
    )
    # One batch's requests go one after another, each at the batch's share of the region's rate or slower.
    request = max(config.max_parallel_batches / config.fhir_requests_per_second, SLOW_ANSWER_SECONDS)
    work = timedelta(seconds=MARGIN * config.batch_size * REQUESTS_PER_ROW * request)
    batch = _minutes(override.batch_minutes) or _whole_minutes(work.total_seconds() + TOKEN_WAIT_SECONDS)
    waves = math.ceil(max_batches / config.max_parallel_batches)
    retries = config.retries
    derived_run = (
        STEPS * step
        + waves * min(work, batch)
        + timedelta(seconds=TOKEN_WAIT_SECONDS)
        + retries.count * (batch + timedelta(seconds=retries.max_delay_seconds))
    )
    run = timedelta(hours=override.run_hours) if override.run_hours else _whole_hours(derived_run)
    return TimeLimits(step=step, batch=batch, run=run)


def describe(limit: timedelta) -> str:
    """``10 min``, ``2 h``, ``1 h 30 min``, ``6 s``: a limit as an operator reads it."""
    seconds = round(limit.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if part)


def stopped_at(limit: timedelta | None, setting: str) -> str:
    """Why Airflow stopped a task or a run at its time limit, in an operator's words (``setting``: where to
    change the limit)."""
    limit_text = f"its time limit of {describe(limit)}" if limit else "its time limit"
    return (
        f"stopped at {limit_text} ({setting} in the region file): "
        "a server not answering, or far slower than the region's pacing"
    )


def _minutes(value: float | None) -> timedelta | None:
    return timedelta(minutes=value) if value else None


def _whole_minutes(seconds: float) -> timedelta:
    return timedelta(minutes=math.ceil(seconds / 60))


def _whole_hours(limit: timedelta) -> timedelta:
    return timedelta(hours=math.ceil(limit.total_seconds() / 3600))
