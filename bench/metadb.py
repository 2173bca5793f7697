"""What a run leaves in Airflow's metadata database: XCom and rendered-field bytes, sealed and opened.

Works on SQLite and PostgreSQL (SQLAlchemy, Airflow's own dependency). Sizes are the JSON text as the
database stores it: ``sum(length(value))``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, text

from phone_sync import unseal
from phone_sync.crypto import Sealer

TABLES = {
    "xcom": "value",
    "rendered_task_instance_fields": "rendered_fields",
}


def table_bytes(url: str) -> dict[str, int]:
    """Bytes of JSON held by the xcom and rendered_task_instance_fields tables now."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: int(connection.execute(
                    text(f"SELECT coalesce(sum(length(CAST({column} AS TEXT))), 0) FROM {table}")  # noqa: S608
                ).scalar() or 0)
                for table, column in TABLES.items()
            }
    finally:
        engine.dispose()


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """MiB added per table between two ``table_bytes`` readings."""
    return {table: round((after[table] - before[table]) / 2**20, 3) for table in TABLES}


def xcom_values(url: str, dag_id: str, run_id: str) -> list[tuple[str, int, str, Any]]:
    """(task_id, map_index, key, value) of every XCom of one run."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = :dag AND run_id = :run"),
                {"dag": dag_id, "run": run_id},
            ).all()
        # SQLite hands back the JSON text (a bare number as a number: column affinity); PostgreSQL's driver parses it.
        as_text = engine.dialect.name == "sqlite"
    finally:
        engine.dispose()
    return [(task, index, key, json.loads(value) if as_text and isinstance(value, str) else value)
            for task, index, key, value in rows]


def opened(value: Any, sealer: Sealer) -> Any:
    """The same value with every sealed contract opened in place: what plain JSON XComs would hold."""
    if isinstance(value, list):
        return [opened(item, sealer) for item in value]
    if isinstance(value, dict):
        if isinstance(value.get("sealed"), str) and "contract" in value:
            plain = {key: item for key, item in value.items() if key != "sealed"}
            return plain | unseal.opened(value, sealer)
        return {key: opened(item, sealer) for key, item in value.items()}
    return value


def xcom_sizes(url: str, dag_id: str, run_id: str, sealer: Sealer) -> dict[str, Any]:
    """A run's XCom bytes as stored (sealed) and as the same contracts would take unsealed, per task."""
    per_task: dict[str, dict[str, int]] = {}
    for task, _index, _key, value in xcom_values(url, dag_id, run_id):
        entry = per_task.setdefault(task, {"values": 0, "sealed_bytes": 0, "plain_bytes": 0})
        entry["values"] += 1
        entry["sealed_bytes"] += len(json.dumps(value))
        entry["plain_bytes"] += len(json.dumps(opened(value, sealer)))
    return {
        "sealed_bytes": sum(e["sealed_bytes"] for e in per_task.values()),
        "plain_bytes": sum(e["plain_bytes"] for e in per_task.values()),
        "per_task": per_task,
    }
