"""Links into the Airflow UI, so an operator goes from a sheet row or a report row to the right place."""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_BASE_URL = "http://localhost:8080"


def base_url() -> str:
    """Airflow's own ``[api] base_url``: the one place a deployment says where its UI lives."""
    from airflow.sdk.configuration import conf

    return (conf.get("api", "base_url", fallback=None) or DEFAULT_BASE_URL).rstrip("/")


def run_link(base: str, dag_id: str, run_id: str) -> str:
    return f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_link(base: str, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> str:
    """The task instance page; its default tab is the log."""
    link = f"{run_link(base, dag_id, run_id)}/tasks/{quote(task_id)}"
    return link if map_index is None else f"{link}/mapped/{map_index}"
