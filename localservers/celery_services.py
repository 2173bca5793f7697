"""The services a CeleryExecutor deployment needs: a PostgreSQL database of its own and a Redis broker.

PostgreSQL and Redis run on their standard loopback ports on development and CI machines (``.ci/run``
starts them when they are down). The end-to-end tests and the benchmark each create a database of their
own and drop it afterwards; the broker uses a Redis database number picked at random.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, os.environ.get("PHONE_SYNC_E2E_PG_USER", "postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SERVICES = {"PostgreSQL": (PG_HOST, PG_PORT), "Redis": (REDIS_HOST, REDIS_PORT)}


def not_listening(service: str) -> str | None:
    """Why ``service`` cannot be used, or None when something listens on its port."""
    host, port = SERVICES[service]
    with socket.socket() as sock:
        sock.settimeout(2)
        if sock.connect_ex((host, port)) == 0:
            return None
    return f"{service} is not listening on {host}:{port} (start it as .ci/run does)"


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the Airflow metadata and the Celery results, dropped afterwards."""
    import psycopg2

    name = f"{prefix}_{secrets.token_hex(4)}"
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


def redis_url() -> str:
    """A Redis database number picked at random, so concurrent deployments do not share a broker."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{secrets.randbelow(15) + 1}"
