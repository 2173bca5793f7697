"""Airflow DAG bundle file for tests/alerts: registers the probe DAG's dag_id so ``dag.test()`` may run it.

The tests run their own instance (same tasks, their own alert settings); this one only makes the
DAG known to the metadata DB, as a DAG file must.
"""

from tests.alerts.probe_dag import build_probe_dag, probe_config

probe = build_probe_dag(probe_config())
