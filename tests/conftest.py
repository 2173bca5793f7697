"""Test-wide set-up: an isolated AIRFLOW_HOME (SQLite) before anything imports Airflow."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "plugins")]

from localservers.airflow_env import airflow_env  # noqa: E402

os.environ.update(airflow_env(Path(tempfile.mkdtemp(prefix="phone-sync-airflow-"))))
