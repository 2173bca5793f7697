"""A small DAG shaped like a region DAG (extract -> mapped process_batch -> run_report), wired to the
alerts the way ``dag_factory`` wires them, whose failures are chosen per run through ``dag_run.conf``:

* ``failing_batches``: batch labels (``rows 27-51``) that raise on every try;
* ``invalid_per_batch``: rows per batch reported as ``invalid phone``;
* ``fail_extract``: ``extract_rows`` raises, so no batch ever runs.

Its rows carry made-up patient data, and its errors quote it, so tests can prove no alert repeats it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from phone_sync.alerts import batch_callbacks, check_failure_rate, dag_callbacks
from phone_sync.config import RegionConfig

REGION = "alerts_probe"
BATCHES, BATCH_SIZE = 4, 25
PATIENT_NAMES = ("Siti Aminah", "Budi Santoso")


def patient_identifier(row: int) -> str:
    return f"330201{row:010d}"


def patient_phone(row: int) -> str:
    return f"+62812{row:07d}"


def probe_config(**alerts: Any) -> RegionConfig:
    """The probe region: one fast retry per task, alerts to the given channels."""
    return RegionConfig.model_validate(
        {
            "region": REGION,
            "display_name": "Alerts probe",
            "owner": "owner@example.org",
            "schedule": None,
            "start_date": date(2026, 1, 1),
            "sheets": {"conn_id": "probe_sheets", "spreadsheet_id": "probe-sheet", "worksheet": "patients"},
            "fhir": {"conn_id": "probe_fhir", "identifier_system": "https://example.org/nik"},
            "batch_size": BATCH_SIZE,
            "retries": {"count": 1, "delay_seconds": 0, "max_delay_seconds": 0},
            "alerts": alerts,
        }
    )


def _batches() -> list[dict[str, Any]]:
    batches = []
    for index in range(BATCHES):
        first = 2 + index * BATCH_SIZE
        rows = range(first, first + BATCH_SIZE)
        batches.append(
            {
                "index": index,
                "label": f"rows {first}-{first + BATCH_SIZE - 1}",
                "rows": [[r, patient_identifier(r), patient_phone(r), PATIENT_NAMES[r % 2]] for r in rows],
            }
        )
    return batches


def build_probe_dag(config: RegionConfig) -> DAG:
    @dag(
        dag_id=config.dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        default_args={"retries": config.retries.count, "retry_delay": timedelta(seconds=0)},
        **dag_callbacks(config),
    )
    def alerts_probe() -> None:
        @task
        def extract_rows() -> list[dict[str, Any]]:
            if get_current_context()["dag_run"].conf.get("fail_extract"):
                raise RuntimeError(f"sheet unreadable at {patient_identifier(2)} {PATIENT_NAMES[0]}")
            return _batches()

        @task(map_index_template="{{ batch_label }}", **batch_callbacks(config))
        def process_batch(batch: dict[str, Any]) -> dict[str, Any]:
            context = get_current_context()
            context["batch_label"] = batch["label"]  # type: ignore[typeddict-unknown-key]
            conf = context["dag_run"].conf
            if batch["label"] in conf.get("failing_batches", []):
                row = batch["rows"][0]
                raise RuntimeError(f"FHIR down updating {row[1]} ({row[3]}) to {row[2]}")
            invalid = int(conf.get("invalid_per_batch", 0))
            return {"rows": len(batch["rows"]), "invalid": invalid}

        @task(trigger_rule="all_done")
        def run_report(batches: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> dict[str, Any]:
            context = get_current_context()
            done = list(outcomes)
            rows = sum(len(b["rows"]) for b in batches)
            invalid = sum(o["invalid"] for o in done)
            failed = rows - sum(o["rows"] for o in done)
            values = {
                "run id": context["run_id"],
                "rows read": rows,
                "updated": rows - invalid - failed,
                "unchanged": 0,
                "not found": 0,
                "invalid phone": invalid,
                "conflicts": 0,
                "failed": failed,
                "skipped": 0,
                "batches failed": len(batches) - len(done),
                "identifier sample": patient_identifier(2),  # not a report key: must never reach an alert
            }
            check_failure_rate(config, values, context)
            if failed:
                context["ti"].xcom_push(key="report", value=values)
                raise AirflowFailException(f"{len(batches) - len(done)} batch(es) failed")
            return values

        batches = extract_rows()
        run_report(batches, process_batch.expand(batch=batches))

    return alerts_probe()
