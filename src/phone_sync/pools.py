"""Create or resize one Airflow pool per region, sized by its max_parallel_batches.

``phone-sync-pools`` (or ``python -m phone_sync.pools``).

Batches of two regions never compete for a slot. Run it at deploy time (the docker-compose init
service, ``make standalone`` and the end-to-end harness do) after ``airflow db migrate``; a DAG
whose pool is missing shows a "non-existent pool" warning in the UI and its batches wait.
"""

from __future__ import annotations

import argparse
import sys

from phone_sync.config import RegionConfig, load_regions


def pool_name(config: RegionConfig) -> str:
    return config.dag_id


def sync_pools() -> list[tuple[str, int]]:
    """Create or resize the pool of every valid region file; return (name, slots) pairs."""
    from airflow.models.pool import Pool  # needs the metadata DB: deploy time only

    configs, _ = load_regions()
    done = []
    for config in configs:
        Pool.create_or_update_pool(
            name=pool_name(config),
            slots=config.max_parallel_batches,
            description=f"phone-sync batches of {config.display_name}",
            include_deferred=False,
        )
        done.append((pool_name(config), config.max_parallel_batches))
    return done


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="phone-sync-pools", description=__doc__.split("\n\n")[0]).parse_args(argv)
    for name, slots in sync_pools():
        print(f"pool {name}: {slots} slots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
