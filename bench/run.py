"""``python -m bench.run [--quick]``: the benchmark of issues 6 and 16, side by side in one run.

Stages (each on freshly seeded local servers with FHIR 50 ms and Sheets 100 ms per request and
Google's 60 Sheets requests per minute per user): the article's per-row loop on a sample, the
task bodies in-process, the DAG through ``dag.test()``, the DAG and an empty DAG of the same
shape through a running scheduler (LocalExecutor, then CeleryExecutor with two workers), what a
batch process imports, 100,000 rows through the scheduler, and extract + clean memory.
Prints the table, the per-task profile, the lower bounds and the target verdicts (a missed target
is printed, not an error: the exit status is non-zero only when a stage crashed); writes
``bench/results/<stamp>.json``, the chart ``bench/results/bench.png``, and (with ``--publish``)
``bench/last_run.json`` + ``docs/img/bench.png``.

No stage touches ``~/airflow``: the runner and every process it starts get an ``AIRFLOW_HOME``
under ``bench/results/<stamp>/`` in their environment before anything imports Airflow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway, report, stages
from bench.common import FHIR_LATENCY_MS, SHEETS_LATENCY_MS, SHEETS_QUOTA_PER_MINUTE, bench_config, region_file
from localservers.airflow_env import REPO_ROOT, airflow_env
from localservers.scenario import generate

RESULTS = REPO_ROOT / "bench" / "results"
ALL_STAGES = ("baseline", "inprocess", "dagtest", "scheduler", "imports", "celery", "scale", "memory", "gateway")
QUICK_STAGES = tuple(stage for stage in ALL_STAGES if stage not in ("scale", "gateway"))


def machine() -> str:
    cpus = os.cpu_count() or 0
    mem = 0.0
    try:
        with open("/proc/meminfo") as info:
            mem = int(info.readline().split()[1]) / 2**20
    except OSError:
        pass
    return f"{cpus} CPUS, {mem:.0f} GB RAM, PYTHON {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000 rows, 60-row baseline, 10k memory probe only, no scale stage")
    parser.add_argument("--rows", type=int, help="scenario rows (default 10,000)")
    parser.add_argument("--baseline-rows", type=int, help="rows the article's loop processes (default 400)")
    parser.add_argument("--memory-rows", type=int, nargs="*", help="extract+clean probes (default 10,000 100,000)")
    parser.add_argument("--scale-rows", type=int, default=100_000, help="rows of the scale stage (default 100,000)")
    parser.add_argument("--import-repeats", type=int, default=3, help="best of N for each marginal import cost")
    parser.add_argument("--stages", nargs="*", choices=ALL_STAGES, help="default: all (--quick: all but scale)")
    parser.add_argument("--publish", action="store_true", help="also write bench/last_run.json and docs/img/bench.png")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the scheduler stages (10,000 and 100,000 rows) N times; the median ratio is judged")
    parser.add_argument("--gateway-batch-size", type=int, default=gateway.BATCH_SIZE,
                        help=f"rows per batch in the gateway stage (default {gateway.BATCH_SIZE}, as "
                        "docs/operations.md advises behind such a gateway; 100 shows the default's cost)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where runs are written (default bench/results)")
    args = parser.parse_args(argv)
    rows = args.rows or (1_000 if args.quick else 10_000)
    sample = args.baseline_rows or (60 if args.quick else 400)
    memory_rows = args.memory_rows or ([10_000] if args.quick else [10_000, 100_000])

    chosen = args.stages or list(QUICK_STAGES if args.quick else ALL_STAGES)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = args.results / stamp
    # Before anything here imports Airflow, and inherited by every server and child: never ~/airflow.
    os.environ.update(airflow_env(workdir / "airflow"))
    config = bench_config(workdir / "regions")
    path = region_file(workdir / "regions")
    scenario = generate(rows, seed=args.seed)
    print(f"Benchmark {stamp}: {rows:,} rows, FHIR {FHIR_LATENCY_MS} ms, Sheets {SHEETS_LATENCY_MS} ms and "
          f"{SHEETS_QUOTA_PER_MINUTE}/min per user; {machine()}", flush=True)
    results: dict[str, Any] = {"started": stamp, "rows": rows, "baseline_sample": sample, "machine": machine(),
                               "latency_ms": {"fhir": FHIR_LATENCY_MS, "sheets": SHEETS_LATENCY_MS},
                               "sheets_quota_per_minute": SHEETS_QUOTA_PER_MINUTE, "quick": args.quick}
    timings: dict[str, float] = {}
    for stage in chosen:
        started = time.perf_counter()
        print(f"- {stage} ...", flush=True)
        try:
            run_stage(stage, results, config, scenario, path, workdir, sample, memory_rows, args)
        except Exception as exc:  # one broken stage must not hide the others' figures
            results.setdefault("errors", {})[stage] = repr(exc)
            print(f"  FAILED: {exc!r} (logs under {workdir}/{stage}*)", flush=True)
        timings[stage] = round(time.perf_counter() - started, 1)
        print(f"  done in {timings[stage]:.0f} s", flush=True)
    results["stage_seconds"] = timings
    finish(results, workdir, args.publish)
    return 1 if results.get("errors") else 0


def run_stage(stage: str, results: dict[str, Any], config: Any, scenario: Any, path: Path, workdir: Path,
              sample: int, memory_rows: list[int], args: argparse.Namespace) -> None:
    if stage == "baseline":
        results["baseline"] = stages.baseline(config, scenario, path, workdir / "baseline", sample)
    elif stage == "inprocess":
        results["inprocess"] = stages.inprocess(config, scenario, path, workdir / "inprocess")
    elif stage == "dagtest":
        results["dagtest"] = stages.dagtest(config, scenario, path, workdir / "dagtest")
    elif stage == "scheduler":
        results["scheduler"] = repeated(args.repeat, lambda n: stages.scheduler(config, scenario, path,
                                                                               workdir / f"scheduler{n}"))
    elif stage == "imports":
        from bench.imports import profile_imports

        batch = ((results.get("scheduler") or {}).get("tasks") or {}).get("process_batch") or {}
        results["imports"] = profile_imports(path.parent, airflow_env(workdir / "imports" / "airflow"),
                                             repeats=args.import_repeats, batch_modules=batch.get("modules"))
    elif stage == "celery":
        results["celery"] = stages.celery(config, scenario, path, workdir / "celery")
    elif stage == "scale":
        results["scale"] = repeated(args.repeat, lambda n: stages.scale(config, path, workdir / f"scale{n}",
                                                                        args.scale_rows, args.seed))
    elif stage == "memory":
        results["memory"] = [stages.memory(config, path, workdir / f"memory-{n}", n) for n in memory_rows]
    elif stage == "gateway":
        results["gateway"] = gateway.gateway(config, scenario, path, workdir / "gateway", args.gateway_batch_size)


def repeated(times: int, run: Any) -> dict[str, Any]:
    """``run(n)`` ``times`` times on fresh servers; the run whose ratio to its floor is the median stands for
    all (the machine is shared and noisy), with every run's figures under ``repeats``."""
    runs = []
    for n in range(max(1, times)):
        if times > 1:
            print(f"  run {n + 1} of {times}", flush=True)
        runs.append(run(n if times > 1 else ""))
    ratios = [r["seconds"] / r["floor"]["seconds"] for r in runs]
    median = sorted(range(len(runs)), key=lambda i: ratios[i])[len(runs) // 2]
    result = runs[median]
    result["repeats"] = [{"seconds": round(r["seconds"], 1), "floor_seconds": round(r["floor"]["seconds"], 1),
                          "ratio": round(ratio, 3)} for r, ratio in zip(runs, ratios, strict=True)]
    return result


def finish(results: dict[str, Any], workdir: Path, publish: bool) -> None:
    """Table, verdicts, JSON and chart; with ``publish`` the committed copies too."""
    results["table"] = report.rows_table(results)
    results["targets"] = report.verdicts(results)
    if results.get("gateway"):
        results["targets"].append(gateway.verdict(results["gateway"]))
    print("\n" + report.format_table(results["table"]))
    if results.get("baseline"):
        b = results["baseline"]
        print(f"\nArticle loop on {b['rows']} rows: {b['status_writes_failed']} status writes refused "
              f"(Sheets answered 429 {b['sheets_throttled']} times), {b['statuses_lost']} statuses missing from the "
              f"sheet, {b['wrong_numbers_sent']} patients left with a number other than their rows' "
              "(E-notation, lost zeros, an older duplicate row written last).")
    runs = [results[key] for key in report.AIRFLOW_RUNS if results.get(key)]
    if runs:
        print("\nEnd to end beside its lower bounds:\n" + "\n".join(report.format_bounds(r) for r in runs))
    for run in runs:
        print(f"\nWhere each task process's time goes, {run['name']} ({run['rows']:,} rows), "
              "mean seconds per process:\n" + report.format_profile(run))
    if results.get("imports"):
        print("\n" + report.format_imports(results["imports"]))
    if runs:
        print("\nMetadata database, XCom and requests per run:\n" + report.format_metadata(results))
    if results.get("memory"):
        print("\nExtract, clean and write-back, each in its own process as in Airflow:\n"
              + report.format_memory(results["memory"]))
    if results.get("gateway"):
        print("\nThe all-refusals gateway beside its lower bound:\n" + gateway.format_gateway(results["gateway"]))
    print("\nTargets (a miss is a finding, not an error):\n" + report.format_verdicts(results["targets"]))

    out = workdir.parent / f"{results['started']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    png = workdir.parent / "bench.png"
    drawn = report.chart(png, results, f"{machine()}; FHIR {FHIR_LATENCY_MS} ms, Sheets {SHEETS_LATENCY_MS} ms "
                                       "per request")
    print(f"\nWrote {out}" + (f" and {png}" if drawn else ""))
    if publish and drawn:
        (REPO_ROOT / "bench" / "last_run.json").write_text(json.dumps(_summary(results), indent=2, default=str) + "\n")
        (REPO_ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, REPO_ROOT / "docs" / "img" / "bench.png")
        print("Published bench/last_run.json and docs/img/bench.png")
    for stage in report.AIRFLOW_RUNS:
        for logs in workdir.glob(f"{stage}*/airflow/logs"):
            shutil.rmtree(logs, ignore_errors=True)


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    """What is committed: the table, the verdicts, the memory probes and the setup, no raw logs."""
    keep = ("started", "rows", "baseline_sample", "machine", "latency_ms", "sheets_quota_per_minute", "quick",
            "stage_seconds", "table", "targets", "memory")
    summary = {key: results[key] for key in keep if key in results}
    for key in ("baseline", *report.PROJECT, "gateway"):
        if key in results:
            summary[key] = {k: v for k, v in results[key].items() if k not in ("results",)}
            for run in (summary[key], summary[key].get("floor") or {}):  # the floor's processes too
                for task in run.get("tasks", {}).values():
                    task.pop("modules", None)
    if "imports" in results:
        summary["imports"] = {k: v for k, v in results["imports"].items() if k != "modules"}
    return summary


if __name__ == "__main__":
    sys.exit(main())
