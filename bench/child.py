"""``python -m bench.child STAGE SPEC OUT``: one benchmark stage in a fresh interpreter.

A fresh process per stage makes its peak RSS (``ru_maxrss``) the stage's own, not the sum of
everything the runner imported before. The runner starts and seeds the servers; the spec says
where they are (connections come as ``AIRFLOW_CONN_*`` environment variables).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procstats import current_rss_mib, peak_rss_mib


class FakeTaskInstance:
    """Enough of a TaskInstance for the task bodies: XComs in a shared store, serialised as Airflow would."""

    def __init__(self, store: dict[tuple[str, str, int], Any], task_id: str, map_index: int = -1) -> None:
        self.store, self.task_id, self.map_index = store, task_id, map_index

    def xcom_push(self, key: str, value: Any) -> None:
        self.store[(self.task_id, key, self.map_index)] = _xcom(value)

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: int | None = None) -> Any:
        if map_indexes is not None:
            return self.store.get((task_ids, key, map_indexes))
        found = sorted((index, value) for (task, k, index), value in self.store.items() if (task, k) == (task_ids, key))
        return _as_pulled(found)


def _as_pulled(found: list[tuple[int, Any]]) -> Any:
    """Every map index's value, as Airflow hands them to a task: a lone unmapped value unwrapped, else a list."""
    if len(found) == 1 and found[0][0] == -1:
        return found[0][1]
    return [value for _, value in found]


class DiskTaskInstance:
    """A TaskInstance whose XComs live in a SQLite file, as in Airflow's metadata database: each task process
    of the memory stage pulls (and parses) only what it asks for, when it asks."""

    def __init__(self, path: str, task_id: str, map_index: int = -1) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS xcom (task_id TEXT, key TEXT, map_index INT, value TEXT)")
        self.task_id, self.map_index = task_id, map_index

    def xcom_push(self, key: str, value: Any) -> None:
        self.db.execute("INSERT INTO xcom VALUES (?, ?, ?, ?)", (self.task_id, key, self.map_index, json.dumps(value)))

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: int | None = None) -> Any:
        query = "SELECT map_index, value FROM xcom WHERE task_id = ? AND key = ?"
        if map_indexes is not None:
            row = self.db.execute(query + " AND map_index = ?", (task_ids, key, map_indexes)).fetchone()
            return None if row is None else json.loads(row[1])
        found = self.db.execute(query + " ORDER BY map_index", (task_ids, key)).fetchall()
        return _as_pulled([(index, json.loads(value)) for index, value in found])


class FakeDagRun:
    def __init__(self, run_after: datetime) -> None:
        self.run_after = run_after
        self.start_date = datetime.now(UTC)


def _context(spec: dict[str, Any], ti: Any, dag_run: FakeDagRun | None = None) -> dict[str, Any]:
    moment = datetime.fromisoformat(spec["logical_date"])
    return {"ti": ti, "logical_date": moment, "dag_run": dag_run or FakeDagRun(moment), "run_id": "bench__inprocess"}


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
    from phone_sync.contracts import TaskId
    from phone_sync.pipeline import tasks
    from phone_sync.regions import load_region

    config = load_region(Path(spec["region_file"]))
    store: dict[tuple[str, str, int], Any] = {}
    dag_run = FakeDagRun(datetime.fromisoformat(spec["logical_date"]))

    def run(task_id: TaskId, body: Any, *args: Any, map_index: int = -1) -> Any:
        ti = FakeTaskInstance(store, task_id, map_index)
        result = _xcom(body(config, *args, _context(spec, ti, dag_run)))
        ti.xcom_push("return_value", result)
        return result

    started = time.perf_counter()
    extracted = run(TaskId.EXTRACT, tasks.extract_rows)
    batches = run(TaskId.CLEAN, tasks.clean_phones, extracted)
    fhir_started = time.perf_counter()
    with ThreadPoolExecutor(config.max_parallel_batches) as pool:
        list(pool.map(lambda i: run(TaskId.BATCH, tasks.process_batch, batches[i], map_index=i), range(len(batches))))
    fhir_seconds = time.perf_counter() - fhir_started
    run(TaskId.WRITE_BACK, tasks.write_back_statuses)
    report = run(TaskId.REPORT, tasks.run_report)
    return {
        "seconds": time.perf_counter() - started,
        "fhir_seconds": fhir_seconds,
        "batches": len(batches),
        "report": report,
    }


