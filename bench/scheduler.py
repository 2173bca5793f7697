"""The whole DAG through a running Airflow (``localservers.airflow_cluster``: api-server, scheduler,
dag-processor, triggerer; LocalExecutor), timed side by side with the empty DAG of the same shape.

Task process memory is measured twice: every task process records its own ``ru_maxrss`` through
a listener plugin (``bench.rss_listener``), and a sampler reads the RSS of the scheduler's
descendants (task processes are titled ``airflow worker -- <ti id>``) ten times a second.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.airflow_dags import FLOOR_DAG_ID
from localservers.airflow_cluster import AirflowCluster

DAG_FILE = (
    '"""Benchmark DAGs (airflow dag file)."""\n'
    "from bench.airflow_dags import all_dags\n\nglobals().update(all_dags())\n"
)
PLUGIN_FILE = (
    "from airflow.plugins_manager import AirflowPlugin\n\nfrom bench import rss_listener\n\n\n"
    "class BenchRssPlugin(AirflowPlugin):\n    name = 'bench_rss'\n    listeners = [rss_listener]\n"
)


class RssSampler(threading.Thread):
    """Peak RSS of each ``airflow worker -- <ti id>`` process under the scheduler."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                try:
                    title = " ".join(child.cmdline())
                    if title.startswith("airflow worker -- "):
                        ti_id = title.split(" -- ", 1)[1].strip()
                        rss = child.memory_info().rss / 2**20
                        self.peaks[ti_id] = max(self.peaks.get(ti_id, 0.0), rss)
                except psutil.Error:
                    continue
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def _timed_run(cluster: AirflowCluster, dag_id: str, timeout: float = 900) -> dict[str, Any]:
    """Trigger a run and poll it four times a second: wall time from the trigger to the observed end."""
    started = time.perf_counter()
    run_id = cluster.trigger(dag_id)
    while True:
        run = cluster.run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            seconds = time.perf_counter() - started
            break
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout}s")
        time.sleep(0.25)
    return {"run_id": run_id, "state": run["state"], "seconds": seconds,
            "task_instances": cluster.task_instances(dag_id, run_id)}


def run_side_by_side(workdir: Path, connections: dict[str, str], regions_dir: Path, dag_id: str,
                     batches: int) -> dict[str, Any]:
    """Floor first, then the region's DAG, in one Airflow; RSS per task process for both."""
    dags, plugins = workdir / "dags", workdir / "plugins"
    for folder in (dags, plugins):
        folder.mkdir(parents=True, exist_ok=True)
    (dags / "bench_dags.py").write_text(DAG_FILE)
    (plugins / "bench_rss_plugin.py").write_text(PLUGIN_FILE)
    rss_file = workdir / "task_rss.jsonl"
    rss_file.unlink(missing_ok=True)
    env = {
        **connections,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "PHONE_SYNC_REGIONS_DIR": str(regions_dir),
        "BENCH_FLOOR_BATCHES": str(batches),
        "BENCH_RSS_FILE": str(rss_file),
    }
    with AirflowCluster(workdir / "airflow", extra_env=env) as cluster:
        for dag in (FLOOR_DAG_ID, dag_id):
            cluster.wait_for_dag(dag, timeout=180)
            cluster.unpause(dag)
        scheduler = next(c for c in cluster.components if c.name == "scheduler")
        assert scheduler.process is not None
        sampler = RssSampler(scheduler.process.pid)
        sampler.start()
        try:
            floor = _timed_run(cluster, FLOOR_DAG_ID)
            region = _timed_run(cluster, dag_id)
        finally:
            sampler.stop()
    recorded = [json.loads(line) for line in rss_file.read_text().splitlines()] if rss_file.exists() else []
    return {"floor": _summary(floor, sampler.peaks, recorded, FLOOR_DAG_ID),
            "region": _summary(region, sampler.peaks, recorded, dag_id)}


def _summary(run: dict[str, Any], sampled: dict[str, float], recorded: list[dict[str, Any]],
             dag_id: str) -> dict[str, Any]:
    """Per task: max over its map indexes of the recorded ru_maxrss and of the sampled RSS."""
    per_task: dict[str, dict[str, float]] = {}
    for ti in run["task_instances"]:
        entry = per_task.setdefault(ti["task_id"], {"count": 0, "sampled_mib": 0.0, "ru_maxrss_mib": 0.0})
        entry["count"] += 1
        entry["sampled_mib"] = round(max(entry["sampled_mib"], sampled.get(ti["id"], 0.0)), 1)
    for line in recorded:
        if line["dag_id"] == dag_id and line["task_id"] in per_task:
            entry = per_task[line["task_id"]]
            entry["ru_maxrss_mib"] = max(entry["ru_maxrss_mib"], line["ru_maxrss_mib"])
    states: dict[str, int] = {}
    for ti in run["task_instances"]:
        states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
    return {"run_id": run["run_id"], "state": run["state"], "seconds": run["seconds"], "task_states": states,
            "tasks": per_task}
