"""Test-wide set-up: an isolated AIRFLOW_HOME (SQLite) before anything imports Airflow, and the
fixtures that run a region's DAG against its own local FHIR server and Sheets emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from localservers.airflow_env import airflow_env

os.environ.update(airflow_env(Path(tempfile.mkdtemp(prefix="phone-sync-airflow-"))))

from localservers.scenario import Scenario
from localservers.stack import FhirOAuth, LocalRegion, local_region
from phone_sync.regions import REGIONS_DIR_ENV
from tests.regions import MakeRegion, region_file


@pytest.fixture(autouse=True)
def _no_parsing_context() -> Iterator[None]:
    """Airflow's parsing-context manager sets, but never removes, the variables that tell a DAG file which
    DAG a task process parses for; a task run in this process (dag.test()) would leave later parses building
    that one DAG only. Every test starts and ends without them, as a fresh process would."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID

    names = (_AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID)
    for name in names:
        os.environ.pop(name, None)
    yield
    for name in names:
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the session's SQLite metadata DB once."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)


def _forget_shared_state() -> None:
    """A new region's world starts without what earlier tests' runs shared through Airflow Variables (tokens,
    the Sheets quota ledger): their servers are gone, and a ledger would hold their minute's requests."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Variable).filter(Variable.key.like("phone\\_sync\\_\\_%", escape="\\")).delete(
            synchronize_session=False
        )


@pytest.fixture
def make_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: None) -> Iterator[MakeRegion]:
    """Start a region's local servers for a scenario and point its Airflow connections at them.

    ``make_region(scenario, **changes)`` writes the demo region (fast task retries, ``changes``
    applied) where the DAG folder reads region files, and returns the running :class:`LocalRegion`;
    ``fhir_oauth=FhirOAuth(...)`` makes its FHIR connection an OAuth2 client (SATUSEHAT-style by default).
    """
    regions = tmp_path / "regions"
    monkeypatch.setenv(REGIONS_DIR_ENV, str(regions))
    _forget_shared_state()
    with ExitStack() as stack:

        def start(
            scenario: Scenario, fhir_args: tuple[str, ...] = (), fhir_oauth: FhirOAuth | None = None, **changes: Any
        ) -> LocalRegion:
            config = region_file(regions, **changes)
            servers = tmp_path / "servers"
            region = stack.enter_context(
                local_region(config, scenario, servers, fhir_args=fhir_args, fhir_oauth=fhir_oauth)
            )
            for name, value in region.connections.items():
                monkeypatch.setenv(name, value)
            return region

        yield start
