"""Time limits: every task and every run has one, derived from the region's size and pacing, overridable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phone_sync.config import RegionConfig
from phone_sync.dag_factory import build_region_dag
from phone_sync.regions import RegionConfigError, load_region
from phone_sync.time_limits import REQUESTS_PER_ROW, TOKEN_WAIT_SECONDS, describe, time_limits
from tests.regions import PROJECT_REGIONS
from tests.unit.test_config import MINIMAL, with_change, write


@pytest.mark.parametrize("region", ["demo", "purbalingga", "lombok_barat"])
def test_every_task_and_the_run_of_a_region_dag_have_a_time_limit(region: str) -> None:
    config = load_region(PROJECT_REGIONS / f"{region}.json")
    limits = time_limits(config)
    dag = build_region_dag(config)

    assert dag.dagrun_timeout == limits.run
    assert {task.task_id: task.execution_timeout for task in dag.tasks} == {
        "extract_rows": limits.step,
        "clean_phones": limits.step,
        "process_batch": limits.batch,
        "write_back_statuses": limits.step,
        "run_report": limits.step,
    }
    assert f"Time limits: {describe(limits.batch)} a batch" in dag.doc_md


def test_the_region_file_overrides_each_limit(tmp_path: Path) -> None:
    data = with_change("timeouts", {"step_minutes": 20, "batch_minutes": 0.1, "run_hours": 3})
    limits = time_limits(load_region(write(tmp_path, data)))
    assert (limits.step, limits.batch, limits.run) == (timedelta(minutes=20), timedelta(seconds=6), timedelta(hours=3))

    only_batch = time_limits(load_region(write(tmp_path, with_change("timeouts", {"batch_minutes": 45}))))
    assert only_batch.batch == timedelta(minutes=45)
    assert only_batch.step == time_limits(load_region(write(tmp_path, MINIMAL))).step


@pytest.mark.parametrize("bad", [{"batch_minutes": 0}, {"run_hours": -1}, {"step_minutes": "soon"}, {"days": 2}])
def test_a_bad_timeouts_section_is_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(RegionConfigError, match="timeouts"):
        load_region(write(tmp_path, with_change("timeouts", bad)))


@settings(max_examples=200, deadline=None)
@given(
    batch_size=st.integers(1, 1000),
    rate=st.floats(0.1, 1000),
    parallel=st.integers(1, 64),
    retries=st.integers(0, 10),
    max_batches=st.sampled_from([1, 100, 1024, 5000]),
)
def test_a_legitimate_slow_run_is_never_stopped(
    batch_size: int, rate: float, parallel: int, retries: int, max_batches: int
) -> None:
    """The worst interaction profile (one identifier a search, one update a request, a conflict re-read) at the
    region's own rate: a batch, and the largest run Airflow maps, fit well within their limits."""
    changes = {"batch_size": batch_size, "fhir_requests_per_second": rate, "max_parallel_batches": parallel}
    data = with_change("retries", {"count": retries})
    data.update(changes)
    limits = time_limits(RegionConfig.model_validate(data), max_batches)

    batch_at_rate = batch_size * REQUESTS_PER_ROW / (rate / parallel)
    assert limits.batch.total_seconds() >= batch_at_rate + TOKEN_WAIT_SECONDS
    run_at_rate = max_batches * batch_size * REQUESTS_PER_ROW / rate
    assert limits.run.total_seconds() >= run_at_rate + 4 * limits.step.total_seconds()
    assert limits.run >= limits.batch * (1 + retries)


def test_limits_read_as_an_operator_writes_them() -> None:
    assert [describe(timedelta(seconds=s)) for s in (6, 600, 5400, 93600)] == ["6 s", "10 min", "1 h 30 min", "26 h"]
