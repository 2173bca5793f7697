"""The embedded default: run the demo region's DAG end to end on this machine.

``python -m localservers.demo [--rows N] [--keep-running]`` seeds a local FHIR server and Sheets emulator
with a messy synthetic region, runs ``phone_sync__demo`` through ``dag.test()`` on a SQLite Airflow home
under ``var/demo``, and prints one line per task, the run report and where to look; the task logs go to
``var/demo/task-logs.txt``. It stops the servers it started (after Ctrl-C with ``--keep-running``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from localservers.airflow_env import REPO_ROOT, airflow_env

if TYPE_CHECKING:
    from localservers.stack import LocalRegion

DEMO_REGION = REPO_ROOT / "include" / "regions" / "demo.json"
BATCH_TASK = "process_batch"


def migrate_db(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def output_to(log_file: Path) -> Iterator[IO[str]]:
    """Send everything written to this process's stdout and stderr (Airflow's task logs) to ``log_file``;
    yield the terminal, for the lines meant for a person."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield terminal
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        terminal.close()


class Progress:
    """An Airflow listener that prints a line as each task ends; the mapped batches as one line once they are done
    (counted in place on a terminal)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.batches: Counter[str] = Counter()
        self.live = out.isatty()

    def _ended(self, task_instance: Any, state: str) -> None:
        if task_instance.task_id == BATCH_TASK:
            self.batches[state] += 1
            if self.live:
                self.out.write(f"\r  {BATCH_TASK:<22}{sum(self.batches.values())} batches done")
            return
        self.flush_batches()
        self.out.write(f"  {task_instance.task_id:<22}{state}\n")

    def flush_batches(self) -> None:
        if self.batches:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(self.batches.items()))
            self.out.write(f"\r  {BATCH_TASK:<22}{sum(self.batches.values())} batches: {counts}\n")
            self.batches.clear()

    # Airflow's listener hooks (the task runner calls them, in this process under dag.test()).
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self._ended(task_instance, "success")

    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        self._ended(task_instance, "failed")

    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        self._ended(task_instance, "skipped")

    @contextlib.contextmanager
    def listening(self) -> Iterator[Progress]:
        from airflow.listeners import hookimpl
        from airflow.sdk.listener import get_listener_manager

        for name in ("on_task_instance_success", "on_task_instance_failed", "on_task_instance_skipped"):
            hookimpl(getattr(type(self), name))
        manager = get_listener_manager()
        manager.add_listener(self)
        try:
            yield self
        finally:
            manager.pm.unregister(self)
            self.flush_batches()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localservers.demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=3000, help="sheet rows to generate (default 3000)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "var" / "demo")
    parser.add_argument("--keep-running", action="store_true", help="leave the servers up until Ctrl-C")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers it started, as on Ctrl-C

    env = airflow_env(args.workdir / "airflow")
    os.environ.update(env)
    print(f"Airflow home: {env['AIRFLOW_HOME']} (SQLite); migrating the metadata DB ...", flush=True)
    migrate_db(env)

    # Airflow and the servers are imported only once the environment points at the demo home.
    import pendulum

    from localservers.scenario import generate
    from localservers.stack import local_region
    from localservers.watch import watching
    from phone_sync.dag_factory import build_region_dag
    from phone_sync.regions import load_region

    config = load_region(DEMO_REGION)
    scenario = generate(args.rows, seed=7)
    run_day = pendulum.instance(datetime.combine(scenario.run_date, time(1)), tz=config.timezone)
    log_file = args.workdir / "task-logs.txt"
    with local_region(config, scenario, args.workdir) as region:
        os.environ.update(region.connections)
        print(f"FHIR server {region.fhir.url} ({len(scenario.patients)} patients), Sheets emulator {region.sheets.url}")
        print(f"Running {config.dag_id} on {args.rows} sheet rows (task logs: {log_file}) ...", flush=True)
        with output_to(log_file) as terminal, Progress(terminal).listening(), watching(region, 0.25) as watch:
            dag_run = build_region_dag(config).test(logical_date=run_day)
        print_summary(region, dag_run.state, log_file, args.keep_running)
        write_back = started_after(dag_run, "write_back_statuses", watch.started)
        print(
            f"\nThe sheet while the run moved (rows with a status, seconds after the start): {watch.timeline()};"
            + (f" write-back started at {write_back:.0f} s." if write_back is not None else "")
            + "\nEach batch writes its rows' statuses as it finishes, within the region's Sheets quota; "
            "write-back writes the rest."
        )
        if args.keep_running:
            print("Servers are up; Ctrl-C (or Enter) stops them.")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
    return 0 if dag_run.state == "success" else 1


def started_after(dag_run: Any, task_id: str, since: float) -> float | None:
    """Seconds from ``since`` (epoch) to when ``task_id`` of the run started."""
    from airflow.utils.session import create_session

    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            if ti.task_id == task_id and ti.start_date is not None:
                return ti.start_date.timestamp() - since
    return None


def report_column(status: str) -> str:
    """The run report's column that counts a row with this status text (``failed: patient not found`` is
    ``not found``, not ``failed``), so the sheet's statuses are counted in the report's words."""
    from phone_sync.outcomes import Outcome, Reason

    reasoned = {Reason.PATIENT_NOT_FOUND: Outcome.NOT_FOUND, Reason.INVALID_PHONE: Outcome.INVALID_PHONE}
    reasoned[Reason.KEPT_CHANGING] = Outcome.CONFLICT
    for reason, outcome in reasoned.items():
        if status.startswith(f"{outcome.prefix}: {reason.template.split('{')[0]}"):
            return outcome.report_column
    plain = [Outcome.UPDATED, Outcome.UNCHANGED, Outcome.FAILED, Outcome.SKIPPED, Outcome.QUEUED]
    return next((o.report_column for o in plain if status.startswith(o.prefix)), status)


def print_summary(region: LocalRegion, state: str, log_file: Path, keep_running: bool) -> None:
    header, *rows = region.cells()
    status_col = header.index(region.config.sheets.columns.status)
    statuses = Counter(report_column(str(row[status_col])) for row in rows if len(row) > status_col and row[status_col])
    report_header, *report_rows = region.cells(region.config.sheets.report_worksheet)
    print(f"\nDAG run finished: {state}\n\nRun report (worksheet '{region.config.sheets.report_worksheet}'):")
    for key, value in zip(report_header, report_rows[-1], strict=False):
        if key == "link":
            value = "(the run in the Airflow UI; `make demo` serves no UI, `make standalone` does)"
        print(f"  {key:>22}: {value}")
    print("\nStatuses in the sheet, in the report's words: " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    fhir = region.fhir_stats()
    print(f"FHIR server saw {fhir.get('total', '?')} requests; Sheets emulator saw {region.sheet_requests()['total']}.")
    sheet = (
        f"{region.sheets.url}/_emulator/spreadsheets/{region.config.sheets.spreadsheet_id}"
        f"/sheets/{region.config.sheets.worksheet}/cells?view=formatted"
        if keep_running
        else "`make demo ARGS=--keep-running` keeps the servers up and prints its address"
    )
    print(
        f"\nWhere to look: the task logs in {log_file} (search for a status's id, e.g. 'b01-r123');\n"
        f"the sheet: {sheet};\n"
        "the Airflow UI with mapped batches to clear: `make standalone`."
    )


if __name__ == "__main__":
    sys.exit(main())
