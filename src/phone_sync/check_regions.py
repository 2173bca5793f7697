"""Validate every region file before a deploy and print every problem, naming the file and the field.

``phone-sync-check-regions [DIR]`` (or ``python -m phone_sync.check_regions``) exits non-zero if there is one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phone_sync.config import load_regions, region_files, regions_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phone-sync-check-regions", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, help="folder of region files (default: %(default)s)")
    parser.set_defaults(directory=regions_dir())
    directory = parser.parse_args(argv).directory
    if not region_files(directory):
        print(f"no region files (*.json) in {directory}")
        return 1
    configs, errors = load_regions(directory)
    for config in configs:
        print(f"ok     {config.region}.json -> DAG {config.dag_id} ({config.schedule}, {config.timezone})")
    for error in errors:
        print(f"ERROR  {error}")
    print(f"{len(configs)} valid, {len(errors)} invalid region file(s) in {directory}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
