"""Bearer-token checks and an OAuth2 client-credentials token endpoint, standard or SATUSEHAT-style.

Static tokens come from ``--token``/``--token-file``; issued tokens expire after ``expires_in`` and can
all be revoked at once (``POST /_admin/revoke-tokens``) so clients' refresh-on-401 can be tested.
The request log records ``token_hash`` (8 hex chars), never a token.

The token endpoint answers in one of two styles (``--token-style``, or ``POST /_admin/token-policy``):

- ``oauth2`` (RFC 6749): ``grant_type`` in the form body; ``{"access_token", "token_type": "Bearer",
  "expires_in": <int>}``; ``{"error": "invalid_client"}`` with 401; past the grant limit 429
  ``temporarily_unavailable`` with ``Retry-After``.
- ``satusehat``, as SATUSEHAT's documentation shows its ``POST {auth}/oauth2/v1/accesstoken``:
  ``grant_type=client_credentials`` in the query string, client id and secret in the form body; a 200
  whose every value is a string (``token_type`` ``"BearerToken"``, ``expires_in`` ``"3599"``,
  ``issued_at`` in epoch milliseconds, ``refresh_token_expires_in``, ``api_product_list`` and
  ``api_product_list_json``, ``organization_name``, ``developer.email``, ``application_name``,
  ``refresh_count``, ``status`` ``"approved"``); refusals are OperationOutcomes with the documented
  texts. SATUSEHAT documents only "4xx" for them: this server answers wrong credentials with 401 and
  its rate limit with ``rate_limit_status`` (default 429, 401 or 400 to try the other readings), and
  sends no ``Retry-After`` (none is documented). The documented limit: after a refused secret, one
  attempt per minute for that client id; and too many new tokens within a minute are refused.

Grant limiting (``--token-grant-limit N``): at most N tokens per client id in any ``window_seconds``
(default 60). ``tokens_issued`` and ``token_refusals`` in ``/_admin/stats`` count what was decided.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

SATUSEHAT_BAD_CLIENT = (
    "The user or system was not able to be authenticated (either client_id or client_secret combination is "
    "unacceptable)"
)
SATUSEHAT_RATE_LIMIT = (
    "Authentication temporarily cannot be performed due to the rate limit policy. "
    "Rate limit: 1 request per minute after a failed attempt."
)


def token_hash(token: str | None) -> str | None:
    """Short, stable fingerprint of a token for logs and tests (never the token itself)."""
    if not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def bearer_of(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@dataclass
class TokenPolicy:
    """How the token endpoint answers; changed at runtime with ``POST /_admin/token-policy``."""

    style: Literal["oauth2", "satusehat"] = "oauth2"
    grant_limit: int = 0  # tokens per client id per window; 0: no limit
    window_seconds: float = 60.0
    rate_limit_status: int = 429  # satusehat style only: the status of the rate-limit answer

    def check(self) -> None:
        if self.style not in ("oauth2", "satusehat"):
            raise ValueError("style must be 'oauth2' or 'satusehat'")
        if self.grant_limit < 0 or not self.window_seconds > 0:
            raise ValueError("grant_limit must be >= 0 and window_seconds > 0")
        if not 400 <= self.rate_limit_status < 500:
            raise ValueError("rate_limit_status must be a 4xx status")


@dataclass(frozen=True)
class Decision:
    """What the token endpoint decided for one request."""

    outcome: Literal["granted", "invalid_client", "rate_limited"]
    token: str | None = None
    retry_after: float | None = None  # seconds until a grant would be allowed again


@dataclass
class Auth:
    static_tokens: set[str] = field(default_factory=set)
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    expires_in: int = 3600
    policy: TokenPolicy = field(default_factory=TokenPolicy)
    issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    issued_count: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    _grants: dict[str, deque[float]] = field(default_factory=dict)  # client id -> recent grant times
    _failed_at: dict[str, float] = field(default_factory=dict)  # client id -> last refused secret
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self.static_tokens or self.clients)

    def allows(self, token: str | None) -> bool:
        if not self.enabled:
            return True
        if token is None:
            return False
        if token in self.static_tokens:
            return True
        with self._lock:
            expiry = self.issued.get(token)
        return expiry is not None and time.monotonic() < expiry

    def decide(self, client_id: str | None, client_secret: str | None) -> Decision:
        """Grant a token, or refuse: wrong credentials, or the client's grant rate (see module docstring)."""
        key = client_id or ""
        with self._lock:
            now = time.monotonic()
            window = self.policy.window_seconds
            if self.policy.style == "satusehat" and now - self._failed_at.get(key, -math.inf) < window:
                self.refusals["rate_limited"] += 1
                return Decision("rate_limited", retry_after=self._failed_at[key] + window - now)
            expected = self.clients.get(key)
            if expected is None or not secrets.compare_digest(expected, client_secret or ""):
                self._failed_at[key] = now
                self.refusals["invalid_client"] += 1
                return Decision("invalid_client")
            recent = self._grants.setdefault(key, deque())
            while recent and recent[0] <= now - window:
                recent.popleft()
            if self.policy.grant_limit and len(recent) >= self.policy.grant_limit:
                self.refusals["rate_limited"] += 1
                return Decision("rate_limited", retry_after=recent[0] + window - now)
            token = secrets.token_urlsafe(24)
            recent.append(now)
            self.issued[token] = now + self.expires_in
            self.issued_count += 1
        return Decision("granted", token)

    def set_policy(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial change (unknown keys are errors); ``expires_in`` is accepted here too."""
        names = {f.name for f in fields(TokenPolicy)} | {"expires_in"}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown token policy keys: {sorted(unknown)}")
        policy = replace(self.policy, **{k: v for k, v in changes.items() if k != "expires_in"})
        policy.check()
        with self._lock:
            self.policy = policy
            if "expires_in" in changes:
                self.expires_in = int(changes["expires_in"])
        return self.policy_snapshot()

    def policy_snapshot(self) -> dict[str, Any]:
        return {**asdict(self.policy), "expires_in": self.expires_in}

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self.issued)
            self.issued.clear()
        return count


def satusehat_grant(token: str, client_id: str, expires_in: int) -> dict[str, Any]:
    """A 200 body as SATUSEHAT documents it: every value a string, Apigee's fields around the token."""
    products = ["api-satusehat-stg", "api-dev", "pl-api-satusehat-stg", "pl-api-dev"]
    return {
        "refresh_token_expires_in": "0",
        "api_product_list": "[" + ", ".join(products) + "]",
        "api_product_list_json": products,
        "organization_name": "ihs-local",
        "developer.email": "developer@local.test",
        "token_type": "BearerToken",
        "issued_at": str(int(time.time() * 1000)),
        "client_id": client_id,
        "access_token": token,
        "application_name": "00000000-0000-4000-8000-000000000000",
        "scope": "",
        "expires_in": str(expires_in),
        "refresh_count": "0",
        "status": "approved",
    }


def satusehat_refusal(text: str) -> dict[str, Any]:
    """A 4xx body as SATUSEHAT documents it (its example says severity "invalid", code "value")."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "invalid", "code": "value", "details": {"text": text}}],
    }
