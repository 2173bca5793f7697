"""FhirHook: the one place that knows a region's FHIR connection, session, pacing and retry policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter

from phone_sync.fhir.auth import TOKEN_BACKOFF, Authorizer, OAuth2ClientCredentials, Obtained, authorizer_for
from phone_sync.fhir.connection import FhirSettings, settings_from_connection
from phone_sync.fhir.errors import FhirAuthError, FhirError, FhirUnavailable
from phone_sync.fhir.profile import describe_capability
from phone_sync.fhir.token_store import TokenStore
from phone_sync.http.pacing import RETRYABLE_STATUS, Backoff, RateLimiter
from phone_sync.http.retry import HttpRetry, RetriesExhausted

FHIR_JSON = "application/fhir+json"
# Requests whose 403 means the credentials lack a permission (a 403 on one patient's PUT or read is that row's).
ACCESS_CHECKED = frozenset({"search", "batch", "metadata"})
# The token endpoint's 429 is waited out by the authorizer, within its own budget (token_wait_seconds).
TOKEN_RETRY_STATUSES = RETRYABLE_STATUS - {429}


class FhirHook(BaseHook):
    """Talk to one FHIR R4 server named by an Airflow connection.

    Connection fields:

    - ``host``: the FHIR base URL, e.g. ``https://fhir.example.id/fhir`` (scheme, port and path may be in it);
      a bare host name gets ``https://``. ``port`` is appended when the host has none. ``schema`` is the
      URL scheme when it is ``http``/``https``, otherwise it is read as the base path.
    - ``login`` / ``password``: OAuth2 client id / secret, or (static bearer) the token in ``password``.

    Extras (all optional except ``token_url`` for OAuth2):

    - ``auth_type``: ``"bearer"`` (default when a password is set), ``"oauth2"`` (client credentials) or ``"none"``.
    - ``token_url``: OAuth2 token endpoint, absolute or relative to the base URL (e.g. ``/oauth2/token``;
      SATUSEHAT: ``https://api-satusehat.kemkes.go.id/oauth2/v1/accesstoken``).
    - ``scope``: OAuth2 scope sent with the token request.
    - ``client_auth``: ``"body"`` (client id/secret in the form, as SATUSEHAT expects; default) or ``"basic"``.
    - ``grant_type_in``: ``"body"`` (standard OAuth2; default) or ``"query"``: ``grant_type=client_credentials``
      in the token URL's query string, as SATUSEHAT expects.
    - ``refresh_margin_seconds``: a batch refreshes a token this long before it expires (default 60, at most
      10% of its lifetime).
    - ``token_min_validity_seconds``: a run starts with a token valid at least this long, reusing the region's
      shared token when it is, fetching one when not (default 1800, at most half its lifetime).
    - ``token_wait_seconds``: how long a task waits out the token endpoint's rate limit (a 429, or SATUSEHAT's
      "rate limit policy" answer) before it fails and is retried later (default 300).
    - ``verify``: ``true``/``false`` or a CA bundle path for TLS verification (default true).
    - ``timeout``: seconds per request, overriding the hook argument.

    Plain ``http`` is refused unless the host is loopback (127.0.0.0/8, ::1, localhost). Every request gets a
    timeout, client-side pacing at ``requests_per_second``, and retries with exponential backoff and jitter on
    connection errors, 429 and 5xx (never shorter than ``Retry-After``); what outlives the retries raises
    :class:`FhirUnavailable`. A 401 makes an OAuth2 token refresh once; a second 401 raises :class:`FhirAuthError`.

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
        requests_per_second: float | None = None,
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
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self._pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"Accept": FHIR_JSON, "User-Agent": "region-phone-sync"})
            session.verify = settings.verify
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
        retry_statuses = kwargs.pop("retry_statuses", RETRYABLE_STATUS)
        url = self.url(path) if with_auth else path
        session = self.get_conn()
        kwargs.setdefault("timeout", self.settings.timeout or self.timeout)
        label = f"{method} {urlsplit(url).path or '/'}"  # never the query: it may carry search values
        auth = self._auth if with_auth else None
        try:
            response = self.retry.send(
                session, method, url, kind=kind, label=label,
                auth_headers=(lambda: auth.headers(self)) if auth else None,
                refresh=auth.invalidate if auth and auth.refreshable else None,
                retry_statuses=retry_statuses,
                **kwargs,
            )
        except RetriesExhausted as exhausted:
            if exhausted.response is None:
                raise FhirUnavailable(
                    f"connection '{self.fhir_conn_id}': {label} got no answer after {exhausted.attempts} attempts "
                    f"({exhausted.problem})"
                ) from exhausted.error
            raise FhirUnavailable(
                f"connection '{self.fhir_conn_id}': {label} still answered {exhausted.problem} "
                f"after {exhausted.attempts} attempts"
            ) from None
        if response.status_code == 401 and with_auth:
            raise FhirAuthError(
                f"connection '{self.fhir_conn_id}': the FHIR server refused the credentials (HTTP 401 on {label})"
            )
        if response.status_code == 403 and with_auth and kind in ACCESS_CHECKED:
            raise FhirAuthError(
                f"connection '{self.fhir_conn_id}': the FHIR server refused access (HTTP 403 on {label}); "
                "the credentials lack a permission this region needs"
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
        self, url: str, form: dict[str, str], params: dict[str, str], basic: tuple[str, str] | None
    ) -> requests.Response:
        return self.request(
            "POST", url, data=form, params=params or None, authorize=False, kind="token", auth=basic,
            retry_statuses=TOKEN_RETRY_STATUSES,
        )

    def token_wait(self, seconds: float, problem: str) -> None:
        self.retry.wait(seconds, "POST token", problem)

    def wait_before_retry(self, attempt: int, retry_after: float | None, label: str, problem: str) -> None:
        """Sleep per the backoff policy (and at least ``retry_after``); counted in the stats."""
        self.retry.pause(attempt, retry_after, label, problem)

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
        The message names the step that failed and never holds a token. Airflow builds the hook with a
        task's defaults; the button answers after one attempt of each request instead, and does not wait
        out a token endpoint's rate limit.
        """
        self.retry = HttpRetry(Backoff(attempts=1), None, sleep=self.retry.sleep, service="FHIR")
        self._settings = replace(self.settings, token_wait=0.0)
        self._auth = None
        try:
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
        auth_type = self.settings.auth_type
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
        }[auth_type]
        return True, f"{server}: metadata OK, {accepted} (GET Patient?_count=0); {describe_capability(body)}"

    def _test_problem(self, exc: Exception) -> str:
        """The error without the connection id: the API tests a copy under a random id nobody knows."""
        text = str(exc).replace(f"connection '{self.fhir_conn_id}': ", "")
        return text if isinstance(exc, FhirError) else f"{type(exc).__name__}: {text}"
