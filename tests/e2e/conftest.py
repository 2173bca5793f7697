"""Services the CeleryExecutor deployment needs: a PostgreSQL database of its own and a Redis broker.

PostgreSQL and Redis run on their standard loopback ports on development and CI machines (``.ci/run``
starts them when they are down). Each test session creates its own database and drops it afterwards;
the broker uses a Redis database number picked at random and a queue named per deployment.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator

import pytest

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, os.environ.get("PHONE_SYNC_E2E_PG_USER", "postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def _require(service: str, host: str, port: int) -> None:
    """Skip on a developer machine without the service; fail in CI, where .ci/run starts it."""
    if _listening(host, port):
        return
    message = f"{service} is not listening on {host}:{port} (start it as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the Airflow metadata and the Celery results; dropped at the end."""
    _require("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg2

    name = f"phone_sync_e2e_{secrets.token_hex(4)}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{secrets.randbelow(15) + 1}"
