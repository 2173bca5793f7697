"""Airflow DAG file: one phone-sync DAG per region file in include/regions/.

All logic lives in plugins/phone_sync; this file only hands the factory's DAGs to Airflow.
"""

from phone_sync.dag_factory import build_all

globals().update(build_all())
