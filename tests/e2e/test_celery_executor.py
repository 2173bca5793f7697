"""Scenarios 1 and 2 on the scale-out path: CeleryExecutor, Redis broker, PostgreSQL metadata DB and
result backend, two Celery worker processes. Mapped batches must really spread over both workers.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from localservers.scenario import generate
from localservers.stack import FhirOAuth
from tests.e2e import scenarios
from tests.e2e.harness import RegionSpec, World, running_world

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[World]:
    specs = [
        RegionSpec("e2e_celery_run", generate(500, seed=21)),
        RegionSpec("e2e_celery_outage", generate(600, seed=22)),
        # Standard OAuth2 (RFC 6749 answers, 429 with Retry-After) granting at most 2 tokens per minute.
        RegionSpec(
            "e2e_celery_oauth",
            generate(300, seed=23),
            {"batch_size": 40},
            FhirOAuth(style="oauth2", token_path="/oauth2/token", grant_limit=2),
        ),
    ]
    options: dict[str, Any] = {
        "executor": "CeleryExecutor",
        "database_url": postgres_url,
        "broker_url": redis_url,
        "celery_workers": 2,
        "worker_concurrency": 2,  # 2 x 2 slots: four parallel batches cannot all land on one worker
    }
    with running_world(tmp_path_factory.mktemp("e2e-celery"), specs, **options) as started:
        yield started


def _workers(tis: list[dict[str, Any]]) -> set[str]:
    """The Celery worker of each task instance, from the hostname it recorded (``worker1.<host>``)."""
    return {ti["hostname"].split(".", 1)[0] for ti in tis}


def test_triggered_run_completes_on_celery(world: World) -> None:
    tis = scenarios.triggered_run_completes(world, "e2e_celery_run")
    assert {ti["queue"] for ti in tis} == {world.cluster.queue}
    assert _workers(tis) == {"worker1", "worker2"}, f"batches ran on {_workers(tis)} only"


def test_outage_then_clear_on_celery(world: World) -> None:
    result = scenarios.outage_then_clear(world, "e2e_celery_outage")
    assert _workers(result["batches"]) <= {"worker1", "worker2"}
    assert {ti["executor"] for ti in result["batches"]} <= {None, "CeleryExecutor"}


def test_shared_token_across_celery_workers(world: World) -> None:
    tis = scenarios.shared_token(world, "e2e_celery_oauth")
    assert _workers(tis) == {"worker1", "worker2"}, f"batches ran on {_workers(tis)} only"


def test_no_patient_data_at_rest_in_postgres_or_the_logs(world: World, postgres_url: str) -> None:
    """Last: a pg_dump of the CeleryExecutor's metadata database and every log hold no identifier or phone."""
    dsn = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump (PostgreSQL's client) is installed with the server"
    dump = subprocess.run([pg_dump, "--no-owner", dsn], capture_output=True, check=True, timeout=300).stdout
    assert b"CREATE TABLE public.xcom" in dump
    scenarios.assert_no_phi_at_rest(world, [("pg_dump", dump)])
