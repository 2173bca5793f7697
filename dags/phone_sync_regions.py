"""Airflow DAG file: one phone-sync DAG per region file in include/regions/.

All logic lives in the installed ``phone_sync`` package; this file hands the factory's DAGs to Airflow.
The region files are read from the ``include/regions`` folder of the same bundle as this file (unless
``PHONE_SYNC_REGIONS_DIR`` says otherwise), so a versioned bundle pins a run's region file with its DAG.
"""

from pathlib import Path

from phone_sync.dag_factory import build_all
from phone_sync.regions import regions_dir

globals().update(build_all(regions_dir(Path(__file__).resolve().parents[1] / "include" / "regions")))
