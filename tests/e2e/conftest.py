"""Services the CeleryExecutor deployment needs (``localservers.celery_services``), as session fixtures.

On a developer machine without PostgreSQL or Redis the Celery tests skip; in CI, where ``.ci/run``
starts both, they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from localservers import celery_services


def _require(service: str) -> None:
    """Skip on a developer machine without the service; fail in CI, where .ci/run starts it."""
    problem = celery_services.not_listening(service)
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the Airflow metadata and the Celery results; dropped at the end."""
    _require("PostgreSQL")
    with celery_services.postgres_database("phone_sync_e2e") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require("Redis")
    return celery_services.redis_url()
