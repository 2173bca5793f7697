"""Validate every region file before a deploy and print every problem, naming the file and the field.

``phone-sync-check-regions [DIR]`` (or ``python -m phone_sync.check_regions``) exits non-zero if there is one.
Where a region's Google connection is defined (a deployment), it also looks at the size of the region's
worksheet (one metadata request) and warns when the sheet may hold more rows than one run takes
(``[core] max_map_length`` batches of ``batch_size`` rows): the rest are queued for the next runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phone_sync.config import RegionConfig, load_regions, region_files, regions_dir


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
        metadata = SheetsHook(gcp_conn_id=config.sheets.conn_id).get_spreadsheet(config.sheets.spreadsheet_id)
    except AirflowNotFoundException:
        return f"sheet size not checked: connection '{config.sheets.conn_id}' is not defined here"
    except Exception as exc:
        return f"sheet size not checked: {type(exc).__name__}"
    for sheet in metadata.get("sheets", []):
        props = sheet.get("properties", {})
        if props.get("title") == config.sheets.worksheet:
            rows = int(props.get("gridProperties", {}).get("rowCount", 0)) - config.sheets.header_row
            if rows > capacity:
                return (
                    f"WARN: worksheet {config.sheets.worksheet!r} has room for {rows:,} rows, more than one run takes "
                    f"({capacity:,}); the rest wait for later runs (status 'queued')"
                )
            return f"worksheet {config.sheets.worksheet!r} has room for {rows:,} rows; one run takes {capacity:,}"
    return f"sheet size not checked: no worksheet {config.sheets.worksheet!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phone-sync-check-regions", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, help="folder of region files (default: %(default)s)")
    parser.add_argument("--offline", action="store_true", help="do not look at the regions' sheets")
    parser.set_defaults(directory=regions_dir())
    args = parser.parse_args(argv)
    directory = args.directory
    if not region_files(directory):
        print(f"no region files (*.json) in {directory}")
        return 1
    configs, errors = load_regions(directory)
    for config in configs:
        print(f"ok     {config.region}.json -> DAG {config.dag_id} ({config.schedule}, {config.timezone})")
        if not args.offline:
            print(f"       {sheet_size_note(config)}")
    for error in errors:
        print(f"ERROR  {error}")
    print(f"{len(configs)} valid, {len(errors)} invalid region file(s) in {directory}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
