"""One region's local world: a seeded FHIR server, a seeded Sheets emulator, and the Airflow
connections that point the region at them. Used by the demo, the tests and the benchmark.

Connections go into ``AIRFLOW_CONN_<ID>`` environment variables (JSON form), which every
Airflow component and ``dag.test()`` resolve through the environment secrets backend.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from localservers.fhir.store import Store
from localservers.process import ServerProcess
from localservers.scenario import Scenario
from localservers.sheets.keyfile import demo_keyfile
from phone_sync.config import RegionConfig
from phone_sync.crypto import new_key


def conn_env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@dataclass(frozen=True)
class FhirOAuth:
    """The region's FHIR connection as an OAuth2 client of its local server, SATUSEHAT-style by default.

    ``grant_limit`` tokens per client per minute at most (0: no limit); ``extra`` adds connection extras.
    The server keeps accepting the region's static token too, for tests that read the server back.
    """

    style: str = "satusehat"
    client_id: str = "phone-sync-local-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_path: str = "/oauth2/v1/accesstoken"  # noqa: S105 - a path, not a secret
    grant_limit: int = 0
    expires_in: int = 3599
    extra: dict[str, Any] = field(default_factory=dict)

    def server_args(self) -> list[str]:
        return [
            f"--oauth-client={self.client_id}:{self.client_secret}",
            f"--token-style={self.style}",
            f"--token-path={self.token_path}",
            f"--token-grant-limit={self.grant_limit}",
            f"--token-expires-in={self.expires_in}",
        ]

    def connection(self, fhir_url: str) -> dict[str, Any]:
        extra = {
            "auth_type": "oauth2",
            "token_url": self.token_path,
            "grant_type_in": "query" if self.style == "satusehat" else "body",
            **self.extra,
        }
        secret = self.client_secret
        return {"conn_type": "fhir", "host": fhir_url, "login": self.client_id, "password": secret, "extra": extra}


@dataclass
class LocalRegion:
    config: RegionConfig
    fhir: ServerProcess
    sheets: ServerProcess
    fhir_token: str
    keyfile: dict[str, Any]
    fhir_db: Path
    phi_key: str = field(default_factory=new_key)
    fhir_oauth: FhirOAuth | None = None

    @property
    def connections(self) -> dict[str, str]:
        """Environment variables defining the region's Airflow connections: FHIR, Google, and the PHI key.

        The FHIR connection holds the static token, or with ``fhir_oauth`` the OAuth2 client credentials.
        """
        fhir = {"conn_type": "fhir", "host": self.fhir.url, "password": self.fhir_token}
        if self.fhir_oauth is not None:
            fhir = self.fhir_oauth.connection(self.fhir.url)
        google = {
            "conn_type": "google_cloud_platform",
            "extra": {"keyfile_dict": self.keyfile, "sheets_api_url": self.sheets.url},
        }
        return {
            conn_env_name(self.config.fhir.conn_id): json.dumps(fhir),
            conn_env_name(self.config.sheets.conn_id): json.dumps(google),
            conn_env_name(self.config.phi_key_conn_id): json.dumps({"conn_type": "generic", "password": self.phi_key}),
        }

    # --- reading back what the servers hold (for tests, the demo and the benchmark) ---

    def cells(self, worksheet: str | None = None, view: str = "unformatted") -> list[list[Any]]:
        """A worksheet's cells as the emulator holds them (``view``: unformatted, formatted or typed)."""
        title = worksheet or self.config.sheets.worksheet
        url = f"{self.sheets.url}/_emulator/spreadsheets/{self.config.sheets.spreadsheet_id}/sheets/{title}/cells"
        response = requests.get(url, params={"view": view}, timeout=60)
        response.raise_for_status()
        return response.json()["rows"]

    def sheet_edit(self, *edits: dict[str, Any], worksheet: str | None = None) -> None:
        """An operator's edits mid-run: move, insert, delete, sort or set (see the emulator's README)."""
        title = worksheet or self.config.sheets.worksheet
        url = f"{self.sheets.url}/_emulator/spreadsheets/{self.config.sheets.spreadsheet_id}/sheets/{title}/edits"
        requests.post(url, json=list(edits), timeout=60).raise_for_status()

    def add_worksheet(self, title: str, rows: list[list[Any]]) -> None:
        """A worksheet an operator adds to the region's spreadsheet (e.g. the identifiers to run)."""
        url = f"{self.sheets.url}/_emulator/spreadsheets/{self.config.sheets.spreadsheet_id}/sheets"
        requests.post(url, json={"title": title, "rows": rows, "value_input": "RAW"}, timeout=10).raise_for_status()

    def share_sheet(self, users: list[str] | None) -> None:
        """Share the spreadsheet with ``users`` only (others get 403), or with anyone (``None``)."""
        url = f"{self.sheets.url}/_emulator/spreadsheets/{self.config.sheets.spreadsheet_id}/sharing"
        requests.put(url, json={"users": users}, timeout=10).raise_for_status()

    def delete_sheet(self) -> None:
        """The spreadsheet disappears (404), as when its owner deletes it."""
        url = f"{self.sheets.url}/_emulator/spreadsheets/{self.config.sheets.spreadsheet_id}"
        requests.delete(url, timeout=10).raise_for_status()

    def sheet_requests(self) -> dict[str, Any]:
        return requests.get(f"{self.sheets.url}/_emulator/requests", timeout=10).json()

    def patients(self) -> list[dict[str, Any]]:
        """Every Patient as the FHIR server stores it now (read straight from its SQLite file)."""
        store = Store(self.fhir_db)
        try:
            return store.by_seqs(store.all_seqs())
        finally:
            store.close()

    def fhir_stats(self) -> dict[str, Any]:
        return requests.get(f"{self.fhir.url}/_admin/stats", timeout=10).json()

    def fhir_log(self) -> list[dict[str, Any]]:
        """Every FHIR request since the last reset: when, what, and how it was answered."""
        return requests.get(f"{self.fhir.url}/_admin/requests", timeout=30).json()

    def fhir_faults(self, **knobs: Any) -> None:
        requests.post(f"{self.fhir.url}/_admin/faults", json=knobs, timeout=10).raise_for_status()

    def clear_fhir_faults(self) -> None:
        requests.delete(f"{self.fhir.url}/_admin/faults", timeout=10).raise_for_status()


