"""The run's note says which trigger-form controls a manual run used (``preview; rows 2-101; resend``).

A task cannot set its run's note through Airflow's task API, so the note goes through the public REST API
with the Airflow connection ``phone_sync_airflow_api`` when a deployment defines it (host: the API
server's base URL, https unless the host is loopback, a bare host name gets https; login and password of a
user allowed to edit runs, or a token as the password). It goes through the project's one HTTP path
(:class:`~phone_sync.http.airflow_api.AirflowApi`). Without the connection the controls still show in the
report row and the first task's log. A note that cannot be set never fails the run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from phone_sync.config import RegionConfig
from phone_sync.controls import Controls
from phone_sync.errors import SetupError
from phone_sync.http.airflow_api import AirflowApiError

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

API_CONN_ID = "phone_sync_airflow_api"
TIMEOUT_SECONDS = 10
EXPLAINED = (AirflowApiError, SetupError)  # their messages name no secret: worth logging whole


def note_controls(config: RegionConfig, context: Context, controls: Controls) -> bool:
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
    except EXPLAINED as exc:
        log.warning("Run note not set: %s", exc)
        return False
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
    from phone_sync.http.airflow_api import AirflowApi
    from phone_sync.http.urls import with_default_scheme

    host = (connection.host or "").rstrip("/")
    base = with_default_scheme(host, connection.schema or "https")
    if connection.port and "://" not in host:
        base += f":{connection.port}"
    with AirflowApi(base, timeout=TIMEOUT_SECONDS) as api:
        if connection.login:
            api.log_in(connection.login, connection.password)
        elif connection.password:
            api.token = connection.password
        else:  # the simple auth manager with all users admins (make standalone, the e2e harness)
            api.log_in()
        api.call(
            "PATCH",
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}",
            params={"update_mask": "note"},
            json={"note": note},
        )
