"""The demo region in the Airflow UI: ``python -m localservers.standalone [--port 8080]``.

Seeds and starts the local FHIR server and Sheets emulator, and runs
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite)
with the demo region's connections. Open the UI, trigger ``phone_sync__demo``, watch the mapped
``process_batch`` tasks named by their sheet rows, and clear one. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from localservers.airflow_env import REPO_ROOT, airflow_env
from localservers.demo import DEMO_REGION, migrate_db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localservers.standalone", description=__doc__)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "var" / "standalone")
    args = parser.parse_args(argv)

    env = airflow_env(
        args.workdir / "airflow",
        api__port=str(args.port),
        core__execution_api_server_url=f"http://localhost:{args.port}/execution/",
        core__simple_auth_manager_all_admins="True",
        core__dags_are_paused_at_creation="False",
    )
    # Only the demo region: the shipped regions' connections do not exist on this machine.
    regions = args.workdir / "regions"
    regions.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_REGION, regions / DEMO_REGION.name)
    env["PHONE_SYNC_REGIONS_DIR"] = str(regions)
    os.environ.update(env)
    # `airflow standalone` starts its components as `airflow ...` from PATH: use this venv's.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    migrate_db(env)

    from localservers.scenario import generate
    from localservers.stack import local_region
    from phone_sync.config import load_region

    config = load_region(DEMO_REGION)
    with local_region(config, generate(args.rows, seed=7), args.workdir) as region:
        print(f"FHIR server {region.fhir.url}, Sheets emulator {region.sheets.url}")
        print(f"Airflow UI: http://localhost:{args.port}/  (all users are admins; Ctrl-C stops everything)")
        airflow = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env={**os.environ, **region.connections},
            start_new_session=True,  # its components live in this process group, stopped together below
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the same way on SIGTERM as on Ctrl-C
        try:
            return airflow.wait()
        except (KeyboardInterrupt, SystemExit):
            return 130
        finally:
            os.killpg(airflow.pid, signal.SIGTERM)
            airflow.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
