"""The DAGs a benchmark scheduler parses: the region's own, and an empty DAG of the same shape.

The empty DAG (``bench_floor``) has the region's five tasks, the same number of mapped batches
(``BENCH_FLOOR_BATCHES``), the same per-DAG concurrency and, like it, no pool of its own; it does nothing: its
wall time is what Airflow itself costs for this shape on this machine.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, dag

from phone_sync.dag_factory import build_all, one_xcom_task
from phone_sync.regions import load_regions

FLOOR_DAG_ID = "bench_floor"


def build_floor_dag(batches: int, parallel: int) -> DAG:
    """extract -> clean -> ``batches`` mapped no-ops -> write back -> report, all doing nothing."""

    @dag(dag_id=FLOOR_DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
         catchup=False, max_active_runs=1, tags=["bench"])
    def bench_floor() -> None:
        @one_xcom_task()  # as the region's tasks: one XCom per return value
        def extract_rows() -> dict[str, Any]:
            return {}

        @one_xcom_task()
        def clean_phones(extracted: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"index": index} for index in range(batches)]

        @one_xcom_task(max_active_tis_per_dag=parallel)
        def process_batch(batch: dict[str, Any]) -> dict[str, Any]:
            return batch

        @one_xcom_task(trigger_rule="all_done")
        def write_back_statuses(batches: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> dict[str, Any]:
            return {}

        @one_xcom_task(trigger_rule="all_done")
        def run_report(written: dict[str, Any]) -> dict[str, Any]:
            return written

        found = clean_phones(extract_rows())
        run_report(write_back_statuses(found, process_batch.expand(batch=found)))

    return bench_floor()


def all_dags() -> dict[str, DAG]:
    configs, _ = load_regions()
    parallel = max((c.max_parallel_batches for c in configs), default=4)
    return {**build_all(), FLOOR_DAG_ID: build_floor_dag(int(os.environ.get("BENCH_FLOOR_BATCHES", "100")), parallel)}
