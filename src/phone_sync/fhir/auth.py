"""Authorization headers for the FHIR hook: static bearer, or OAuth2 client credentials shared by a region.

Why shared: every mapped batch is its own task process. If each fetched its own token, a 10,000-row run
would ask the token endpoint about a hundred times, and national gateways refuse that (SATUSEHAT
rate-limits a client that generates new tokens too often within a minute). So, with a
:class:`~phone_sync.fhir.token_store.TokenStore` (an Airflow Variable per connection, sealed with the
region's PHI key):

- ``clean_phones`` primes it once per run, before any batch starts (:meth:`OAuth2ClientCredentials.prime`):
  the stored token is reused when it stays valid for ``token_min_validity_seconds`` more (default 30 min,
  at most half its lifetime), else a new one is fetched and stored. A run shorter than that never sees
  its token expire, and runs close together share one token.
- each batch reads the store once and keeps the token in memory. It fetches a new one only when the token
  is within ``refresh_margin_seconds`` of expiry (default 60, at most a tenth of its lifetime) or the FHIR
  server answered 401 with it (revoked); first it re-reads the store, since another batch may have done
  it already, and it writes the new token back for the others.
- concurrent refreshes take a lease: the refresher writes "holder H until T" into the record, waits
  ``LEASE_SETTLE`` seconds, reads it back, and fetches only if it still holds the lease; the others poll
  the store for the new token, or take over when the lease lapses (a holder that died). Variables have no
  compare-and-set, so this narrows the race rather than closing it: two processes whose read and write
  straddle the settle time both fetch, which costs one extra grant, never a failure.

Without a store (tests, tools) a hook keeps its token in memory only, as before.

The token endpoint: a 429, or a 4xx whose body says "rate limit" (SATUSEHAT's OperationOutcome
"Authentication temporarily cannot be performed due to the rate limit policy"), is waited out, for the
``Retry-After`` it gives or else a backoff from 2 s up to 60 s, within ``token_wait_seconds`` (default
300) per fetch; past that :class:`FhirUnavailable` (the task is retried later). That wait is a
:class:`~phone_sync.http.retry.WaitOut` policy on the one retry path, like every other wait. Refused credentials
(``invalid_client``, SATUSEHAT's "not able to be authenticated") raise :class:`FhirAuthError`, a set-up
error: the task fails at once, without retries. SATUSEHAT's non-standard answer is read as it comes:
``token_type`` ``"BearerToken"``, ``expires_in`` and ``issued_at`` as strings, ``grant_type`` in the query
string (extra ``grant_type_in: "query"``). Tokens are registered with Airflow's secrets masker as soon
as this process knows them (:mod:`phone_sync.http.secrets`), and never logged.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import requests

from phone_sync.fhir.connection import FhirSettings
from phone_sync.fhir.errors import FhirAuthError, FhirUnavailable
from phone_sync.fhir.token_store import SharedToken, TokenStore, client_fingerprint
from phone_sync.http.pacing import Backoff
from phone_sync.http.retry import WaitedTooLong, WaitOut
from phone_sync.http.secrets import mask_secret
from phone_sync.http.session import json_body

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = 300.0  # a token whose expires_in is missing, zero or unreadable
TOKEN_BACKOFF = Backoff(base=2.0, cap=60.0)  # waits on a rate-limited token endpoint without Retry-After
LEASE_SETTLE = 0.3  # seconds between writing a lease and reading it back
LEASE_POLL = 0.5  # how often a process waiting for another's refresh re-reads the store
LEASE_SECONDS = 90.0  # a refresher that died blocks the others this long at most
BEARER_TYPES = frozenset({"bearer", "bearertoken"})  # SATUSEHAT says "BearerToken"
RATE_LIMIT_TEXT = re.compile(r"rate[ _-]?limit|too many requests", re.IGNORECASE)
BAD_CLIENT_TEXT = re.compile(r"not able to be authenticated|client_id or client_secret", re.IGNORECASE)
OAUTH_ERROR = re.compile(r"[a-z_]{3,40}")

Obtained = Literal["reused", "granted"]


class TokenEndpoint(Protocol):
    """How an authorizer reaches the token endpoint: the hook's session and retry path, ``wait_out`` its
    rate limit."""

    def token_request(
        self,
        url: str,
        form: dict[str, str],
        params: dict[str, str],
        basic: tuple[str, str] | None,
        wait_out: WaitOut,
    ) -> requests.Response: ...


class Authorizer(Protocol):
    refreshable: bool

    def headers(self, endpoint: TokenEndpoint) -> dict[str, str]: ...

    def invalidate(self) -> None: ...


class NoAuth:
    refreshable = False

    def headers(self, endpoint: TokenEndpoint) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        return None


class StaticBearer:
    """The connection password as a bearer token; a 401 cannot be cured by refreshing."""

    refreshable = False

    def __init__(self, token: str) -> None:
        self._header = {"Authorization": f"Bearer {token}"}

    def headers(self, endpoint: TokenEndpoint) -> dict[str, str]:
        return self._header

    def invalidate(self) -> None:
        return None


@dataclass(frozen=True)
class Grant:
    """A token as the endpoint granted it; ``expires_at`` is on this host's wall clock."""

    token: str
    expires_in: float
    expires_at: float
    issued_at: float | None = None  # the server's own clock (SATUSEHAT: epoch milliseconds, as a string)

    def __repr__(self) -> str:  # never the token
        return f"Grant(expires_in={self.expires_in:g})"


