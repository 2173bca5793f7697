"""Links into the Airflow UI, so an operator goes from a sheet row or a report row to the right place."""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_BASE_URL = "http://localhost:8080"


def base_url() -> str:
    """Airflow's own ``[api] base_url``: the one place a deployment says where its UI lives."""
    from airflow.sdk.configuration import conf

    return (conf.get("api", "base_url", fallback=None) or DEFAULT_BASE_URL).rstrip("/")


def run_link(dag_id: str, run_id: str, *, base: str | None = None) -> str:
    """The DAG run's page: the report row, the alerts and the run's note link here."""
    return f"{base or base_url()}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_link(dag_id: str, run_id: str, task_id: str, map_index: int | None = None, *, base: str | None = None) -> str:
    """The task instance page (a mapped one by its index, when it is 0 or more); its default tab is the log."""
    link = f"{run_link(dag_id, run_id, base=base)}/tasks/{quote(task_id)}"
    return link if map_index is None or map_index < 0 else f"{link}/mapped/{map_index}"
