"""``python -m bench.child STAGE SPEC OUT``: one benchmark stage in a fresh interpreter.

A fresh process per stage makes its peak RSS (``ru_maxrss``) the stage's own, not the sum of
everything the runner imported before. The runner starts and seeds the servers; the spec says
where they are (connections come as ``AIRFLOW_CONN_*`` environment variables).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import current_rss_mib
from bench.rss_listener import peak_rss_mib


class FakeTaskInstance:
    """Enough of a TaskInstance for the task bodies: XComs kept here, serialised as Airflow would."""

    def __init__(self) -> None:
        self.xcoms: dict[tuple[str, int | None], Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(key, None)] = json.loads(json.dumps(value))

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int | None = None) -> Any:
        return self.xcoms.get((key, map_indexes))


class FakeDagRun:
    def __init__(self, run_after: datetime) -> None:
        self.run_after = run_after


def _context(spec: dict[str, Any], ti: FakeTaskInstance) -> dict[str, Any]:
    moment = datetime.fromisoformat(spec["logical_date"])
    return {"ti": ti, "logical_date": moment, "dag_run": FakeDagRun(moment), "run_id": "bench__inprocess"}


def _xcom(value: Any) -> Any:
    """A task's return value goes through JSON on its way to XCom: count that memory too."""
    return json.loads(json.dumps(value))


def stage_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.baseline import run_article_loop

    result = run_article_loop(**spec["loop"])
    return {
        "records": result.records,
        "seconds": result.seconds,
        "results": result.results,
        "status_writes_failed": result.status_writes_failed,
        "sent": {str(k): v for k, v in result.sent.items()},
        "attempted": result.attempted,
    }


def stage_inprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """The task bodies in one process, batches on threads as the pool would run them: no Airflow."""
    from phone_sync.config import load_region
    from phone_sync.contracts import XComKey
    from phone_sync.pipeline import tasks

    config = load_region(Path(spec["region_file"]))
    ti = FakeTaskInstance()
    context = _context(spec, ti)
    started = time.perf_counter()
    extracted = _xcom(tasks.extract_rows(config, context))
    batches = _xcom(tasks.clean_phones(config, extracted, context))
    fhir_started = time.perf_counter()
    with ThreadPoolExecutor(config.max_parallel_batches) as pool:
        results = list(pool.map(lambda b: _xcom(tasks.process_batch(config, b, context)), batches))
    fhir_seconds = time.perf_counter() - fhir_started
    decided = ti.xcoms[(XComKey.DECIDED, None)]
    written = _xcom(tasks.write_back_statuses(config, decided, batches, results, context))
    report = tasks.run_report(config, written, context)
    return {
        "seconds": time.perf_counter() - started,
        "fhir_seconds": fhir_seconds,
        "batches": len(batches),
        "report": report,
    }


def stage_dagtest(spec: dict[str, Any]) -> dict[str, Any]:
    """The whole DAG through ``dag.test()`` (one process, tasks in turn)."""
    import subprocess

    from localservers.airflow_env import airflow_env

    env = airflow_env(Path(spec["airflow_home"]))
    os.environ.update(env)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=dict(os.environ), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import pendulum

    from phone_sync.config import load_region
    from phone_sync.dag_factory import build_region_dag

    config = load_region(Path(spec["region_file"]))
    dag = build_region_dag(config)
    before = current_rss_mib()
    started = time.perf_counter()
    dag_run = dag.test(logical_date=pendulum.parse(spec["logical_date"]))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "state": str(dag_run.state), "rss_before_mib": before}


def stage_extract(spec: dict[str, Any]) -> dict[str, Any]:
    """``extract_rows`` as its task process runs it, its XCom written to a file for ``clean``."""
    from phone_sync.config import load_region
    from phone_sync.pipeline import tasks

    config = load_region(Path(spec["region_file"]))
    ti = FakeTaskInstance()
    floor = current_rss_mib()
    started = time.perf_counter()
    text = json.dumps(tasks.extract_rows(config, _context(spec, ti)))
    seconds = time.perf_counter() - started
    Path(spec["xcom_file"]).write_text(text)
    return {"seconds": seconds, "import_rss_mib": floor, "xcom_bytes": len(text)}


def stage_clean(spec: dict[str, Any]) -> dict[str, Any]:
    """``clean_phones`` on the extract's XCom, as its own task process runs it."""
    from phone_sync.config import load_region
    from phone_sync.pipeline import tasks

    config = load_region(Path(spec["region_file"]))
    ti = FakeTaskInstance()
    floor = current_rss_mib()
    started = time.perf_counter()
    extracted = json.loads(Path(spec["xcom_file"]).read_text())
    batches = json.dumps(tasks.clean_phones(config, extracted, _context(spec, ti)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "import_rss_mib": floor, "xcom_bytes": len(batches)}


STAGES = {
    "baseline": stage_baseline,
    "inprocess": stage_inprocess,
    "dagtest": stage_dagtest,
    "extract": stage_extract,
    "clean": stage_clean,
}


def main(argv: list[str]) -> int:
    stage, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    result = STAGES[stage](spec)
    result["peak_rss_mib"] = peak_rss_mib()
    result["finished"] = datetime.now(UTC).isoformat()
    Path(out_path).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
