"""The run's note says which trigger-form controls a manual run used (``preview; rows 2-101; resend``).

A task cannot set its run's note through Airflow's task API, so the note goes through the public REST API
with the Airflow connection ``phone_sync_airflow_api`` when a deployment defines it (host: the API
server's base URL; login and password of a user allowed to edit runs, or a token as the password). Without
it the controls still show in the report row and the first task's log. A note that cannot be set never
fails the run.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from phone_sync.config import RegionConfig
from phone_sync.controls import Controls

log = logging.getLogger(__name__)

API_CONN_ID = "phone_sync_airflow_api"
TIMEOUT_SECONDS = 10


def note_controls(config: RegionConfig, context: Any, controls: Controls) -> bool:
    """Set the run's note when the run used controls; True when the note was set."""
    described = controls.describe(config)
    if not described:
        return False
    note = f"phone-sync controls: {described}"
    try:
        connection = _api_connection()
        if connection is None:
            log.info("Run note not set (no Airflow connection %r); controls: %s", API_CONN_ID, described)
            return False
        _patch_note(connection, context["dag"].dag_id if context.get("dag") else config.dag_id, context["run_id"], note)
    except Exception as exc:  # a note is worth a log line, never a failed run
        log.warning("Run note not set: %s", type(exc).__name__)
        return False
    return True


def _api_connection() -> Any:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(API_CONN_ID)
    except AirflowNotFoundException:
        return None


def _patch_note(connection: Any, dag_id: str, run_id: str, note: str) -> None:
    import requests

    base = (connection.host or "").rstrip("/")
    if "://" not in base:
        base = f"{connection.schema or 'http'}://{base}" + (f":{connection.port}" if connection.port else "")
    with requests.Session() as session:
        if connection.login:
            answer = session.post(
                f"{base}/auth/token",
                json={"username": connection.login, "password": connection.password or ""},
                timeout=TIMEOUT_SECONDS,
            )
        elif connection.password:
            answer = None
        else:  # the simple auth manager with all users admins (make standalone, the e2e harness)
            answer = session.get(f"{base}/auth/token", timeout=TIMEOUT_SECONDS)
        if answer is not None:
            answer.raise_for_status()
        token = answer.json()["access_token"] if answer is not None else connection.password
        response = session.patch(
            f"{base}/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}",
            params={"update_mask": "note"},
            json={"note": note},
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_SECONDS,
        )
        response.raise_for_status()
