"""Whole-DAG runs through ``dag.test()`` on SQLite against a region's local FHIR server and Sheets emulator.

The fixtures live in ``tests/conftest.py``; the helpers here read back what a run left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pendulum
import requests

from localservers.stack import LocalRegion
from phone_sync.config import RegionConfig
from phone_sync.dag_factory import build_region_dag
from phone_sync.regions import load_region

PROJECT_REGIONS = Path(__file__).resolve().parents[1] / "include" / "regions"
DEMO_REGION = PROJECT_REGIONS / "demo.json"


FAST_RETRIES = {"count": 1, "delay_seconds": 1, "max_delay_seconds": 2}
# Expected report category -> how that row's status starts.
STATUS_PREFIX = {
    "updated": "success",
    "unchanged": "unchanged",
    "not_found": "failed: patient not found",
    "invalid_phone": "failed: invalid phone",
    "skipped": "skipped: ",
    "blank": "",
}


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied key by key, nested objects merged rather than replaced."""
    result = dict(base)
    for key, value in changes.items():
        nested = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if nested else value
    return result


def region_file(directory: Path, **changes: Any) -> RegionConfig:
    """The demo region with fast task retries (and ``changes``), written where the DAG folder reads it."""
    data = merged(json.loads(DEMO_REGION.read_text(encoding="utf-8")), {"retries": FAST_RETRIES, **changes})
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data['region']}.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return load_region(path)


MakeRegion = Callable[..., LocalRegion]


def run_dag(region: LocalRegion, day: date, config: RegionConfig | None = None) -> Any:
    """Run the region's DAG (or ``config``'s) for the data interval that ends on ``day`` (01:00 local time)."""
    config = config or region.config
    logical = pendulum.instance(datetime.combine(day, time(1)), tz=config.timezone)
    return build_region_dag(config).test(logical_date=logical)


def statuses(region: LocalRegion) -> dict[int, str]:
    """Sheet row number -> status text, as the emulator holds it."""
    header, *rows = region.cells()
    col = header.index(region.config.sheets.columns.status)
    return {
        number: str(row[col]) if len(row) > col and row[col] is not None else ""
        for number, row in enumerate(rows, start=2)
    }


def report_rows(region: LocalRegion) -> list[dict[str, Any]]:
    """The run report worksheet as dicts; an absent worksheet is no report."""
    try:
        header, *rows = region.cells(region.config.sheets.report_worksheet)
    except requests.HTTPError:
        return []
    # Sheets leaves trailing empty cells out of a row.
    return [dict(zip(header, [*row, *[""] * (len(header) - len(row))], strict=False)) for row in rows]


def phones_by_identifier(region: LocalRegion) -> dict[str, list[dict[str, Any]]]:
    """identifier -> the patients carrying it (id, versionId, current phone, telecom)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for patient in region.patients():
        phones = [t for t in patient.get("telecom", []) if t.get("system") == "phone" and t.get("use") != "old"]
        for ident in patient.get("identifier", []):
            found.setdefault(ident["value"], []).append(
                {
                    "id": patient["id"],
                    "version": int(patient["meta"]["versionId"]),
                    "phone": phones[0]["value"] if phones else None,
                    "telecom": patient.get("telecom", []),
                }
            )
    return found


def ti_states(dag_run: Any) -> dict[tuple[str, int], str]:
    return {key: state for key, (state, _) in ti_tries(dag_run).items()}


def batch_labels(dag_run: Any) -> dict[int, str | None]:
    """Map index -> the grid's name of each batch (``rendered_map_index``)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            ti.map_index: ti.rendered_map_index
            for ti in dag_run.get_task_instances(session=session)
            if ti.task_id == "process_batch"
        }


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """The value ``task_id`` (unmapped) pushed under ``key`` in ``dag_run``, as stored."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        [row] = session.query(XComModel).filter_by(run_id=dag_run.run_id, task_id=task_id, key=key).all()
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


def ti_tries(dag_run: Any) -> dict[tuple[str, int], tuple[str, int]]:
    """(task id, map index) -> (state, try number) of every task instance of the run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            (ti.task_id, ti.map_index): (str(ti.state), ti.try_number)
            for ti in dag_run.get_task_instances(session=session)
        }
