"""Fixtures: one Sheets emulator process for the folder, a fresh spreadsheet and hook per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from localservers.process import ServerProcess
from phone_sync.http.pacing import Backoff

FAST_BACKOFF = Backoff(attempts=8, base=0.05, cap=0.5)
HIGH_QUOTA = 1_000_000  # the whole suite runs as one user; quotas are lowered per test when tested
DEFAULT_SETTINGS = {
    "read_per_user": HIGH_QUOTA,
    "write_per_user": HIGH_QUOTA,
    "read_per_project": HIGH_QUOTA,
    "write_per_project": HIGH_QUOTA,
    "window_seconds": 60.0,
    "latency_ms": 0.0,
    "allow_anonymous": True,
}


@dataclass
class Emulator:
    """Client for the emulator's ``/_emulator/`` control API: what tests assert on."""

    url: str

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.url + "/_emulator" + path, timeout=60, **kwargs)
        assert response.ok, response.text
        return response.json()

    def create(self, spreadsheet_id: str, sheets: list[dict[str, Any]]) -> None:
        self._call("POST", "/spreadsheets", json={"spreadsheet_id": spreadsheet_id, "sheets": sheets})

    def cells(self, spreadsheet_id: str, title: str, cell_range: str | None = None, view: str = "typed") -> list:
        params = {"view": view, **({"range": cell_range} if cell_range else {})}
        return self._call("GET", f"/spreadsheets/{spreadsheet_id}/sheets/{title}/cells", params=params)["rows"]

    def grid(self, spreadsheet_id: str, title: str) -> dict[str, Any]:
        return self._call("GET", f"/spreadsheets/{spreadsheet_id}/sheets/{title}/cells", params={"range": "A1:A1"})

    def column_values(self, spreadsheet_id: str, title: str, column: str, first: int, last: int) -> list[object]:
        rows = self.cells(spreadsheet_id, title, f"{column}{first}:{column}{last}", view="unformatted")
        return [line[0] if line else "" for line in rows] + [""] * (last - first + 1 - len(rows))

    def edit(self, spreadsheet_id: str, title: str, *edits: dict[str, Any]) -> None:
        self._call("POST", f"/spreadsheets/{spreadsheet_id}/sheets/{title}/edits", json=list(edits))

    def counts(self) -> dict[str, Any]:
        return self._call("GET", "/requests")

    def reset_counts(self) -> None:
        self._call("POST", "/requests/reset")

    def configure(self, **settings: Any) -> None:
        self._call("PUT", "/config", json=settings)

    def metadata(self, spreadsheet_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/v4/spreadsheets/{spreadsheet_id}", timeout=10)
        assert response.ok, response.text
        return response.json()


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log_path = tmp_path_factory.mktemp("sheets-emulator") / "emulator.log"
    server = ServerProcess(
        "localservers.sheets", ["--allow-anonymous"], health_path="/_emulator/health", log_path=log_path
    )
    with server:
        yield server


@pytest.fixture
def emulator(emulator_process: ServerProcess) -> Iterator[Emulator]:
    client = Emulator(emulator_process.url)
    client.configure(**DEFAULT_SETTINGS)
    client.reset_counts()
    yield client
    client.configure(**DEFAULT_SETTINGS)


@pytest.fixture
def spreadsheet_id() -> str:
    return "test-" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_connection(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Callable[..., str]:
    """An Airflow connection (environment variable) to the emulator; returns its conn_id."""

    def make(conn_id: str = "sheets_test", **extra: Any) -> str:
        extra = {"sheets_api_url": emulator.url, **extra}
        if "keyfile_dict" not in extra and "key_path" not in extra:
            extra.setdefault("is_anonymous", True)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "google_cloud_platform", "extra": extra}),
        )
        return conn_id

    return make


@pytest.fixture
def make_hook(make_connection: Callable[..., str]) -> Callable[..., Any]:
    from phone_sync.sheets.hook import SheetsHook

    def make(requests_per_minute: int = 60_000, backoff: Backoff = FAST_BACKOFF, **extra: Any) -> SheetsHook:
        conn_id = make_connection(**extra)
        return SheetsHook(conn_id, requests_per_minute=requests_per_minute, backoff=backoff, timeout=30)

    return make


@pytest.fixture
def hook(make_hook: Callable[..., Any]) -> Any:
    return make_hook()
