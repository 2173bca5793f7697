"""FhirHook: the one place that knows a region's FHIR connection, session, pacing and retry policy."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

import requests
from airflow.sdk import BaseHook

from phone_sync.fhir.auth import TOKEN_BACKOFF, Authorizer, OAuth2ClientCredentials, Obtained, authorizer_for
from phone_sync.fhir.connection import FhirSettings, settings_from_connection
from phone_sync.fhir.errors import FhirAuthError, FhirConfigError, FhirError, FhirUnavailable
from phone_sync.fhir.profile import describe_capability
from phone_sync.fhir.token_store import TokenStore
from phone_sync.http.pacing import Backoff, RateLimiter, SharedRate
from phone_sync.http.retry import HttpRetry, RedirectRefused, RetriesExhausted, WaitOut, request_label
from phone_sync.http.session import http_session
from phone_sync.http.urls import origin, show_origin

FHIR_JSON = "application/fhir+json"
# Requests whose 403 means the credentials lack a permission (a 403 on one patient's PUT or read is that row's).
ACCESS_CHECKED = frozenset({"search", "batch", "metadata"})


class FhirHook(BaseHook):
    """Talk to one FHIR R4 server named by an Airflow connection.

    Connection fields:

    - ``host``: the FHIR base URL, e.g. ``https://fhir.example.id/fhir`` (scheme, port and path may be in it);
      a bare host name gets ``https://``. ``port`` is appended when the host has none. ``schema`` is the
      URL scheme when it is ``http``/``https``, otherwise it is read as the base path.
    - ``login`` / ``password``: OAuth2 client id / secret, or (static bearer) the token in ``password``.
    - extras: :class:`~phone_sync.fhir.connection.FhirExtras` (auth type, OAuth2 token URL, scope, client
      authentication, where ``grant_type`` travels, token margins, TLS verification, timeout), which is
      also the connection form.

    Plain ``http`` is refused unless the host is loopback (127.0.0.0/8, ::1, localhost). Every request goes
    through the project's one HTTP path (:mod:`phone_sync.http.retry`): a timeout, client-side pacing at
    ``requests_per_second`` (a :class:`SharedRate` when parallel batches share it), retries with exponential
    backoff and jitter on connection errors, 429 and 5xx (never shorter than ``Retry-After``), redirects
    followed only on the same origin. What outlives the retries raises :class:`FhirUnavailable`. A 401 makes
    an OAuth2 token refresh once; a second 401 raises :class:`FhirAuthError`.

    With ``token_store`` an OAuth2 token is shared by the region's task processes and runs (an Airflow
    Variable sealed with the PHI key; see :mod:`phone_sync.fhir.auth`); :meth:`prime_token` readies it
    before the batches start. Without one, the token lives as long as the hook.
    """

    conn_name_attr = "fhir_conn_id"
    default_conn_name = "fhir_default"
    conn_type = "fhir"
    hook_name = "FHIR"

    def __init__(
        self,
        fhir_conn_id: str = default_conn_name,
        requests_per_second: float | SharedRate | None = None,
        timeout: float = 30,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pool_size: int = 4,
        token_store: TokenStore | None = None,
        token_backoff: Backoff = TOKEN_BACKOFF,
    ) -> None:
        super().__init__()
        self.fhir_conn_id = fhir_conn_id
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        limiter = RateLimiter(requests_per_second) if requests_per_second else None
        self.retry = HttpRetry(self.backoff, limiter, sleep=sleep, service="FHIR")
        self._pool_size = pool_size
        self._token_store = token_store
        self._token_backoff = token_backoff
        self._settings: FhirSettings | None = None
        self._session: requests.Session | None = None
        self._auth: Authorizer | None = None

    # connection

    @property
    def settings(self) -> FhirSettings:
        if self._settings is None:
            self._settings = settings_from_connection(self.get_connection(self.fhir_conn_id))
        return self._settings

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def get_conn(self) -> requests.Session:
        """The hook's single pooled session (keep-alive across every request of the task)."""
        if self._session is None:
            settings = self.settings
            session = http_session(
                verify=settings.extras.verify, pool_size=self._pool_size, headers={"Accept": FHIR_JSON}
            )
            self._auth = authorizer_for(
                settings, self._token_store, sleep=self.retry.sleep, backoff=self._token_backoff
            )
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        """Absolute URL for ``path`` (relative to the base, or absolute on the same origin, e.g. a next link)."""
        base = self.base_url
        if "://" not in path:
            return urljoin(base + "/", path.lstrip("/")) if path else base
        if origin(path) != origin(base):
            raise FhirError(
                f"the server sent a link to another origin ({show_origin(path)}); refusing to send credentials there",
                conn_id=self.fhir_conn_id,
            )
        return path

    # requests

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str = "other",
        authorize: bool = True,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        wait_out: WaitOut | None = None,
    ) -> requests.Response:
        """One FHIR request through the HTTP path (pacing, auth, retries, timeout, redirect rule); returns any
        non-retryable answer.

        ``path`` is relative to the base URL, or an absolute URL on its origin (a next link). ``kind`` is the
        stats bucket (``"search"``, ``"read"``, ...). ``authorize=False`` sends no bearer and takes ``path``
        as an absolute URL (the token request, with ``auth`` for HTTP Basic and ``wait_out`` for its rate
        limit). ``params``, ``data``, ``json`` and ``headers`` go to ``requests``.
        """
        url = self.url(path) if authorize else path
        session = self.get_conn()
        label = request_label(method, url)
        authorizer = self._auth if authorize else None
        try:
            response = self.retry.send(
                session, method, url, kind=kind, label=label,
                timeout=self.settings.extras.timeout or self.timeout,
                auth_headers=(lambda: authorizer.headers(self)) if authorizer else None,
                refresh=authorizer.invalidate if authorizer and authorizer.refreshable else None,
                wait_out=wait_out, params=params, data=data, json=json, headers=headers, auth=auth,
            )
        except RetriesExhausted as exhausted:
            if exhausted.response is None:
                raise FhirUnavailable(
                    f"{label} got no answer after {exhausted.attempts} attempts ({exhausted.problem})",
                    conn_id=self.fhir_conn_id,
                ) from exhausted.error
            raise FhirUnavailable(
                f"{label} still answered {exhausted.problem} after {exhausted.attempts} attempts",
                conn_id=self.fhir_conn_id,
            ) from None
        except RedirectRefused as refused:
            raise FhirConfigError(str(refused), conn_id=self.fhir_conn_id) from None
        if response.status_code == 401 and authorize:
            raise FhirAuthError(
                f"the FHIR server refused the credentials (HTTP 401 on {label})", conn_id=self.fhir_conn_id
            )
        if response.status_code == 403 and authorize and kind in ACCESS_CHECKED:
            raise FhirAuthError(
                f"the FHIR server refused access (HTTP 403 on {label}); "
                "the credentials lack a permission this region needs",
                conn_id=self.fhir_conn_id,
            )
        return response

    # the OAuth2 token (the authorizer's TokenEndpoint)

    def prime_token(self) -> Obtained | None:
        """Ready the region's shared OAuth2 token for a run, once, before its batches; None without OAuth2."""
        self.get_conn()
        if not isinstance(self._auth, OAuth2ClientCredentials):
            return None
        return self._auth.prime(self)

    def token_request(
        self,
        url: str,
        form: dict[str, str],
        params: dict[str, str],
        basic: tuple[str, str] | None,
        wait_out: WaitOut,
    ) -> requests.Response:
        return self.request(
            "POST", url, kind="token", authorize=False, data=form, params=params or None, auth=basic,
            wait_out=wait_out,
        )

    @property
    def stats(self) -> dict[str, int | float]:
        """``requests_<kind>`` counts (their sum is the request total), retries, refreshes, seconds waited."""
        counts = self.retry.stats
        return {
            **{f"requests_{kind}": count for kind, count in counts.requests.items()},
            "retries": counts.retries,
            "token_refreshes": counts.refreshes,
            "token_grants": self._auth.granted if isinstance(self._auth, OAuth2ClientCredentials) else 0,
            "retry_wait_seconds": counts.wait_seconds,
        }

    def snapshot_stats(self) -> dict[str, int | float]:
        stats = self.stats
        limiter = self.retry.limiter
        stats["throttle_wait_seconds"] = round(limiter.waited_seconds, 3) if limiter else 0.0
        stats["retry_wait_seconds"] = round(float(stats["retry_wait_seconds"]), 3)
        return stats

    def test_connection(self) -> tuple[bool, str]:
        """The connection form's Test button: the server speaks FHIR and accepts these credentials.

        ``GET metadata`` (for OAuth2, after obtaining a token) is public on most servers, so it proves the
        URL, not the credentials: a search that returns no resources (``GET Patient?_count=0``) checks them.
        Airflow builds the hook with a task's defaults; the button answers after one attempt of each request
        instead, and does not wait out a token endpoint's rate limit. It never raises: every problem, a
        connection that cannot be read included, is the message. Messages name the step that failed, never
        a token, and never the connection id: Airflow tests a copy under a random id nobody knows.
        """
        self.retry = HttpRetry(Backoff(attempts=1), None, sleep=self.retry.sleep, service="FHIR")
        self._auth = None
        try:
            settings = self.settings
            self._settings = replace(settings, extras=settings.extras.model_copy(update={"token_wait_seconds": 0.0}))
            response = self.request("GET", "metadata", kind="metadata")
            if response.status_code != 200:
                return False, f"GET metadata answered HTTP {response.status_code}"
            try:
                body = response.json()
            except ValueError:
                return False, "GET metadata did not answer JSON"
            if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
                return False, "GET metadata did not answer a CapabilityStatement"
        except Exception as exc:
            return False, self._test_problem(exc)
        server = f"FHIR {body.get('fhirVersion', '?')} server at {self.base_url}"
        try:
            probe = self.request("GET", "Patient", params={"_count": "0"}, kind="metadata")
        except Exception as exc:
            return False, f"{server} answers metadata, but {self._test_problem(exc)}"
        if probe.status_code != 200:
            return False, f"{server} answers metadata, but GET Patient?_count=0 answered HTTP {probe.status_code}"
        accepted = {
            "oauth2": f"OAuth2 token obtained from {self.settings.token_url} and accepted",
            "bearer": "bearer token accepted",
            "none": "no authentication, Patient search allowed",
        }[self.settings.auth_type]
        return True, f"{server}: metadata OK, {accepted} (GET Patient?_count=0); {describe_capability(body)}"

    def _test_problem(self, exc: Exception) -> str:
        """What went wrong, without the connection id (see :meth:`test_connection`)."""
        if isinstance(exc, FhirError):
            return exc.reason
        return f"{type(exc).__name__}: {exc}".replace(self.fhir_conn_id, "(this connection)")
