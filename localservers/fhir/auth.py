"""Bearer-token checks and an OAuth2 client-credentials token endpoint.

Static tokens come from ``--token``/``--token-file``; issued tokens expire after ``expires_in`` and can
all be revoked at once (``POST /_admin/revoke-tokens``) so clients' refresh-on-401 can be tested.
The request log records ``token_hash`` (8 hex chars), never a token.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field


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
class Auth:
    static_tokens: set[str] = field(default_factory=set)
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    expires_in: int = 3600
    issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    issued_count: int = 0
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

    def issue(self, client_id: str | None, client_secret: str | None) -> tuple[str, int] | None:
        """A new access token for valid client credentials, else None."""
        expected = self.clients.get(client_id or "")
        if expected is None or not secrets.compare_digest(expected, client_secret or ""):
            return None
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.issued[token] = time.monotonic() + self.expires_in
            self.issued_count += 1
        return token, self.expires_in

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self.issued)
            self.issued.clear()
        return count
