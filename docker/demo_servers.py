"""The ``demo`` profile's servers: the local FHIR server and the Sheets emulator, seeded with the demo region.

Runs inside the Celery worker's network namespace (``network_mode: service:airflow-worker``), so the demo
connections point at loopback, the only place the FHIR connection rules allow plain http and the only
interface the emulator serves. The FHIR token is read from ``AIRFLOW_CONN_FHIR_DEMO`` (its password), so
the connection in ``.env`` is the single place it is set.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from localservers.fhir.store import Store
from localservers.process import ServerProcess
from localservers.scenario import generate
from localservers.stack import seed_sheet
from phone_sync.regions import load_region

REGION_FILE = Path(os.environ.get("PHONE_SYNC_REGIONS_DIR", "/opt/airflow/include/regions")) / "demo.json"
STATE = Path(os.environ.get("DEMO_STATE_DIR", "/opt/phone-sync/demo-state"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docker/demo_servers.py", description=__doc__.split("\n\n")[0])
    parser.epilog = "Environment: AIRFLOW_CONN_FHIR_DEMO (its password is the FHIR token), DEMO_ROWS, DEMO_STATE_DIR."
    parser.parse_args(argv)
    config = load_region(REGION_FILE)
    token = json.loads(os.environ["AIRFLOW_CONN_FHIR_DEMO"])["password"]
    rows = int(os.environ.get("DEMO_ROWS", "1000"))
    STATE.mkdir(parents=True, exist_ok=True)
    db = STATE / "fhir-demo.sqlite"
    scenario = generate(rows, seed=7)
    fresh = not db.exists()
    if fresh:
        store = Store(db)
        try:
            store.insert_many(scenario.patients)
        finally:
            store.close()
    fhir = ServerProcess("localservers.fhir", ["--db", str(db), f"--token={token}"], port=8090, health_path="/metadata")
    sheets = ServerProcess(
        "localservers.sheets",
        ["--allow-anonymous", "--state", str(STATE / "sheets-demo.json")],
        port=8601,
        health_path="/_emulator/health",
    )
    with fhir, sheets:
        if fresh:
            seed_sheet(sheets.url, config, scenario)
        print(f"demo servers up: FHIR {fhir.url} ({len(scenario.patients)} patients), Sheets {sheets.url}", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        while not stop:
            if any(server.process is None or server.process.poll() is not None for server in (fhir, sheets)):
                print("a demo server exited", file=sys.stderr)
                return 1
            time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