def _number(value: Any) -> float | None:
    """A JSON number or a numeric string ("3599"); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_grant(response: requests.Response, conn_id: str, started: float) -> Grant:
    """Read a 200 answer of the token endpoint, standard OAuth2 or SATUSEHAT-style."""
    body = json_body(response)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise FhirAuthError("token endpoint answered without an access_token", conn_id=conn_id)
    mask_secret(token)
    assert isinstance(body, dict)
    token_type = str(body.get("token_type") or "Bearer")
    if token_type.lower() not in BEARER_TYPES:
        raise FhirAuthError(f"token endpoint issued a {token_type[:30]!r} token, not a bearer token", conn_id=conn_id)
    expires_in = _number(body.get("expires_in"))
    if expires_in is None or expires_in <= 0:
        expires_in = DEFAULT_LIFETIME
    issued_at = _number(body.get("issued_at"))
    if issued_at is not None and issued_at > 1e11:  # milliseconds
        issued_at /= 1000
    return Grant(token, expires_in, started + expires_in, issued_at)


def _error_text(response: requests.Response) -> str:
    """The error words of a refusal: OAuth ``error``/``error_description`` or an OperationOutcome's texts."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if not isinstance(body, dict):
        return ""
    words = [str(body.get("error") or ""), str(body.get("error_description") or "")]
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
            words += [str(details.get("text") or ""), str(issue.get("diagnostics") or "")]
    return " ".join(words)[:1000]


def is_rate_limited(response: requests.Response) -> bool:
    """429, or a 4xx that says it is a rate limit (SATUSEHAT's status for it is not documented)."""
    if response.status_code == 429:
        return True
    return 400 <= response.status_code < 500 and bool(RATE_LIMIT_TEXT.search(_error_text(response)))


def _refusal(response: requests.Response) -> str:
    """A short, fixed reason for a refusal (e.g. invalid_client); never the server's free text."""
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and OAUTH_ERROR.fullmatch(error):
        return error
    return "invalid_client" if BAD_CLIENT_TEXT.search(_error_text(response)) else ""


