"""Validate every region file before a deploy and print every problem, naming the file and the field.

``phone-sync-check-regions [DIR]`` (or ``python -m phone_sync.check_regions``) exits non-zero if there is one.
Where a region's Google connection is defined (a deployment), it also looks at the size of the region's
worksheet (one metadata request) and warns when the sheet may hold more rows than one run takes
(``[core] max_map_length`` batches of ``batch_size`` rows): the rest are queued for the next runs.
With ``--connections`` (on a machine of the deployment) it also names every region whose FHIR or Google
connection, or PHI key, Airflow cannot find, so a region is not first seen failing at its first run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from phone_sync.config import RegionConfig
from phone_sync.regions import REGIONS_DIR_ENV, load_regions, region_files

REGIONS_SUBDIR = Path("include") / "regions"
# Exit status when a valid region cannot run for a missing connection or PHI key (1: an invalid region file).
# The stack's init stops on this one only: an invalid file shows as its config-error DAG and stops no other region.
MISSING_CONNECTIONS = 3


def run_capacity(config: RegionConfig) -> int:
    """The most rows one run takes: Airflow maps at most ``[core] max_map_length`` batches."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024) * config.batch_size


def sheet_size_note(config: RegionConfig) -> str:
    """``WARN`` when the worksheet's grid (its rows, used or not: one small request) holds more data rows than one
    run takes; else what was seen."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from phone_sync.sheets.hook import SheetsHook

    capacity = run_capacity(config)
    try:
        hook = SheetsHook(gcp_conn_id=config.sheets.conn_id)
        properties = hook.worksheet(config.sheets.spreadsheet_id, config.sheets.worksheet)
    except AirflowNotFoundException:
        return f"sheet size not checked: connection '{config.sheets.conn_id}' is not defined here"
    except Exception as exc:
        return f"sheet size not checked: {type(exc).__name__}"
    if properties is None:
        return f"sheet size not checked: no worksheet {config.sheets.worksheet!r}"
    rows = int(properties.get("gridProperties", {}).get("rowCount", 0)) - config.sheets.header_row
    if rows > capacity:
        return (
            f"WARN: worksheet {config.sheets.worksheet!r} has room for {rows:,} rows, more than one run takes "
            f"({capacity:,}); the rest wait for later runs (status 'queued')"
        )
    return f"worksheet {config.sheets.worksheet!r} has room for {rows:,} rows; one run takes {capacity:,}"


def connection_problems(config: RegionConfig) -> list[str]:
    """Each connection of the region that Airflow cannot find (env vars, secrets backends, metadata DB), and a
    PHI key connection without a usable key. Names and setting paths only: never a connection's content."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from phone_sync.crypto import PhiKeyError, Sealer

    wanted = {
        "fhir.conn_id": config.fhir.conn_id,
        "sheets.conn_id": config.sheets.conn_id,
        "phi_key_conn_id": config.phi_key_conn_id,
    }
    problems = []
    for setting, conn_id in wanted.items():
        try:
            connection = Connection.get_connection_from_secrets(conn_id)
        except AirflowNotFoundException:
            problems.append(f"connection '{conn_id}' ({setting}) is not defined")
            continue
        except Exception as exc:  # a secrets backend or the metadata DB that cannot answer; its message may hold a URL
            problems.append(f"connection '{conn_id}' ({setting}) cannot be looked up: {type(exc).__name__}")
            continue
        if setting == "phi_key_conn_id":
            try:
                Sealer.from_text(connection.password, f"connection '{conn_id}' ({setting})")
            except PhiKeyError as exc:  # says which key is malformed, never the key
                problems.append(str(exc))
    return problems


def default_directory() -> Path:
    """``$PHONE_SYNC_REGIONS_DIR``, else ``./include/regions``, else ``$AIRFLOW_HOME/include/regions``;
    SystemExit naming every place looked at when none exists (the installed command knows no project)."""
    if os.environ.get(REGIONS_DIR_ENV):
        return Path(os.environ[REGIONS_DIR_ENV])
    home = Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()
    candidates = [Path.cwd() / REGIONS_SUBDIR, home / REGIONS_SUBDIR]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise SystemExit(
        f"no folder of region files found: {REGIONS_DIR_ENV} is not set, and neither {candidates[0]} nor "
        f"{candidates[1]} ($AIRFLOW_HOME/include/regions) exists; name the folder: phone-sync-check-regions DIR"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="phone-sync-check-regions",
        description=__doc__.split("\n\n")[0],
        epilog=f"Without DIR: ${REGIONS_DIR_ENV}, else ./include/regions, else $AIRFLOW_HOME/include/regions. "
        "Files whose name starts with _ (include/regions/_template.json) are not regions. Exit status: 0 all "
        "good, 1 a region file is invalid, 3 (with --connections) a valid region lacks a connection or its PHI key.",
    )
    parser.add_argument("directory", nargs="?", type=Path, help="folder of region files")
    parser.add_argument("--offline", action="store_true", help="do not look at the regions' sheets")
    parser.add_argument(
        "--connections",
        action="store_true",
        help="also check that Airflow finds each region's FHIR and Google connections and the PHI key "
        "(run it where Airflow runs: it reads the environment, the secrets backend and the metadata DB)",
    )
    args = parser.parse_args(argv)
    directory = args.directory or default_directory()
    for skipped in sorted(set(directory.glob("_*.json"))):
        print(f"skip   {skipped.name} (names starting with _ are not regions)")
    if not region_files(directory):
        print(f"no region files (*.json) in {directory}")
        return 1
    configs, errors = load_regions(directory)
    unconnected = 0
    for config in configs:
        print(f"ok     {config.region}.json -> DAG {config.dag_id} ({config.schedule}, {config.timezone})")
        if not args.offline:
            print(f"       {sheet_size_note(config)}")
        if args.connections:
            problems = connection_problems(config)
            unconnected += bool(problems)
            for problem in problems:
                print(f"ERROR  region {config.region} cannot run: {problem}")
    for error in errors:
        print(f"ERROR  {error}")
    summary = f"{len(configs)} valid, {len(errors)} invalid region file(s) in {directory}"
    if args.connections:
        summary += f"; {unconnected} region(s) missing a connection or the PHI key (see docs/install.md)"
    print(summary)
    return MISSING_CONNECTIONS if unconnected else 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