def stage_dagtest(spec: dict[str, Any]) -> dict[str, Any]:
    """The whole DAG through ``dag.test()`` (one process, tasks in turn)."""
    import subprocess

    # AIRFLOW_HOME came with this process's environment (bench.common.run_child), before any import of Airflow.
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import pendulum

    from phone_sync.dag_factory import build_region_dag
    from phone_sync.regions import load_region

    config = load_region(Path(spec["region_file"]))
    dag = build_region_dag(config)
    before = current_rss_mib()
    started = time.perf_counter()
    dag_run = dag.test(logical_date=pendulum.parse(spec["logical_date"]))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "state": str(dag_run.state), "rss_before_mib": before}


def stage_extract(spec: dict[str, Any]) -> dict[str, Any]:
    """``extract_rows`` as its task process runs it; its XComs go to the file the next stages read."""
    from phone_sync.contracts import TaskId
    from phone_sync.pipeline import tasks
    from phone_sync.regions import load_region

    config = load_region(Path(spec["region_file"]))
    ti = DiskTaskInstance(spec["xcom_db"], TaskId.EXTRACT)
    floor = current_rss_mib()
    started = time.perf_counter()
    text = json.dumps(tasks.extract_rows(config, _context(spec, ti)))
    seconds = time.perf_counter() - started
    ti.xcom_push("return_value", json.loads(text))
    return {"seconds": seconds, "import_rss_mib": floor, "xcom_bytes": len(text)}


def stage_clean(spec: dict[str, Any]) -> dict[str, Any]:
    """``clean_phones`` on the extract's XCom, as its own task process runs it."""
    from phone_sync.contracts import TaskId
    from phone_sync.pipeline import tasks
    from phone_sync.regions import load_region

    config = load_region(Path(spec["region_file"]))
    ti = DiskTaskInstance(spec["xcom_db"], TaskId.CLEAN)
    floor = current_rss_mib()
    started = time.perf_counter()
    extracted = ti.xcom_pull(TaskId.EXTRACT, map_indexes=-1)
    indexes = tasks.clean_phones(config, extracted, _context(spec, ti))
    seconds = time.perf_counter() - started
    ti.xcom_push("return_value", indexes)
    return {"seconds": seconds, "import_rss_mib": floor, "xcom_bytes": len(json.dumps(indexes))}


def stage_unwritten_results(spec: dict[str, Any]) -> dict[str, Any]:
    """Each batch's result as if every patient was updated and no batch found room in the Sheets quota to
    write its statuses (the most write-back can have to write): no FHIR server needed."""
    from phone_sync.contracts import BatchResult, TaskId
    from phone_sync.crypto import sealer_for
    from phone_sync.outcomes import Outcome, Status
    from phone_sync.pipeline.run_xcom import RunXCom
    from phone_sync.regions import load_region

    config = load_region(Path(spec["region_file"]))
    sealer = sealer_for(config.phi_key_conn_id)
    xcom = RunXCom(DiskTaskInstance(spec["xcom_db"], TaskId.BATCH), sealer)
    for ref in xcom.refs():
        batch = xcom.batch(ref.index)
        assert batch is not None
        statuses = [Status(row=r.row, identifier=r.identifier, outcome=Outcome.UPDATED, batch=ref.index)
                    for r in batch.rows]
        result = BatchResult(index=ref.index, statuses=statuses, counts={Outcome.UPDATED: len(statuses)},
                             left=[s.row for s in statuses], stats={"requests_search": 1.0}, sheets_requests=0)
        DiskTaskInstance(spec["xcom_db"], TaskId.BATCH, ref.index).xcom_push("return_value", result.to_xcom(sealer))
    return {"batches": len(xcom.refs())}


def stage_write_back(spec: dict[str, Any]) -> dict[str, Any]:
    """``write_back_statuses`` as its task process runs it, on the XComs of the stages before."""
    from phone_sync.contracts import TaskId
    from phone_sync.pipeline import tasks
    from phone_sync.regions import load_region

    config = load_region(Path(spec["region_file"]))
    ti = DiskTaskInstance(spec["xcom_db"], TaskId.WRITE_BACK)
    floor = current_rss_mib()
    started = time.perf_counter()
    result = tasks.write_back_statuses(config, _context(spec, ti))
    return {"seconds": time.perf_counter() - started, "import_rss_mib": floor, "written": result["written"]}


STAGES = {
    "baseline": stage_baseline,
    "inprocess": stage_inprocess,
    "dagtest": stage_dagtest,
    "extract": stage_extract,
    "clean": stage_clean,
    "unwritten_results": stage_unwritten_results,
    "write_back": stage_write_back,
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
