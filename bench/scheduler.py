"""The whole DAG through a running Airflow (``localservers.airflow_cluster``: api-server, scheduler,
dag-processor, triggerer; LocalExecutor, or CeleryExecutor with workers), timed side by side with the
empty DAG of the same shape.

Every task process reports its peak RSS, CPU and where its time went through a listener plugin
(``bench.task_listener``); a sampler also reads the RSS of the components' descendants (task
processes are titled ``airflow worker -- <ti id>``) ten times a second. Around each run the metadata
database's XCom and rendered-fields bytes are read, and the run's XComs are measured sealed and opened.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from bench import metadb
from bench.airflow_dags import FLOOR_DAG_ID
from localservers.airflow_cluster import AirflowCluster
from phone_sync.crypto import Sealer

DAG_FILE = (
    '"""Benchmark DAGs (airflow dag file)."""\n'
    "from bench.airflow_dags import all_dags\n\nglobals().update(all_dags())\n"
)
PLUGIN_FILE = (
    "from airflow.plugins_manager import AirflowPlugin\n\nfrom bench import task_listener\n\n\n"
    "class BenchTaskPlugin(AirflowPlugin):\n    name = 'bench_task_profile'\n    listeners = [task_listener]\n"
)


POLL_SECONDS = 2.0


class RssSampler(threading.Thread):
    """Peak RSS of each ``airflow worker -- <ti id>`` process under the given components."""

    def __init__(self, root_pids: list[int], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.roots = [psutil.Process(pid) for pid in root_pids]
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for root in self.roots:
                try:
                    children = root.children(recursive=True)
                except psutil.Error:
                    continue
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


def _timed_run(cluster: AirflowCluster, dag_id: str, db_url: str, timeout: float) -> dict[str, Any]:
    """Trigger a run and wait for its end: its wall time is what Airflow recorded, from queued (the trigger) to
    its end, so the run is polled only every :data:`POLL_SECONDS` (each poll is work for the API server the
    run's tasks need: at 100,000 rows one took its single worker 0.28 s, and four a second took half its time)."""
    before = metadb.table_bytes(db_url)
    started = time.perf_counter()
    run_id = cluster.trigger(dag_id)
    while True:
        run = cluster.run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            observed = time.perf_counter() - started
            break
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout}s")
        time.sleep(POLL_SECONDS)
    queued, ended = _moment(run.get("queued_at")), _moment(run.get("end_date"))
    seconds = ended - queued if queued is not None and ended is not None else observed
    return {"run_id": run_id, "state": run["state"], "seconds": seconds, "run": run,
            "task_instances": cluster.task_instances(dag_id, run_id),
            "db_growth_mib": metadb.growth(before, metadb.table_bytes(db_url))}


def run_side_by_side(workdir: Path, connections: dict[str, str], regions_dir: Path, dag_id: str,
                     batches: int, *, sealer: Sealer, server_urls: dict[str, str],
                     executor: str = "LocalExecutor", database_url: str | None = None,
                     broker_url: str | None = None, airflow_config: dict[str, str] | None = None,
                     timeout: float = 3600) -> dict[str, Any]:
    """Floor first, then the region's DAG, in one Airflow; per task process RSS, CPU and time profile."""
    dags, plugins = workdir / "dags", workdir / "plugins"
    for folder in (dags, plugins):
        folder.mkdir(parents=True, exist_ok=True)
    (dags / "bench_dags.py").write_text(DAG_FILE)
    (plugins / "bench_task_plugin.py").write_text(PLUGIN_FILE)
    task_file = workdir / "task_profile.jsonl"
    task_file.unlink(missing_ok=True)
    env = {
        **connections,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "PHONE_SYNC_REGIONS_DIR": str(regions_dir),
        "BENCH_FLOOR_BATCHES": str(batches),
        "BENCH_TASK_FILE": str(task_file),
        **{f"BENCH_{name.upper()}_URL": url for name, url in server_urls.items()},
        **{f"AIRFLOW__{key.upper()}": value for key, value in (airflow_config or {}).items()},
    }
    home = workdir / "airflow"
    db_url = database_url or f"sqlite:///{home / 'airflow.db'}"
    with AirflowCluster(home, extra_env=env, executor=executor, database_url=database_url,
                        broker_url=broker_url) as cluster:
        for dag in (FLOOR_DAG_ID, dag_id):
            cluster.wait_for_dag(dag, timeout=180)
            cluster.unpause(dag)
        roots = [c.process.pid for c in cluster.components
                 if c.process is not None and (c.name == "scheduler" or c.name.startswith("celery-"))]
        sampler = RssSampler(roots)
        sampler.start()
        try:
            floor = _timed_run(cluster, FLOOR_DAG_ID, db_url, timeout)
            region = _timed_run(cluster, dag_id, db_url, timeout)
        finally:
            sampler.stop()
        region["xcom"] = metadb.xcom_sizes(db_url, dag_id, region["run_id"], sealer)
    recorded = [json.loads(line) for line in task_file.read_text().splitlines()] if task_file.exists() else []
    return {"floor": _summary(floor, sampler.peaks, recorded, FLOOR_DAG_ID),
            "region": _summary(region, sampler.peaks, recorded, dag_id)}


