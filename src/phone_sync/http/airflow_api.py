"""Airflow's public REST API v2 through the one HTTP path: the run note (a task) and ``phone-sync-unseal --api``.

Both send a bearer token (and the run note a password) to the API server, and unseal receives patient
data: the address must be https, plain http only to a loopback host, as for every product request.
"""

from __future__ import annotations

from typing import Any

import requests

from phone_sync.http.pacing import Backoff
from phone_sync.http.retry import HttpRetry, RetriesExhausted, request_label
from phone_sync.http.secrets import mask_secret
from phone_sync.http.session import http_session
from phone_sync.http.urls import insecure_reason

API_BACKOFF = Backoff(attempts=3, base=0.5, cap=4.0)


class AirflowApiError(RuntimeError):
    """The API could not be used: an insecure address, no answer, or a refusal. Never holds a token."""


class AirflowApi:
    """One API server at ``base_url`` (``https://airflow.example``), with a bearer ``token`` or one from
    :meth:`log_in`. Use as a context manager (the session is closed at the end)."""

    def __init__(
        self, base_url: str, *, token: str | None = None, timeout: float = 30.0, backoff: Backoff = API_BACKOFF
    ) -> None:
        self.base_url = base_url.rstrip("/")
        reason = insecure_reason(self.base_url)
        if reason:
            raise AirflowApiError(f"the Airflow API URL {reason}")
        self.token = token
        self.timeout = timeout
        self.retry = HttpRetry(backoff, service="Airflow API")
        self.session = http_session()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def log_in(self, username: str | None = None, password: str | None = None) -> None:
        """A token from ``/auth/token``: for a user and password, or, with neither, as the simple auth
        manager hands one to anyone when all users are admins (``make standalone``, the e2e harness)."""
        if username:
            mask_secret(password)
            answer = self.call("POST", "/auth/token", json={"username": username, "password": password or ""})
        else:
            answer = self.call("GET", "/auth/token")
        token = answer.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise AirflowApiError("Airflow API /auth/token answered without an access_token")
        mask_secret(token)
        self.token = token

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method base_url+path`` through the retry path; any answer of 400 or more raises."""
        url = self.base_url + path
        label = request_label(method, url)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self.retry.send(self.session, method, url, timeout=self.timeout, headers=headers, **kwargs)
        except RetriesExhausted as exhausted:
            raise AirflowApiError(f"Airflow API {exhausted}") from None
        if response.status_code >= 400:
            raise AirflowApiError(f"Airflow API {label} answered HTTP {response.status_code}")
        return response
