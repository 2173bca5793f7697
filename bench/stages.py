"""The benchmark's stages as the runner sees them: seed servers, run a child, count what happened."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import (
    bench_region,
    connections,
    request_counts,
    run_child,
    sealer,
    statuses_lost,
)
from localservers import celery_services
from localservers.process import ServerProcess
from localservers.scenario import Scenario, generate
from localservers.stack import conn_env_name, seed_sheet
from phone_sync.config import RegionConfig
from phone_sync.crypto import new_key
from phone_sync.phones import canonical


def logical_date(scenario: Scenario) -> str:
    return f"{scenario.run_date.isoformat()}T01:00:00+07:00"


def baseline(config: RegionConfig, scenario: Scenario, region_file: Path, workdir: Path, sample: int) -> dict[str, Any]:
    """The article's loop over the first ``sample`` usable rows of the same sheet."""
    with bench_region(config, scenario, workdir / "servers", report_tab=False) as region:
        columns = config.sheets.columns
        spec = {"loop": {
            "keyfile": region.keyfile, "sheets_url": region.sheets.url,
            "spreadsheet_id": config.sheets.spreadsheet_id, "worksheet_title": config.sheets.worksheet,
            "identifier_header": columns.identifier, "phone_header": columns.phone, "status_header": columns.status,
            "fhir_url": region.fhir.url, "fhir_token": region.fhir_token, "limit": sample,
        }}
        out = run_child("baseline", spec, workdir)
        counts = request_counts(region)
        rows = set(out["attempted"])
        lost = statuses_lost(region, scenario, rows)
    wrong = sum(
        1 for row, phone in out["sent"].items()
        if canonical(phone) != scenario.expected[int(row)].phone
    )
    records = out["records"]
    return {
        "name": "article per-row loop",
        "rows": records,
        "seconds": out["seconds"],
        "rows_per_second": records / out["seconds"],
        "wall_10k_seconds": 10_000 * out["seconds"] / records,
        "fhir_requests": counts["fhir"],
        "sheets_requests": counts["sheets"],
        "sheets_throttled": counts["sheets_throttled"],
        "statuses_lost": lost,
        "status_writes_failed": out["status_writes_failed"],
        "wrong_numbers_sent": wrong,
        "task_rss_mib": {"loop process": round(out["peak_rss_mib"], 1)},
        "results": out["results"],
    }


def inprocess(config: RegionConfig, scenario: Scenario, region_file: Path, workdir: Path) -> dict[str, Any]:
    """The task bodies without Airflow: what the batching itself costs. Its FHIR connection is the static
    bearer: the shared OAuth2 token lives in an Airflow Variable, which only a task process can reach."""
    with bench_region(config, scenario, workdir / "servers") as region:
        spec = {"region_file": str(region_file), "logical_date": logical_date(scenario)}
        out = run_child("inprocess", spec, workdir, env=region.connections)
        counts = request_counts(region)
        lost = statuses_lost(region, scenario)
    return _project_result("batch logic in-process (no Airflow)", scenario, out["seconds"], counts, lost,
                           {"one process": round(out["peak_rss_mib"], 1)}, extra={
                               "fhir_seconds": out["fhir_seconds"], "batches": out["batches"]})


def dagtest(config: RegionConfig, scenario: Scenario, region_file: Path, workdir: Path) -> dict[str, Any]:
    with bench_region(config, scenario, workdir / "servers") as region:
        spec = {"region_file": str(region_file), "logical_date": logical_date(scenario)}
        out = run_child("dagtest", spec, workdir, env=connections(region))
        counts = request_counts(region)
        lost = statuses_lost(region, scenario)
    return _project_result("whole DAG, dag.test()", scenario, out["seconds"], counts, lost,
                           {"dag.test process": round(out["peak_rss_mib"], 1)}, extra={"state": out["state"]})


