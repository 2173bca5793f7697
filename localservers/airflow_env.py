"""Environment for a local Airflow home (SQLite metadata DB, this repo's dags/).

Set before Airflow is imported; shared by the demo, ``make standalone``, the tests and the benchmark.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def airflow_env(home: Path, **overrides: str) -> dict[str, str]:
    """``AIRFLOW_*`` variables for an Airflow home at ``home``; ``overrides`` use config names (``core__x``)."""
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # Never DEBUG, even when the shell sets it: at DEBUG Airflow's in-process supervisor (dag.test(), which the
        # demo runs) logs every secret it is told to mask, in clear (see docs/security.md).
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    env.update({f"AIRFLOW__{key.upper()}": value for key, value in overrides.items()})
    return env
