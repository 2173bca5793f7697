"""The whole DAG through a running Airflow (api-server, scheduler, dag-processor; LocalExecutor),
timed side by side with the empty DAG of the same shape, on a temporary Airflow home.

Task process memory is measured twice: every task process records its own ``ru_maxrss`` through
a listener plugin (``bench.rss_listener``), and a sampler reads the RSS of the scheduler's
descendants (task processes are titled ``airflow worker -- <ti id>``) ten times a second.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.airflow_dags import FLOOR_DAG_ID, FLOOR_POOL
from localservers.airflow_env import REPO_ROOT, airflow_env
from localservers.process import free_port

DAG_FILE = (
    '"""Benchmark DAGs (airflow dag file)."""\n'
    "from bench.airflow_dags import all_dags\n\nglobals().update(all_dags())\n"
)
PLUGIN_FILE = (
    "from airflow.plugins_manager import AirflowPlugin\n\nfrom bench import rss_listener\n\n\n"
    "class BenchRssPlugin(AirflowPlugin):\n    name = 'bench_rss'\n    listeners = [rss_listener]\n"
)


class Component:
    """One Airflow component as a child process in its own session, stopped by its id."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=REPO_ROOT,
            )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the group this object started, nothing else
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


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


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def login(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.session.get(f"{self.base}/auth/token", timeout=5)
                if answer.ok:
                    self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the api-server did not answer /auth/token")
            time.sleep(1)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base}/api/v2{path}", params=params, timeout=30)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self.get(f"/dags/{dag_id}").ok:
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout}s")
            time.sleep(1)
        self.session.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=30)

    def run(self, dag_id: str, timeout: float = 900) -> dict[str, Any]:
        """Trigger a run and wait for it; wall time from the trigger to the observed end."""
        started = time.perf_counter()
        answer = self.session.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None},
                                   timeout=30)
        answer.raise_for_status()
        run_id = answer.json()["dag_run_id"]
        while True:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                seconds = time.perf_counter() - started
                break
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout}s")
            time.sleep(0.25)
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000).json()["task_instances"]
        return {"run_id": run_id, "state": run["state"], "seconds": seconds, "task_instances": tis}


@contextmanager
def airflow_cluster(workdir: Path, connections: dict[str, str], regions_dir: Path, floor_batches: int,
                    floor_slots: int) -> Iterator[tuple[Api, Component, Path]]:
    """A temporary Airflow with this benchmark's DAGs and RSS listener; stops what it started."""
    home, dags, plugins = workdir / "airflow", workdir / "dags", workdir / "plugins"
    for folder in (home, dags, plugins):
        folder.mkdir(parents=True, exist_ok=True)
    (dags / "bench_dags.py").write_text(DAG_FILE)
    (plugins / "bench_rss_plugin.py").write_text(PLUGIN_FILE)
    rss_file = workdir / "task_rss.jsonl"
    rss_file.unlink(missing_ok=True)
    port = free_port()
    env = {
        **os.environ,
        **connections,
        **airflow_env(
            home,
            core__executor="LocalExecutor",
            core__dags_folder=str(dags),
            core__plugins_folder=str(plugins),
            core__simple_auth_manager_all_admins="True",
            core__execution_api_server_url=f"http://127.0.0.1:{port}/execution/",
            core__dags_are_paused_at_creation="False",
            api__port=str(port),
            api__base_url=f"http://127.0.0.1:{port}",
            api_auth__jwt_secret=secrets.token_urlsafe(32),
            api__secret_key=secrets.token_urlsafe(32),
            logging__worker_log_server_port=str(free_port()),
            dag_processor__refresh_interval="5",
        ),
        "PHONE_SYNC_REGIONS_DIR": str(regions_dir),
        "BENCH_FLOOR_BATCHES": str(floor_batches),
        "BENCH_RSS_FILE": str(rss_file),
    }
    run = {"env": env, "check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": REPO_ROOT}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], **run)  # type: ignore[call-overload]
    subprocess.run([sys.executable, "-m", "phone_sync.pools"], **run)  # type: ignore[call-overload]
    subprocess.run([sys.executable, "-m", "airflow", "pools", "set", FLOOR_POOL, str(floor_slots),  # type: ignore[call-overload]
                    "bench floor batches"], **run)
    with ExitStack() as stack:
        components = {}
        for name, args in (("api-server", ["api-server", "--port", str(port)]), ("scheduler", ["scheduler"]),
                           ("dag-processor", ["dag-processor"])):
            component = Component(name, args, env, workdir / f"{name}.log")
            stack.callback(component.stop)
            components[name] = component
        api = Api(f"http://127.0.0.1:{port}")
        api.login()
        yield api, components["scheduler"], rss_file


def run_side_by_side(workdir: Path, connections: dict[str, str], regions_dir: Path, dag_id: str,
                     batches: int, slots: int) -> dict[str, Any]:
    """Floor first, then the region's DAG, in one Airflow; RSS per task process for both."""
    with airflow_cluster(workdir, connections, regions_dir, batches, slots) as (api, scheduler, rss_file):
        api.wait_for_dag(FLOOR_DAG_ID)
        api.wait_for_dag(dag_id)
        sampler = RssSampler(scheduler.process.pid)
        sampler.start()
        floor = api.run(FLOOR_DAG_ID)
        region = api.run(dag_id)
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