def _project_result(name: str, scenario: Scenario, seconds: float, counts: dict[str, Any], lost: int,
                    rss: dict[str, float], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    rows = len(scenario.rows)
    return {
        "name": name,
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "wall_10k_seconds": 10_000 * seconds / rows,
        "fhir_requests": counts["fhir"],
        "fhir_tokens": counts["fhir_tokens"],
        "sheets_requests": counts["sheets"],
        "sheets_throttled": counts["sheets_throttled"],
        "sheets_by_method": counts["sheets_by_method"],
        "sheets_busiest_minute": counts["sheets_busiest_minute"],
        "statuses_lost": lost,
        "task_rss_mib": rss,
        **(extra or {}),
    }


def memory(config: RegionConfig, region_file: Path, workdir: Path, rows: int) -> dict[str, Any]:
    """Peak RSS of the extract, clean and write-back task processes for ``rows`` sheet rows; write-back writes
    every status (as when no batch found room in the Sheets quota to write its own)."""
    from bench.common import server_args

    scenario = generate(rows, seed=11)
    _, sheets_args = server_args()
    workdir.mkdir(parents=True, exist_ok=True)
    with ServerProcess("localservers.sheets", sheets_args, health_path="/_emulator/health",
                       log_path=workdir / "sheets.log") as sheets:
        seed_sheet(sheets.url, config, scenario)
        from localservers.sheets.keyfile import demo_keyfile

        keyfile = demo_keyfile(token_uri=f"{sheets.url}/token", client_email="phone-sync-memory@local.test")
        env = {
            conn_env_name(config.sheets.conn_id): json.dumps({"conn_type": "google_cloud_platform", "extra": {
                "keyfile_dict": keyfile, "sheets_api_url": sheets.url}}),
            conn_env_name(config.phi_key_conn_id): json.dumps({"conn_type": "generic", "password": new_key()}),
            # clean_phones readies the run's FHIR token; a static bearer needs none (and no server here).
            conn_env_name(config.fhir.conn_id): json.dumps({"conn_type": "fhir", "host": "http://127.0.0.1:9",
                                                            "password": "memory-probe"}),
        }
        spec = {"region_file": str(region_file), "logical_date": logical_date(scenario),
                "xcom_db": str(workdir / "xcom.sqlite")}
        (workdir / "xcom.sqlite").unlink(missing_ok=True)
        extract = run_child("extract", spec, workdir, env=env)
        clean = run_child("clean", spec, workdir, env=env)
        run_child("unwritten_results", spec, workdir, env=env)
        write_back = run_child("write_back", spec, workdir, env=env)
    batches = math.ceil(sum(1 for e in scenario.expected.values() if e.kind != "blank") / config.batch_size)
    return {
        "rows": rows,
        "batches_about": batches,
        "extract_peak_rss_mib": round(extract["peak_rss_mib"], 1),
        "extract_import_rss_mib": round(extract["import_rss_mib"], 1),
        "extract_seconds": round(extract["seconds"], 2),
        "extract_xcom_mib": round(extract["xcom_bytes"] / 2**20, 2),
        "clean_peak_rss_mib": round(clean["peak_rss_mib"], 1),
        "clean_import_rss_mib": round(clean["import_rss_mib"], 1),
        "clean_seconds": round(clean["seconds"], 2),
        "clean_xcom_mib": round(clean["xcom_bytes"] / 2**20, 2),
        "write_back_peak_rss_mib": round(write_back["peak_rss_mib"], 1),
        "write_back_import_rss_mib": round(write_back["import_rss_mib"], 1),
        "write_back_seconds": round(write_back["seconds"], 2),
        "write_back_statuses": write_back["written"],
    }


def scheduler(config: RegionConfig, scenario: Scenario, region_file: Path, workdir: Path, *,
              name: str = "whole DAG, scheduler (LocalExecutor)", executor: str = "LocalExecutor",
              database_url: str | None = None, broker_url: str | None = None,
              airflow_config: dict[str, str] | None = None, fhir_faults: dict[str, Any] | None = None,
              ) -> dict[str, Any]:
    """The region's DAG and its empty twin through a running Airflow, one after the other; ``fhir_faults``
    set on the FHIR server first (e.g. the gateway stage's refusals)."""
    from bench.scheduler import run_side_by_side

    with bench_region(config, scenario, workdir / "servers") as region:
        if fhir_faults:
            region.fhir_faults(**fhir_faults)
        batches = batch_count(config, scenario)
        out = run_side_by_side(workdir, connections(region), region_file.parent, config.dag_id, batches,
                               sealer=sealer(region),
                               server_urls={"fhir": region.fhir.url, "sheets": region.sheets.url},
                               executor=executor, database_url=database_url, broker_url=broker_url,
                               airflow_config=airflow_config)
        counts = request_counts(region)
        timeline = fhir_timeline(region.fhir_log(), out["region"], config.fhir_requests_per_second,
                                 config.max_parallel_batches)
        lost = statuses_lost(region, scenario)
    run, floor = out["region"], out["floor"]
    result = _project_result(name, scenario, run["seconds"], counts, lost, _task_rss(run), extra={
        "executor": executor, "state": run["state"], "task_states": run["task_states"], "tasks": run["tasks"],
        "batches": batches, "db_growth_mib": run["db_growth_mib"], "xcom": run["xcom"],
        "airflow_config": airflow_config or {},
        # The lower bound the region's agreed rate sets: every FHIR request (tokens too) paced at that rate.
        "fhir_bound_seconds": (counts["fhir"] + counts["fhir_tokens"]) / config.fhir_requests_per_second,
        "fhir_requests_per_second": config.fhir_requests_per_second,
        "fhir_by_interaction": counts["fhir_by_interaction"],
        "fhir_timeline": timeline,
    })
    result["floor"] = {
        "name": f"empty DAG, same shape ({executor})",
        "seconds": floor["seconds"], "state": floor["state"], "batches": batches,
        "task_rss_mib": _task_rss(floor), "tasks": floor["tasks"], "db_growth_mib": floor["db_growth_mib"],
    }
    return result


def fhir_timeline(log: list[dict[str, Any]], run: dict[str, Any], rate: float, slots: int) -> dict[str, float] | None:
    """Where a rate-bound run's wall time went: before its first FHIR request, the requests at the agreed rate,
    the rate left unused between its first and last request, and after its last; ``slots_empty``: the rate of
    the slots that stood without a batch from the first batch's start to the last one's (at most what that
    cost: the running batches take up part of it)."""
    moments = sorted(entry["at"] for entry in log)
    if not moments or run.get("queued_at") is None or run.get("ended_at") is None:
        return None
    first, last = moments[0], moments[-1]
    return {
        "before_first_request": round(first - run["queued_at"], 1),
        "at_rate": round(len(moments) / rate, 1),
        "rate_unused": round(last - first - (len(moments) - 1) / rate, 1),
        "after_last_request": round(run["ended_at"] - last, 1),
        "slots_empty": round(_slots_empty(run.get("batch_spans", []), slots), 1),
    }


def _slots_empty(spans: list[tuple[float, float]], slots: int) -> float:
    """Seconds of the whole rate lost to slots without a running batch, while batches were still to start."""
    if not spans:
        return 0.0
    begin, end = spans[0][0], spans[-1][0]
    events = sorted([(start, 1) for start, _ in spans] + [(stop, -1) for _, stop in spans])
    empty, running, at = 0.0, 0, begin
    for moment, change in events:
        clipped = min(max(moment, begin), end)
        empty += (clipped - at) * max(0, slots - running)
        at, running = clipped, running + change
    return empty / slots


def _task_rss(run: dict[str, Any]) -> dict[str, float]:
    return {task: max(v["ru_maxrss_mib"], v["sampled_mib"]) for task, v in run["tasks"].items()}


def scale(config: RegionConfig, region_file: Path, workdir: Path, rows: int, seed: int) -> dict[str, Any]:
    """``rows`` (100,000) rows through the LocalExecutor scheduler, within Airflow's default ``[core]
    max_map_length`` (1024): about 930 batches fit; more pending rows would be queued for the next run."""
    scenario = generate(rows, seed=seed)
    return scheduler(config, scenario, region_file, workdir, name=f"whole DAG, scheduler, {rows:,} rows")


def celery(config: RegionConfig, scenario: Scenario, region_file: Path, workdir: Path) -> dict[str, Any]:
    """The same run on the CeleryExecutor with two workers: PostgreSQL and Redis on loopback, a database of its own."""
    for service in celery_services.SERVICES:
        if problem := celery_services.not_listening(service):
            raise RuntimeError(problem)
    with celery_services.postgres_database("phone_sync_bench") as database_url:
        return scheduler(config, scenario, region_file, workdir, name="whole DAG, CeleryExecutor, 2 workers",
                         executor="CeleryExecutor", database_url=database_url,
                         broker_url=celery_services.redis_url())


def batch_count(config: RegionConfig, scenario: Scenario) -> int:
    """How many batches the pipeline will map over: its own cleaning and batching, run here."""
    from datetime import date

    from phone_sync.contracts import ExtractedRow
    from phone_sync.pipeline.batching import clean_and_batch

    rows = [
        ExtractedRow(
            row=index,
            identifier=str(row[0]),
            phone=row[2] if row[2] != "" else None,
            feed_date=date.fromisoformat(row[3]) if row[3] else None,
        )
        for index, row in enumerate(scenario.rows, start=2) if row[0] != "" or row[2] != ""
    ]
    return len(clean_and_batch(rows, config.phone, scenario.run_date, config.batch_size).batches)
