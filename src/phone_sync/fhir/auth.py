"""Authorization headers for the FHIR hook: static bearer, or OAuth2 client credentials with a cached token.

The OAuth2 token is fetched lazily, reused until shortly before ``expires_in`` runs out, and dropped
when the server answers 401 so the hook can fetch a new one exactly once. Tokens are registered with
Airflow's secrets masker as soon as they are known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import requests

from phone_sync.fhir.connection import FhirSettings
from phone_sync.fhir.errors import FhirAuthError

# Sends the token request (through the hook's retry policy) and returns the response.
TokenFetch = Callable[[str, dict[str, str], tuple[str, str] | None], requests.Response]


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow is always there in this project
        return
    mask_secret(secret)


class Authorizer(Protocol):
    refreshable: bool

    def headers(self, fetch: TokenFetch) -> dict[str, str]: ...

    def invalidate(self) -> None: ...


class NoAuth:
    refreshable = False

    def headers(self, fetch: TokenFetch) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        return None


class StaticBearer:
    """The connection password as a bearer token; a 401 cannot be cured by refreshing."""

    refreshable = False

    def __init__(self, token: str) -> None:
        self._header = {"Authorization": f"Bearer {token}"}

    def headers(self, fetch: TokenFetch) -> dict[str, str]:
        return self._header

    def invalidate(self) -> None:
        return None


class OAuth2ClientCredentials:
    """Client-credentials grant with a cached token, refreshed ``margin`` seconds before it expires."""

    refreshable = True

    def __init__(self, settings: FhirSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetched = 0

    def headers(self, fetch: TokenFetch) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._fetch(fetch)
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self, fetch: TokenFetch) -> None:
        s = self._settings
        if not (s.token_url and s.client_id and s.client_secret):
            raise FhirAuthError(f"connection '{s.conn_id}': oauth2 needs token_url, client id and secret")
        form = {"grant_type": "client_credentials"}
        basic = None
        if s.client_auth == "basic":
            basic = (s.client_id, s.client_secret)
        else:
            form |= {"client_id": s.client_id, "client_secret": s.client_secret}
        if s.scope:
            form["scope"] = s.scope
        response = fetch(s.token_url, form, basic)
        if response.status_code != 200:
            raise FhirAuthError(
                f"connection '{s.conn_id}': token endpoint refused the client credentials "
                f"(HTTP {response.status_code} {_oauth_error(response)})"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError):
            raise FhirAuthError(f"connection '{s.conn_id}': token endpoint answered without an access_token") from None
        _mask(token)
        margin = min(s.refresh_margin, expires_in / 10)
        self._token = token
        self._expires_at = self._clock() + expires_in - margin
        self.fetched += 1


def _oauth_error(response: requests.Response) -> str:
    """The OAuth ``error`` code (e.g. invalid_client): standard, short and free of secrets."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return str(error)[:40] if error else ""


def authorizer_for(settings: FhirSettings) -> Authorizer:
    if settings.auth_type == "bearer":
        assert settings.token
        _mask(settings.token)
        return StaticBearer(settings.token)
    if settings.auth_type == "oauth2":
        return OAuth2ClientCredentials(settings)
    return NoAuth()
