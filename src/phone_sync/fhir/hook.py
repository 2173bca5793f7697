"""FhirHook: the one place that knows a region's FHIR connection, session, pacing and retry policy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter

from phone_sync.fhir.auth import Authorizer, authorizer_for
from phone_sync.fhir.connection import FhirSettings, settings_from_connection
from phone_sync.fhir.errors import FhirAuthError, FhirError, FhirUnavailable
from phone_sync.http.pacing import RETRYABLE_STATUS, Backoff, RateLimiter, parse_retry_after

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class FhirHook(BaseHook):
    """Talk to one FHIR R4 server named by an Airflow connection.

    Connection fields:

    - ``host``: the FHIR base URL, e.g. ``https://fhir.example.id/fhir`` (scheme, port and path may be in it);
      a bare host name gets ``https://``. ``port`` is appended when the host has none. ``schema`` is the
      URL scheme when it is ``http``/``https``, otherwise it is read as the base path.
    - ``login`` / ``password``: OAuth2 client id / secret, or (static bearer) the token in ``password``.

    Extras (all optional except ``token_url`` for OAuth2):

    - ``auth_type``: ``"bearer"`` (default when a password is set), ``"oauth2"`` (client credentials) or ``"none"``.
    - ``token_url``: OAuth2 token endpoint, absolute or relative to the base URL (e.g. ``/oauth2/token``).
    - ``scope``: OAuth2 scope sent with the token request.
    - ``client_auth``: ``"body"`` (client id/secret in the form, as SATUSEHAT expects; default) or ``"basic"``.
    - ``refresh_margin_seconds``: refresh a token this long before it expires (default 60, at most 10% of
      its lifetime).
    - ``verify``: ``true``/``false`` or a CA bundle path for TLS verification (default true).
    - ``timeout``: seconds per request, overriding the hook argument.

    Plain ``http`` is refused unless the host is loopback (127.0.0.0/8, ::1, localhost). Every request gets a
    timeout, client-side pacing at ``requests_per_second``, and retries with exponential backoff and jitter on
    connection errors, 429 and 5xx (never shorter than ``Retry-After``); what outlives the retries raises
    :class:`FhirUnavailable`. A 401 makes an OAuth2 token refresh once; a second 401 raises :class:`FhirAuthError`.
    """

    conn_name_attr = "fhir_conn_id"
    default_conn_name = "fhir_default"
    conn_type = "fhir"
    hook_name = "FHIR"

    def __init__(
        self,
        fhir_conn_id: str = default_conn_name,
        requests_per_second: float | None = None,
        timeout: float = 30,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        self.fhir_conn_id = fhir_conn_id
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.limiter = RateLimiter(requests_per_second) if requests_per_second else None
        self._sleep = sleep
        self._pool_size = pool_size
        self._settings: FhirSettings | None = None
        self._session: requests.Session | None = None
        self._auth: Authorizer | None = None
        # Request counts are ``requests_<kind>`` (their sum is the request total); the rest are not counts.
        self.stats: dict[str, int | float] = {
            "retries": 0,
            "token_refreshes": 0,
            "retry_wait_seconds": 0.0,
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {
                "host": "FHIR base URL",
                "login": "OAuth2 client id",
                "password": "Bearer token or OAuth2 client secret",
                "schema": "Scheme (https)",
            },
            "placeholders": {
                "host": "https://fhir.example.id/fhir",
                "extra": '{"auth_type": "oauth2", "token_url": "https://auth.example.id/oauth2/token", "scope": ""}',
            },
        }

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
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self._pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"Accept": FHIR_JSON, "User-Agent": "region-phone-sync"})
            session.verify = settings.verify
            self._auth = authorizer_for(settings)
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
        target, origin = urlsplit(path), urlsplit(base)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            raise FhirError(
                f"connection '{self.fhir_conn_id}': the server sent a link to another origin "
                f"({target.scheme}://{target.hostname}); refusing to send credentials there"
            )
        return path

    # requests

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One FHIR request with pacing, auth, retries and a timeout; returns any non-retryable answer.

        Extra keywords: ``kind`` (stats bucket, e.g. ``"search"``) and ``authorize`` (False for the token
        request, which must not carry the bearer); the rest go to ``requests``.
        """
        kind = kwargs.pop("kind", "other")
        with_auth = kwargs.pop("authorize", True)
        url = self.url(path) if with_auth else path
        session = self.get_conn()
        kwargs.setdefault("timeout", self.settings.timeout or self.timeout)
        base_headers = dict(kwargs.pop("headers", None) or {})
        label = f"{method} {urlsplit(url).path or '/'}"  # never the query: it may carry search values
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = dict(base_headers)
            if with_auth:
                assert self._auth is not None
                headers.update(self._auth.headers(self._fetch_token))
            self._pace()
            self.stats[f"requests_{kind}"] = self.stats.get(f"requests_{kind}", 0) + 1
            started = time.monotonic()
            try:
                response = session.request(method, url, headers=headers, **kwargs)
            except TRANSIENT_ERRORS as exc:
                problem = type(exc).__name__
                if attempt >= self.backoff.attempts:
                    raise FhirUnavailable(
                        f"connection '{self.fhir_conn_id}': {label} got no answer after {attempt} attempts ({problem})"
                    ) from exc
                self.wait_before_retry(attempt, None, label, problem)
                continue
            log.debug("FHIR %s -> %s in %.0f ms", label, response.status_code, (time.monotonic() - started) * 1000)
            status = response.status_code
            if status == 401 and with_auth:
                assert self._auth is not None
                if self._auth.refreshable and not refreshed:
                    refreshed = True
                    attempt -= 1
                    self.stats["token_refreshes"] += 1
                    log.info("FHIR %s: 401, refreshing the access token once", label)
                    self._auth.invalidate()
                    continue
                raise FhirAuthError(
                    f"connection '{self.fhir_conn_id}': the FHIR server refused the credentials (HTTP 401 on {label})"
                )
            if status in RETRYABLE_STATUS:
                if attempt >= self.backoff.attempts:
                    raise FhirUnavailable(
                        f"connection '{self.fhir_conn_id}': {label} still answered HTTP {status} "
                        f"after {attempt} attempts"
                    )
                self.wait_before_retry(
                    attempt, parse_retry_after(response.headers.get("Retry-After")), label, f"HTTP {status}"
                )
                continue
            return response

    def _fetch_token(self, url: str, form: dict[str, str], basic: tuple[str, str] | None) -> requests.Response:
        return self.request("POST", url, data=form, authorize=False, kind="token", auth=basic)

    def _pace(self) -> None:
        if self.limiter is not None:
            self.limiter.acquire()

    def wait_before_retry(self, attempt: int, retry_after: float | None, label: str, problem: str) -> None:
        """Sleep per the backoff policy (and at least ``retry_after``); counted in the stats."""
        delay = self.backoff.delay(attempt, retry_after)
        self.stats["retries"] += 1
        self.stats["retry_wait_seconds"] += delay
        log.warning("FHIR %s: %s, retry %d/%d in %.2fs", label, problem, attempt, self.backoff.attempts - 1, delay)
        self._sleep(delay)

    def snapshot_stats(self) -> dict[str, int | float]:
        stats = dict(self.stats)
        stats["throttle_wait_seconds"] = round(self.limiter.waited_seconds, 3) if self.limiter else 0.0
        stats["retry_wait_seconds"] = round(float(stats["retry_wait_seconds"]), 3)
        return stats

    def test_connection(self) -> tuple[bool, str]:
        """``GET [base]/metadata``: reachable and speaking FHIR (the UI's Test button)."""
        try:
            response = self.request("GET", "metadata", kind="metadata")
        except FhirError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return False, f"GET metadata answered HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return False, "GET metadata did not answer JSON"
        if body.get("resourceType") != "CapabilityStatement":
            return False, "GET metadata did not answer a CapabilityStatement"
        return True, f"FHIR {body.get('fhirVersion', '?')} server at {self.base_url}"