def _moment(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _summary(run: dict[str, Any], sampled: dict[str, float], recorded: list[dict[str, Any]],
             dag_id: str) -> dict[str, Any]:
    """Per task: RSS (max of recorded and sampled), CPU, the profile (mean over map indexes), its timeline."""
    run_start = _moment(run["run"].get("start_date")) or 0.0
    per_task: dict[str, dict[str, Any]] = {}
    spans: dict[tuple[str, int], tuple[float, float]] = {}  # (task, map index): its start and end
    for ti in run["task_instances"]:
        entry = per_task.setdefault(ti["task_id"], {
            "count": 0, "sampled_mib": 0.0, "ru_maxrss_mib": 0.0, "first_start": None, "last_end": None,
            "ti_seconds": 0.0, "queued_seconds": 0.0})
        entry["count"] += 1
        entry["sampled_mib"] = round(max(entry["sampled_mib"], sampled.get(ti["id"], 0.0)), 1)
        start, end, queued = _moment(ti.get("start_date")), _moment(ti.get("end_date")), _moment(ti.get("queued_when"))
        if start is not None and end is not None:
            spans[ti["task_id"], ti.get("map_index", -1)] = (start, end)
            entry["ti_seconds"] += end - start
            entry["first_start"] = min(start - run_start, entry["first_start"] or 1e12)
            entry["last_end"] = max(end - run_start, entry["last_end"] or 0.0)
        if start is not None and queued is not None:
            entry["queued_seconds"] += start - queued
    lines = [line for line in recorded if line["dag_id"] == dag_id]
    for task_id, entry in per_task.items():
        mine = [line for line in lines if line["task_id"] == task_id]
        entry["ti_seconds"] = round(entry["ti_seconds"] / entry["count"], 3)
        entry["queued_seconds"] = round(entry["queued_seconds"] / entry["count"], 3)
        for key in ("first_start", "last_end"):
            entry[key] = round(entry[key], 1) if entry[key] is not None else None
        if not mine:
            continue
        entry["profiled"] = len(mine)
        entry["ru_maxrss_mib"] = max(line["ru_maxrss_mib"] for line in mine)
        entry["cpu_seconds"] = _mean([line["cpu_seconds"] for line in mine])
        entry["in_process_seconds"] = _mean([line["in_process_seconds"] for line in mine])
        profile: dict[str, float] = {"start": _mean([line["start"] for line in mine])}
        for key in mine[0]["profile"]:
            profile[key] = _mean([line["profile"].get(key, 0.0) for line in mine])
        entry["profile"] = profile
        entry["imports"] = {key: _mean([line["imports"].get(key, 0.0) for line in mine]) for key in mine[0]["imports"]}
        entry["calls"] = {key: _mean([line["calls"].get(key, 0) for line in mine]) for key in mine[0]["calls"]}
        kinds = sorted({kind for line in mine for kind in line.get("messages", {})})
        entry["messages"] = {kind: _mean([line.get("messages", {}).get(kind, 0) for line in mine]) for kind in kinds}
        entry["message_seconds"] = {
            kind: _mean([line.get("message_seconds", {}).get(kind, 0) for line in mine]) for kind in kinds
        }
        entry["modules"] = next((line["modules"] for line in mine if "modules" in line), [])
        mapped = {index: span for (task, index), span in spans.items() if task == task_id}
        entry["fhir_edges"] = _fhir_edges(mine, mapped)
    states: dict[str, int] = {}
    for ti in run["task_instances"]:
        states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
    return {"run_id": run["run_id"], "state": run["state"], "seconds": run["seconds"], "task_states": states,
            "queued_at": _moment(run["run"].get("queued_at")), "ended_at": _moment(run["run"].get("end_date")),
            "batch_spans": sorted(span for (task, _), span in spans.items() if task == "process_batch"),
            "tasks": per_task, "db_growth_mib": run["db_growth_mib"], "xcom": run.get("xcom")}


def _fhir_edges(lines: list[dict[str, Any]], spans: dict[int, tuple[float, float]]) -> dict[str, float] | None:
    """Mean seconds from a task's start (as Airflow counts it: when the others can see it running) to its first
    FHIR request, and from its last FHIR answer to its end: the parts of its slot it holds without using the rate.
    ``spans``: each map index's start and end."""
    before, after = [], []
    for line in lines:
        window = line.get("http_windows", {}).get("http_fhir")
        if window and line["map_index"] in spans:
            start, end = spans[line["map_index"]]
            before.append(window[0] - start)
            after.append(end - window[1])
    return {"start_to_first_request": _mean(before), "last_answer_to_end": _mean(after)} if before else None


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0
