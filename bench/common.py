"""What every benchmark stage shares: the region, the servers with injected latency, counting.

Each stage gets freshly seeded servers (a run writes statuses, so the next one would find nothing
to do), with the issue's figures: FHIR 50 ms per request, Sheets 100 ms per request and Google's
60 requests per minute per user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from localservers.airflow_env import REPO_ROOT, airflow_env
from localservers.scenario import Scenario
from localservers.stack import LocalRegion, conn_env_name, local_region
from phone_sync.config import RegionConfig
from phone_sync.crypto import Sealer
from phone_sync.regions import load_region

FHIR_LATENCY_MS = 50
SHEETS_LATENCY_MS = 100
SHEETS_QUOTA_PER_MINUTE = 60
DEMO_REGION = REPO_ROOT / "include" / "regions" / "demo.json"
MIB = 2**20
OAUTH_CLIENT_ID = "phone-sync-bench"
OAUTH_CLIENT_SECRET = "bench-client-secret-0001"


def region_file(directory: Path) -> Path:
    """The demo region without a schedule, so a running scheduler starts only the runs we trigger."""
    raw = json.loads(DEMO_REGION.read_text())
    raw["schedule"] = None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "demo.json"
    path.write_text(json.dumps(raw, indent=2))
    return path


def bench_config(directory: Path) -> RegionConfig:
    return load_region(region_file(directory))


def server_args() -> tuple[list[str], list[str]]:
    fhir = ["--latency-ms", str(FHIR_LATENCY_MS), f"--oauth-client={OAUTH_CLIENT_ID}:{OAUTH_CLIENT_SECRET}"]
    sheets = [
        "--latency-ms", str(SHEETS_LATENCY_MS),
        "--read-quota", str(SHEETS_QUOTA_PER_MINUTE), "--write-quota", str(SHEETS_QUOTA_PER_MINUTE),
    ]
    return fhir, sheets


@contextmanager
def bench_region(
    config: RegionConfig, scenario: Scenario, workdir: Path, *, report_tab: bool = True
) -> Iterator[LocalRegion]:
    """Seeded servers with latency; the report tab exists (as after a region's first run); counts zeroed."""
    fhir_args, sheets_args = server_args()
    with local_region(config, scenario, workdir, fhir_args=fhir_args, sheets_args=sheets_args) as region:
        if report_tab:
            _add_report_tab(region)
        reset_counts(region)
        yield region


def connections(region: LocalRegion) -> dict[str, str]:
    """The region's connections, its FHIR one with OAuth2 client credentials (tokens are counted) instead
    of the static bearer the article's loop keeps."""
    fhir = {"conn_type": "fhir", "host": region.fhir.url, "login": OAUTH_CLIENT_ID, "password": OAUTH_CLIENT_SECRET,
            "extra": {"auth_type": "oauth2", "token_url": "/oauth2/token"}}
    return {**region.connections, conn_env_name(region.config.fhir.conn_id): json.dumps(fhir)}


def sealer(region: LocalRegion) -> Sealer:
    """The region's PHI key, to open what the run sealed."""
    return Sealer.from_text(region.phi_key)


def _add_report_tab(region: LocalRegion) -> None:
    """What a region's first run leaves behind: the report tab with its header (as another user)."""
    from phone_sync.sheets.report import REPORT_COLUMNS

    sheets = region.config.sheets
    token = requests.post(
        f"{region.sheets.url}/_emulator/tokens",
        json={"user": "bench-setup@local.test", "scopes": ["https://www.googleapis.com/auth/spreadsheets"]},
        timeout=10,
    ).json()
    headers = {"Authorization": f"Bearer {token.get('access_token') or token.get('token')}"}
    base = f"{region.sheets.url}/v4/spreadsheets/{sheets.spreadsheet_id}"
    body = {"requests": [{"addSheet": {"properties": {"title": sheets.report_worksheet}}}]}
    requests.post(f"{base}:batchUpdate", json=body, headers=headers, timeout=30).raise_for_status()
    requests.post(
        f"{base}/values/'{sheets.report_worksheet}'!A1:append",
        params={"valueInputOption": "RAW"}, json={"values": [list(REPORT_COLUMNS)]}, headers=headers, timeout=30,
    ).raise_for_status()


def reset_counts(region: LocalRegion) -> None:
    requests.post(f"{region.sheets.url}/_emulator/requests/reset", timeout=10).raise_for_status()
    requests.post(f"{region.fhir.url}/_admin/reset-stats", timeout=10).raise_for_status()


def request_counts(region: LocalRegion) -> dict[str, Any]:
    """FHIR and Sheets requests the servers saw since the last reset (429 answers included).

    ``fhir`` leaves out OAuth2 token requests: they are ``fhir_tokens``; ``fhir_by_interaction``: the FHIR
    requests by interaction and status (``search 200``), from the same read of the server's stats."""
    sheets = region.sheet_requests()
    fhir = region.fhir_stats()
    tokens = int(fhir.get("by_interaction", {}).get("token", 0))
    return {
        "fhir": int(fhir.get("total", 0)) - tokens,
        "fhir_tokens": tokens,
        "fhir_by_interaction": fhir.get("by_interaction_status", {}),
        "sheets": int(sheets.get("total", 0)),
        "sheets_throttled": int(sheets.get("throttled", 0)),
        "sheets_by_method": sheets.get("by_method", {}),
        "sheets_busiest_minute": int(sheets.get("busiest_window", 0)),
    }


def status_column_values(region: LocalRegion) -> dict[int, str]:
    """Sheet row -> status text, as the emulator holds it now."""
    header, *rows = region.cells()
    column = header.index(region.config.sheets.columns.status)
    return {index: str(row[column]) if len(row) > column and row[column] is not None else ""
            for index, row in enumerate(rows, start=2)}


def statuses_lost(region: LocalRegion, scenario: Scenario, rows: set[int] | None = None) -> int:
    """Rows that should carry a status after the run and do not (``rows``: only these)."""
    current = status_column_values(region)
    wanted = [row for row, expected in scenario.expected.items() if expected.kind != "blank"]
    if rows is not None:
        wanted = [row for row in wanted if row in rows]
    return sum(1 for row in wanted if not current.get(row, "").strip())


def run_child(stage: str, spec: dict[str, Any], workdir: Path, env: dict[str, str] | None = None,
              timeout: float = 1800) -> dict[str, Any]:
    """Run ``python -m bench.child <stage>`` in a fresh interpreter: its peak RSS is the stage's own.

    The child starts with its own ``AIRFLOW_HOME`` (``workdir/airflow``) in its environment: Airflow reads
    its settings once, at its first import, so a home set later would leave it on ``~/airflow``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = workdir / f"{stage}.spec.json", workdir / f"{stage}.out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    with open(workdir / f"{stage}.log", "wb") as log:
        subprocess.run(
            [sys.executable, "-m", "bench.child", stage, str(spec_path), str(out_path)],
            env={**os.environ, **airflow_env(workdir / "airflow"), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, check=True, timeout=timeout, cwd=REPO_ROOT,
        )
    return json.loads(out_path.read_text())
