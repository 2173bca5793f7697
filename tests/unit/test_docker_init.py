"""docker/init.sh, the stack's one-shot set-up, stops the stack when a region lacks a connection or the PHI key.

Run here with this checkout's ``phone-sync-check-regions`` and the test session's metadata DB; ``airflow db
migrate`` (Airflow's own step, before the check) is a no-op stand-in, since no Docker engine runs here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from phone_sync.crypto import new_key
from phone_sync.regions import REGIONS_DIR_ENV
from tests.regions import DEMO_REGION

INIT = Path(__file__).resolve().parents[2] / "docker" / "init.sh"


def run_init(tmp_path: Path, connections: dict[str, str]) -> subprocess.CompletedProcess[str]:
    stand_in = tmp_path / "bin"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "airflow").write_text("#!/bin/sh\nexit 0\n")
    (stand_in / "airflow").chmod(0o755)
    regions = tmp_path / "regions"
    regions.mkdir(exist_ok=True)
    shutil.copy(DEMO_REGION, regions)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env |= {
        "PATH": f"{stand_in}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        REGIONS_DIR_ENV: str(regions),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
        **connections,
    }
    return subprocess.run(
        [shutil.which("bash") or "bash", str(INIT)], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def test_init_stops_the_stack_when_the_phi_key_is_missing(tmp_path: Path, airflow_db: None) -> None:
    connections = {
        "AIRFLOW_CONN_FHIR_DEMO": json.dumps({"conn_type": "fhir", "host": "http://127.0.0.1:8090", "password": "t"}),
        "AIRFLOW_CONN_GOOGLE_SHEETS_DEMO": json.dumps({"conn_type": "google_cloud_platform"}),
    }
    refused = run_init(tmp_path, connections)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "connection 'phone_sync_phi_key' (phi_key_conn_id) is not defined" in refused.stdout
    assert "phone-sync init: FAILED" in refused.stderr

    key = new_key()
    connections["AIRFLOW_CONN_PHONE_SYNC_PHI_KEY"] = json.dumps({"conn_type": "generic", "password": key})
    started = run_init(tmp_path, connections)
    assert started.returncode == 0, started.stdout + started.stderr
    assert key not in started.stdout + started.stderr