def seed_sheet(sheets_url: str, config: RegionConfig, scenario: Scenario) -> None:
    """Create the region's spreadsheet: text stays text, numbers stay numbers (phone column in E-notation)."""
    body = {
        "spreadsheet_id": config.sheets.spreadsheet_id,
        "title": config.display_name,
        "sheets": [
            {
                "title": config.sheets.worksheet,
                "rows": [scenario.header, *scenario.rows],
                "value_input": "RAW",
                "scientific": [config.sheets.columns.phone],
            }
        ],
    }
    requests.post(f"{sheets_url}/_emulator/spreadsheets", json=body, timeout=120).raise_for_status()


@contextmanager
def local_region(
    config: RegionConfig,
    scenario: Scenario,
    workdir: Path,
    *,
    fhir_args: Sequence[str] = (),
    sheets_args: Sequence[str] = (),
    fhir_oauth: FhirOAuth | None = None,
) -> Iterator[LocalRegion]:
    """Seed and start the region's servers on free loopback ports; stop exactly them on exit.

    With ``fhir_oauth`` the region's FHIR connection is an OAuth2 client of its server (see :class:`FhirOAuth`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"fhir-{config.region}.sqlite"
    db.unlink(missing_ok=True)
    store = Store(db)
    try:
        store.insert_many(scenario.patients)
    finally:
        store.close()
    token = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        fhir = stack.enter_context(
            ServerProcess(
                "localservers.fhir",
                ["--db", str(db), f"--token={token}", *(fhir_oauth.server_args() if fhir_oauth else ()), *fhir_args],
                health_path="/metadata",
                log_path=workdir / f"fhir-{config.region}.log",
            )
        )
        sheets = stack.enter_context(
            ServerProcess(
                "localservers.sheets",
                list(sheets_args),
                health_path="/_emulator/health",
                log_path=workdir / f"sheets-{config.region}.log",
            )
        )
        seed_sheet(sheets.url, config, scenario)
        keyfile = demo_keyfile(token_uri=f"{sheets.url}/token", client_email=f"phone-sync-{config.region}@local.test")
        yield LocalRegion(config, fhir, sheets, token, keyfile, db, fhir_oauth=fhir_oauth)
