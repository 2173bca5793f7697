"""Validate every region file before a deploy: ``python -m phone_sync.check_regions [DIR]``.

Prints every problem of every file (file and field named) and exits non-zero if there is one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from phone_sync.config import load_regions, region_files, regions_dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else regions_dir()
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
