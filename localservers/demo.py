"""The embedded default: run the demo region's DAG end to end on this machine.

``python -m localservers.demo [--rows N]`` seeds a local FHIR server and Sheets emulator with a
messy synthetic region, runs ``phone_sync__demo`` through ``dag.test()`` on a SQLite Airflow home
under ``var/demo``, prints the run report and where to look, and stops the servers it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from localservers.airflow_env import REPO_ROOT, airflow_env

if TYPE_CHECKING:
    from localservers.stack import LocalRegion

DEMO_REGION = REPO_ROOT / "include" / "regions" / "demo.json"


def migrate_db(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localservers.demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=3000, help="sheet rows to generate (default 3000)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "var" / "demo")
    parser.add_argument("--keep-running", action="store_true", help="leave the servers up until Ctrl-C")
    args = parser.parse_args(argv)

    env = airflow_env(args.workdir / "airflow")
    os.environ.update(env)
    print(f"Airflow home: {env['AIRFLOW_HOME']} (SQLite); migrating the metadata DB ...", flush=True)
    migrate_db(env)

    # Airflow and the servers are imported only once the environment points at the demo home.
    import pendulum

    from localservers.scenario import generate
    from localservers.stack import local_region
    from phone_sync.config import load_region
    from phone_sync.dag_factory import build_region_dag

    config = load_region(DEMO_REGION)
    scenario = generate(args.rows, seed=7)
    run_day = pendulum.instance(datetime.combine(scenario.run_date, time(1)), tz=config.timezone)
    with local_region(config, scenario, args.workdir) as region:
        os.environ.update(region.connections)
        print(f"FHIR server {region.fhir.url} ({len(scenario.patients)} patients), Sheets emulator {region.sheets.url}")
        print(f"Running {config.dag_id} on {args.rows} sheet rows ...", flush=True)
        dag_run = build_region_dag(config).test(logical_date=run_day)
        print_summary(region, dag_run.state)
        if args.keep_running:
            print("Servers are up; Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
    return 0 if dag_run.state == "success" else 1


def print_summary(region: LocalRegion, state: str) -> None:
    header, *rows = region.cells()
    status_col = header.index(region.config.sheets.columns.status)
    statuses = Counter(
        str(row[status_col]).split(":")[0].split(" (")[0] for row in rows if len(row) > status_col and row[status_col]
    )
    report_header, *report_rows = region.cells(region.config.sheets.report_worksheet)
    print(f"\nDAG run finished: {state}\n\nRun report (worksheet '{region.config.sheets.report_worksheet}'):")
    for key, value in zip(report_header, report_rows[-1], strict=False):
        print(f"  {key:>22}: {value}")
    print("\nStatuses in the sheet: " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    fhir = region.fhir_stats()
    print(f"FHIR server saw {fhir.get('total', '?')} requests; Sheets emulator saw {region.sheet_requests()['total']}.")
    print(
        "\nWhere to look: the task log lines are above (search for a status's id, e.g. 'corr=b01-r123');\n"
        f"the sheet: {region.sheets.url}/_emulator/spreadsheets/{region.config.sheets.spreadsheet_id}"
        f"/sheets/{region.config.sheets.worksheet}/cells?view=formatted (while the servers run: --keep-running);\n"
        "the Airflow UI with mapped batches to clear: `make standalone`."
    )


if __name__ == "__main__":
    sys.exit(main())
