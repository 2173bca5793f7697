"""Fixtures that run the real local FHIR server on loopback and point Airflow connections at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fhir.helpers import TOKEN, LocalFhir, set_connection, start_local_fhir


@pytest.fixture(scope="session")
def shared_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFhir]:
    server = start_local_fhir(tmp_path_factory.mktemp("fhir"), seed=500)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def fhir(shared_fhir: LocalFhir) -> LocalFhir:
    """The shared server with faults cleared and the request log reset."""
    shared_fhir.clear()
    return shared_fhir


@pytest.fixture
def fhir_factory(tmp_path: Path) -> Iterator[Callable[..., LocalFhir]]:
    """Start a dedicated server with extra CLI options (stopped after the test)."""
    started: list[LocalFhir] = []

    def start(*args: str) -> LocalFhir:
        directory = tmp_path / f"server{len(started)}"
        directory.mkdir()
        server = start_local_fhir(directory, *args)
        started.append(server)
        server.clear()  # forget the start-up health checks
        return server

    yield start
    for server in started:
        server.process.stop()


@pytest.fixture
def bearer_conn(fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, "fhir_test_bearer", host=fhir.url, password=TOKEN)
