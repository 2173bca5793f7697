"""``python -m bench.run [--quick]``: the benchmark of issue 6, side by side in one run.

Stages (each on freshly seeded local servers with FHIR 50 ms and Sheets 100 ms per request and
Google's 60 Sheets requests per minute per user): the article's per-row loop on a sample, the
task bodies in-process, the DAG through ``dag.test()``, the DAG and an empty DAG of the same
shape through a running scheduler, and extract + clean memory at 10,000 and 100,000 rows.
Prints a table and the target verdicts; writes ``bench/results/<stamp>.json``, the chart
``bench/results/bench.png``, and (with ``--publish``) ``bench/last_run.json`` + ``docs/img/bench.png``.
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

from bench import report, stages
from bench.common import FHIR_LATENCY_MS, SHEETS_LATENCY_MS, SHEETS_QUOTA_PER_MINUTE, bench_config, region_file
from localservers.airflow_env import REPO_ROOT
from localservers.scenario import generate

RESULTS = REPO_ROOT / "bench" / "results"
ALL_STAGES = ("baseline", "inprocess", "dagtest", "scheduler", "memory")


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
    parser.add_argument("--quick", action="store_true", help="1,000 rows, 60-row baseline, 10k memory probe only")
    parser.add_argument("--rows", type=int, help="scenario rows (default 10,000)")
    parser.add_argument("--baseline-rows", type=int, help="rows the article's loop processes (default 400)")
    parser.add_argument("--memory-rows", type=int, nargs="*", help="extract+clean probes (default 10,000 100,000)")
    parser.add_argument("--stages", nargs="*", choices=ALL_STAGES, default=list(ALL_STAGES))
    parser.add_argument("--publish", action="store_true", help="also write bench/last_run.json and docs/img/bench.png")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows = args.rows or (1_000 if args.quick else 10_000)
    sample = args.baseline_rows or (60 if args.quick else 400)
    memory_rows = args.memory_rows or ([10_000] if args.quick else [10_000, 100_000])

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = RESULTS / stamp
    config = bench_config(workdir / "regions")
    path = region_file(workdir / "regions")
    scenario = generate(rows, seed=args.seed)
    print(f"Benchmark {stamp}: {rows:,} rows, FHIR {FHIR_LATENCY_MS} ms, Sheets {SHEETS_LATENCY_MS} ms and "
          f"{SHEETS_QUOTA_PER_MINUTE}/min per user; {machine()}", flush=True)
    results: dict[str, Any] = {"started": stamp, "rows": rows, "baseline_sample": sample, "machine": machine(),
                               "latency_ms": {"fhir": FHIR_LATENCY_MS, "sheets": SHEETS_LATENCY_MS},
                               "sheets_quota_per_minute": SHEETS_QUOTA_PER_MINUTE, "quick": args.quick}
    timings: dict[str, float] = {}
    for stage in args.stages:
        started = time.perf_counter()
        print(f"- {stage} ...", flush=True)
        try:
            run_stage(stage, results, config, scenario, path, workdir, sample, memory_rows)
        except Exception as exc:  # one broken stage must not hide the others' figures
            results.setdefault("errors", {})[stage] = repr(exc)
            print(f"  FAILED: {exc!r} (logs under {workdir.relative_to(REPO_ROOT)}/{stage}*)", flush=True)
        timings[stage] = round(time.perf_counter() - started, 1)
        print(f"  done in {timings[stage]:.0f} s", flush=True)
    results["stage_seconds"] = timings
    finish(results, workdir, args.publish)
    return 1 if results.get("errors") else 0


def run_stage(stage: str, results: dict[str, Any], config: Any, scenario: Any, path: Path, workdir: Path,
              sample: int, memory_rows: list[int]) -> None:
    if stage == "baseline":
        results["baseline"] = stages.baseline(config, scenario, path, workdir / "baseline", sample)
    elif stage == "inprocess":
        results["inprocess"] = stages.inprocess(config, scenario, path, workdir / "inprocess")
    elif stage == "dagtest":
        results["dagtest"] = stages.dagtest(config, scenario, path, workdir / "dagtest")
    elif stage == "scheduler":
        results["scheduler"] = stages.scheduler(config, scenario, path, workdir / "scheduler")
    elif stage == "memory":
        results["memory"] = [stages.memory(config, path, workdir / f"memory-{n}", n) for n in memory_rows]


def finish(results: dict[str, Any], workdir: Path, publish: bool) -> None:
    """Table, verdicts, JSON and chart; with ``publish`` the committed copies too."""
    results["table"] = report.rows_table(results)
    results["targets"] = report.verdicts(results)
    print("\n" + report.format_table(results["table"]))
    if results.get("baseline"):
        b = results["baseline"]
        print(f"\nArticle loop on {b['rows']} rows: {b['status_writes_failed']} status writes refused "
              f"(Sheets answered 429 {b['sheets_throttled']} times), {b['statuses_lost']} statuses missing from the "
              f"sheet, {b['wrong_numbers_sent']} patients left with a number other than their rows' "
              "(E-notation, lost zeros, an older duplicate row written last).")
    if results.get("memory"):
        print("\nExtract and clean, each in its own process as in Airflow:\n" + report.format_memory(results["memory"]))
    print("\nTargets:\n" + report.format_verdicts(results["targets"]))

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{results['started']}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    png = RESULTS / "bench.png"
    report.chart(png, results, f"{machine()}; FHIR {FHIR_LATENCY_MS} MS, SHEETS {SHEETS_LATENCY_MS} MS PER REQUEST")
    print(f"\nWrote {out.relative_to(REPO_ROOT)} and {png.relative_to(REPO_ROOT)}")
    if publish:
        (REPO_ROOT / "bench" / "last_run.json").write_text(json.dumps(_summary(results), indent=2, default=str) + "\n")
        (REPO_ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, REPO_ROOT / "docs" / "img" / "bench.png")
        print("Published bench/last_run.json and docs/img/bench.png")
    shutil.rmtree(workdir / "scheduler" / "airflow" / "logs", ignore_errors=True)


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    """What is committed: the table, the verdicts, the memory probes and the setup, no raw logs."""
    keep = ("started", "rows", "baseline_sample", "machine", "latency_ms", "sheets_quota_per_minute", "quick",
            "stage_seconds", "table", "targets", "memory")
    summary = {key: results[key] for key in keep if key in results}
    for key in ("baseline", "inprocess", "dagtest", "scheduler"):
        if key in results:
            summary[key] = {k: v for k, v in results[key].items() if k not in ("results",)}
    return summary


if __name__ == "__main__":
    sys.exit(main())