class OAuth2ClientCredentials:
    """Client-credentials grant; the token shared through ``store`` when given (see module docstring)."""

    refreshable = True

    def __init__(
        self,
        settings: FhirSettings,
        store: TokenStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff = TOKEN_BACKOFF,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._client = client_fingerprint(
            settings.token_url, settings.client_id, settings.client_secret, settings.extras.scope
        )
        self._holder = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._lifetime = 0.0
        self._rejected: str | None = None  # the token the FHIR server answered 401 to
        self.granted = 0  # tokens this process obtained from the endpoint

    def headers(self, endpoint: TokenEndpoint) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._remaining() <= self._batch_margin(self._lifetime):
                self._obtain(endpoint, self._batch_margin)
            return {"Authorization": f"Bearer {self._token}"}

    def prime(self, endpoint: TokenEndpoint) -> Obtained:
        """Make sure the shared token stays valid for a run (reuse it, or fetch and store a new one)."""
        with self._lock:
            return self._obtain(endpoint, self._run_margin)

    def invalidate(self) -> None:
        with self._lock:
            if self._token is not None:
                self._rejected = self._token
            self._token = None

    # margins

    def _batch_margin(self, lifetime: float) -> float:
        return min(self._settings.extras.refresh_margin_seconds, lifetime / 10)

    def _run_margin(self, lifetime: float) -> float:
        return max(self._batch_margin(lifetime), min(self._settings.extras.token_min_validity_seconds, lifetime / 2))

    def _remaining(self) -> float:
        return self._expires_at - self._clock()

    # obtaining

    def _obtain(self, endpoint: TokenEndpoint, margin: Callable[[float], float]) -> Obtained:
        if self._store is None:
            self._adopt(self._grant(endpoint), "granted")
            return "granted"
        store, client = self._store, self._client
        deadline = self._clock() + self._settings.extras.token_wait_seconds + LEASE_SECONDS
        while True:
            now = self._clock()
            shared = store.read(client)
            if (
                shared is not None
                and shared.token is not None
                and shared.token != self._rejected
                and shared.remaining(now) > margin(shared.lifetime)
            ):
                self._adopt(Grant(shared.token, shared.lifetime, shared.expires_at), "reused")
                return "reused"
            if shared is not None and shared.leased_by_other(self._holder, now):
                if now >= deadline:
                    raise FhirUnavailable(
                        "another task has been fetching the shared token for too long", conn_id=self._settings.conn_id
                    )
                self._sleep(LEASE_POLL)
                continue
            leased = replace(shared or SharedToken(), lease_holder=self._holder, lease_until=now + LEASE_SECONDS)
            store.write(client, leased)
            self._sleep(LEASE_SETTLE)
            held = store.read(client)
            if held is None:
                log.warning(
                    "The shared token store '%s' does not keep what is written; token for this task only", store.key
                )
                self._adopt(self._grant(endpoint), "granted")
                return "granted"
            if held.lease_holder == self._holder:
                break
            # Another process wrote its lease in the same moment and won: wait for its token.
        try:
            grant = self._grant(
                endpoint,
                renew=lambda seconds: store.write(
                    client, replace(held, lease_until=self._clock() + seconds + LEASE_SECONDS)
                ),
            )
        except BaseException:
            store.write(client, replace(held, lease_holder=None, lease_until=0.0))  # let the others try
            raise
        store.write(client, SharedToken(token=grant.token, expires_at=grant.expires_at, lifetime=grant.expires_in))
        self._adopt(grant, "granted")
        return "granted"

    def _adopt(self, grant: Grant, how: Obtained) -> None:
        mask_secret(grant.token)
        self._token, self._expires_at, self._lifetime = grant.token, grant.expires_at, grant.expires_in
        log.info(
            "FHIR connection '%s': %s access token, valid for %.0f s more",
            self._settings.conn_id,
            "reused the region's shared" if how == "reused" else "obtained a new",
            self._remaining(),
        )
        if grant.issued_at is not None and abs(grant.issued_at - (grant.expires_at - grant.expires_in)) > 300:
            log.warning(
                "FHIR connection '%s': the token endpoint's clock differs from ours by more than 5 minutes",
                self._settings.conn_id,
            )

    def _grant(self, endpoint: TokenEndpoint, renew: Callable[[float], None] | None = None) -> Grant:
        """One grant from the token endpoint, waiting out its rate limit within ``token_wait_seconds``."""
        s, extras = self._settings, self._settings.extras
        if not (s.token_url and s.client_id and s.client_secret):
            raise FhirAuthError("oauth2 needs token_url, client id and secret", conn_id=s.conn_id)
        form: dict[str, str] = {}
        params: dict[str, str] = {}
        (params if extras.grant_type_in == "query" else form)["grant_type"] = "client_credentials"
        basic = None
        if extras.client_auth == "basic":
            basic = (s.client_id, s.client_secret)
        else:
            form |= {"client_id": s.client_id, "client_secret": s.client_secret}
        if extras.scope:
            form["scope"] = extras.scope
        budget = extras.token_wait_seconds
        rate_limit = WaitOut(is_rate_limited, self._backoff, budget, before_wait=renew)
        try:
            response = endpoint.token_request(s.token_url, form, params, basic, rate_limit)
        except WaitedTooLong as busy:
            waiting = (
                f"after {busy.waited:.0f} s of waiting (extra token_wait_seconds is {budget:g})"
                if budget
                else f"try again in {busy.delay:.0f} s"
            )
            raise FhirUnavailable(
                f"the token endpoint refuses new tokens for its rate limit; {waiting}", conn_id=s.conn_id
            ) from None
        if response.status_code != 200:
            reason = _refusal(response)
            raise FhirAuthError(
                f"token endpoint refused the client credentials (HTTP {response.status_code}"
                f"{' ' + reason if reason else ''})",
                conn_id=s.conn_id,
            )
        grant = parse_grant(response, s.conn_id, started=self._clock() - response.elapsed.total_seconds())
        self.granted += 1
        return grant


def authorizer_for(
    settings: FhirSettings,
    store: TokenStore | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    backoff: Backoff = TOKEN_BACKOFF,
) -> Authorizer:
    if settings.auth_type == "bearer":
        assert settings.token
        return StaticBearer(settings.token)  # masked by the HTTP path when its header is sent
    if settings.auth_type == "oauth2":
        return OAuth2ClientCredentials(settings, store, sleep=sleep, backoff=backoff)
    return NoAuth()
