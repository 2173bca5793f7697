"""Helpers for the FHIR tests: the local server handle, connections, unique NIKs."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from localservers.fhir.seed import NIK_SYSTEM, make_patient, seed_patients
from localservers.process import ServerProcess
from phone_sync.config import FhirConfig, InteractionPins, PhoneRules
from phone_sync.contracts import BatchRow
from phone_sync.fhir.profile_store import SharedProfile
from phone_sync.fhir.search import Found, PatientSearch
from phone_sync.http.pacing import Backoff

TOKEN = "static-token-for-tests-0001"
CLIENT_ID = "phone-sync-tests"
CLIENT_SECRET = "client-secret-for-tests-0001"
FAST_BACKOFF = Backoff(attempts=4, base=0.01, cap=0.5)
_nik_counter = itertools.count(1)


def update(row: int, identifier: str, phone: str, effective: date) -> BatchRow:
    """One batch row as clean_phones hands it to the FHIR client."""
    return BatchRow(row=row, identifier=identifier, phone=phone, effective=effective)


def find_patients(
    hook: Any, system: str, values: list[str], chunk_size: int | None = None, page_size: int = 100
) -> Found:
    """One search of ``values`` with the server's profile learned from scratch (no pins, nothing stored);
    ``chunk_size`` by default the region setting's default."""
    chunk = chunk_size or FhirConfig.model_fields["search_chunk_size"].default
    return PatientSearch(hook, SharedProfile(hook, InteractionPins()), system, chunk, page_size).find(values)


def new_nik() -> str:
    """A 16-digit NIK-style identifier no other test uses (prefix 9 keeps it clear of the seeded ones)."""
    return f"97{next(_nik_counter):014d}"


@dataclass
class LocalFhir:
    """A running local FHIR server plus the admin calls tests need."""

    url: str
    process: ServerProcess

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        return session

    def faults(self, **knobs: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_admin/faults", json=knobs, timeout=5)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        requests.delete(f"{self.url}/_admin/faults", timeout=5).raise_for_status()
        requests.post(f"{self.url}/_admin/reset-stats", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_admin/stats", timeout=5).json()

    def requests_log(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/_admin/requests", timeout=5).json()

    def create(self, nik: str, **fields: Any) -> dict[str, Any]:
        response = self._session().post(f"{self.url}/Patient", json=make_patient(nik, **fields), timeout=5)
        assert response.status_code == 201, response.text
        return response.json()

    def create_raw(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = self._session().post(f"{self.url}/Patient", json=resource, timeout=5)
        assert response.status_code == 201, response.text
        return response.json()

    def read(self, patient_id: str) -> dict[str, Any]:
        response = self._session().get(f"{self.url}/Patient/{patient_id}", timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = self._session().put(f"{self.url}/Patient/{resource['id']}", json=resource, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()


def start_local_fhir(tmp: Path, *args: str, seed: int = 0) -> LocalFhir:
    db = tmp / "fhir.sqlite"
    if seed:
        seed_patients(db, seed)
    process = ServerProcess(
        "localservers.fhir",
        ["--db", str(db), "--token", TOKEN, "--oauth-client", f"{CLIENT_ID}:{CLIENT_SECRET}", *args],
        health_path="/metadata",
        log_path=tmp / "server.log",
    ).start()
    return LocalFhir(process.url, process)


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> str:
    """Define an Airflow connection the way deployments do: ``AIRFLOW_CONN_<ID>`` holding JSON."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "fhir", **fields}))
    return conn_id


def fhir_config(**overrides: Any) -> FhirConfig:
    return FhirConfig(**{"conn_id": "fhir_test_bearer", "identifier_system": NIK_SYSTEM, **overrides})


PHONE_RULES = PhoneRules()


class MetadataVariables:
    """Airflow Variables in the test session's metadata DB: the table the execution API writes for tasks.

    Task processes reach it through ``airflow.sdk.Variable`` (the store's default); a test outside a task
    has no execution API, so it reads and writes the same rows through the ORM.
    """

    def get(self, key: str) -> str | None:
        from airflow.models.variable import Variable

        return Variable.get(key, default_var=None)

    def set(self, key: str, value: str, description: str) -> None:
        from airflow.models.variable import Variable

        Variable.set(key, value, description=description)


def oauth_conn(
    monkeypatch: pytest.MonkeyPatch,
    server: LocalFhir,
    conn_id: str,
    secret: str = CLIENT_SECRET,
    token_url: str = "/oauth2/token",  # noqa: S107 - a path, not a password
    **extra: object,
) -> str:
    """An OAuth2 client-credentials connection to ``server`` (client id and secret as login and password)."""
    return set_connection(
        monkeypatch,
        conn_id,
        host=server.url,
        login=CLIENT_ID,
        password=secret,
        extra={"auth_type": "oauth2", "token_url": token_url, **extra},
    )
