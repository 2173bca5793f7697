"""The alert webhook's hook: Airflow's ``HttpHook`` with this project's URL rules and extras.

Imported only when an alert is posted: the HTTP provider (and aiohttp under it) stays out of DAG parsing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk.log import mask_secret
from requests import Session

from phone_sync.alerts.notifiers import webhook_url


class WebhookHook(HttpHook):
    """POST to the URL an ``http`` connection stands for (see :func:`webhook_url`).

    Differences from ``HttpHook``: the URL follows :func:`webhook_url`; only the ``headers`` extra
    becomes headers (HttpHook would send every extra, ``text_only`` and ``endpoint`` too, as a header);
    basic auth from login/password (an empty password when none is set). The URL is registered with
    Airflow's secrets masker, as its path or query holds the webhook's secret and connection errors
    (which HttpHook logs) name it.
    """

    def __init__(self, http_conn_id: str) -> None:
        super().__init__(method="POST", http_conn_id=http_conn_id)

    def _set_base_url(self, connection: Any) -> None:
        url = webhook_url(connection)
        parts = urlsplit(url)
        mask_secret(url)
        mask_secret(parts._replace(scheme="", netloc="").geturl())  # "/services/T/B/X?key=...", as errors show it
        self.base_url = url
        self._base_url_initialized = True

    def _extract_auth(self, connection: Any) -> tuple[str, str] | None:
        return (connection.login, connection.password or "") if connection.login else None

    def _configure_session_from_extra(
        self, session: Session, connection: Any, extra_options: dict[str, Any]
    ) -> Session:
        headers = connection.extra_dejson.get("headers") or {}
        session.headers.update({"Content-Type": "application/json", **headers})
        self.merged_extra = dict(extra_options)
        return session
