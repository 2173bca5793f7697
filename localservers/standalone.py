"""The demo region in the Airflow UI: ``python -m localservers.standalone [--port 8080]`` (``make standalone``).

Seeds and starts the local FHIR server and Sheets emulator, and a real Airflow on this machine only
(api-server on 127.0.0.1, scheduler, dag-processor, triggerer; LocalExecutor on SQLite under ``var/standalone``).
The demo region runs only when you trigger it (no schedule here), so your first trigger finds every row; the
trigger form starts on Preview. Its connections are in Airflow's metadata DB, so Admin > Connections shows them
and their Test button works. The Airflow home, its PHI key and its Fernet key are kept from start to start, so a
run of an earlier start can still be cleared; the sheet and the FHIR server start fresh each time.
Ctrl-C stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from localservers.airflow_cluster import AirflowCluster
from localservers.airflow_env import REPO_ROOT
from localservers.demo import DEMO_REGION

KEY_FILE = "phone_sync_phi_key"  # in the Airflow home, 0600: the demo's PHI key, made once per home
FERNET_FILE = "fernet_key"  # the same for Airflow's own key, which encrypts the connections in the metadata DB


def kept_key(path: Path) -> str:
    """The Fernet key in ``path``, made (readable by this user only) the first time."""
    from cryptography.fernet import Fernet

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def manual_demo_region(folder: Path) -> Path:
    """demo.json without a schedule: nothing runs (and takes the rows) before the user's first trigger."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(DEMO_REGION.read_text(encoding="utf-8"))
    path = folder / DEMO_REGION.name
    path.write_text(json.dumps({**data, "schedule": None}, indent=2), encoding="utf-8")
    return path


def connection_bodies(env_connections: dict[str, str]) -> list[dict[str, Any]]:
    """The region's ``AIRFLOW_CONN_*`` JSON values as REST API v2 connection bodies (extra as a JSON string)."""
    bodies = []
    for name, value in env_connections.items():
        fields = json.loads(value)
        body = {"connection_id": name.removeprefix("AIRFLOW_CONN_").lower(), **fields}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])
        bodies.append(body)
    return bodies


def put_connection(cluster: AirflowCluster, body: dict[str, Any]) -> None:
    """Create the connection in the metadata DB, or replace it (the servers' ports change from start to start)."""
    conn_id = body["connection_id"]
    if cluster.api("GET", f"/connections/{conn_id}", ok=(200, 404)).get("connection_id") == conn_id:
        cluster.api("PATCH", f"/connections/{conn_id}", json=body)
    else:
        cluster.api("POST", "/connections", json=body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localservers.standalone",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=3000, help="sheet rows to generate (default 3000)")
    parser.add_argument("--port", type=int, default=8080, help="the UI's port on 127.0.0.1 (default 8080)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "var" / "standalone")
    args = parser.parse_args(argv)

    home = args.workdir / "airflow"
    phi_key, fernet_key = kept_key(home / KEY_FILE), kept_key(home / FERNET_FILE)
    regions = args.workdir / "regions"
    region_file = manual_demo_region(regions)

    from localservers.scenario import generate
    from localservers.stack import local_region
    from phone_sync.regions import REGIONS_DIR_ENV, load_region

    config = load_region(region_file)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the same way on SIGTERM as on Ctrl-C
    with local_region(config, generate(args.rows, seed=7), args.workdir) as region:
        region.phi_key = phi_key
        print(f"FHIR server {region.fhir.url}, Sheets emulator {region.sheets.url} (fresh data: {args.rows} rows)")
        print(f"Starting Airflow (home {home}, process logs in {home / 'process-logs'}) ...", flush=True)
        cluster = AirflowCluster(
            home,
            port=args.port,
            extra_env={REGIONS_DIR_ENV: str(regions)},
            config={"core__fernet_key": fernet_key, "core__dags_are_paused_at_creation": "False"},
        )
        try:
            with cluster:
                for body in connection_bodies(region.connections):
                    put_connection(cluster, body)
                cluster.wait_for_dag(config.dag_id)
                print(
                    f"\nAirflow UI: {cluster.url}/dags/{config.dag_id}  (this machine only; all visitors are admins)\n"
                    f"{config.dag_id} has no schedule here: nothing runs until you press Trigger, and the form "
                    "starts on Preview\n(nothing written to FHIR; choose Live to write). Admin > Connections shows "
                    f"{config.fhir.conn_id}, {config.sheets.conn_id}\nand {config.phi_key_conn_id} (its Test button "
                    "works). Ctrl-C stops everything.",
                    flush=True,
                )
                cluster.wait_until("Ctrl-C", lambda: None, timeout=float("inf"), interval=2)
        except (KeyboardInterrupt, SystemExit):
            print("\nStopping Airflow and the local servers ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
