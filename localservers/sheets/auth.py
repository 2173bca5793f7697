"""OAuth2 for the emulator: the service-account JWT-bearer grant, and bearer tokens it issued.

A connection whose ``keyfile_dict`` has ``token_uri`` = ``<emulator>/token`` goes through
google-auth's real service-account code path: it signs a JWT, posts it here, and gets a token.
The signature is not verified (a loopback test server has no key registry); the claims are.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass

from .store import ApiError

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
WRITE_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/spreadsheets",
        "https://www.googleapis.com/auth/drive",
        "https://www.googleapis.com/auth/drive.file",
    }
)
READ_SCOPES = WRITE_SCOPES | {
    "https://www.googleapis.com/auth/spreadsheets.readonly",
    "https://www.googleapis.com/auth/drive.readonly",
}
ANONYMOUS = "anonymous"


class OAuthError(Exception):
    """An error the token endpoint answers as ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Grant:
    user: str
    scopes: frozenset[str]
    expires_at: float


def _b64json(part: str) -> dict[str, object]:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


class TokenStore:
    """Tokens issued by this emulator, each tied to a user identity and its scopes."""

    def __init__(self, lifetime: int = 3600) -> None:
        self.lifetime = lifetime
        self._grants: dict[str, Grant] = {}

    def issue(self, user: str, scopes: set[str] | frozenset[str]) -> dict[str, object]:
        token = "emu-" + secrets.token_urlsafe(24)
        self._grants[token] = Grant(user, frozenset(scopes), time.time() + self.lifetime)
        return {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}

    def add_static(self, token: str, user: str) -> None:
        """A fixed token (from the command line), with the spreadsheets scope, that never expires."""
        self._grants[token] = Grant(user, frozenset({"https://www.googleapis.com/auth/spreadsheets"}), float("inf"))

    def grant_jwt_bearer(self, form: dict[str, str]) -> dict[str, object]:
        """The service-account flow: check the assertion's claims, answer with an access token."""
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError("unsupported_grant_type", f"grant_type must be {JWT_BEARER}")
        assertion = form.get("assertion", "")
        try:
            header_part, payload_part, _signature = assertion.split(".")
            header, claims = _b64json(header_part), _b64json(payload_part)
        except (ValueError, json.JSONDecodeError):
            raise OAuthError("invalid_grant", "Invalid JWT: assertion is not a signed JWT") from None
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "Invalid JWT: alg must be RS256")
        user, scope, expires = claims.get("iss"), claims.get("scope"), claims.get("exp")
        if not isinstance(user, str) or not user:
            raise OAuthError("invalid_grant", "Invalid JWT: no issuer (client_email)")
        if not isinstance(scope, str) or not scope:
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if not isinstance(expires, int | float) or expires < time.time():
            raise OAuthError(
                "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
            )
        return self.issue(user, set(scope.split()))

    def identify(self, authorization: str | None, allow_anonymous: bool, kind: str) -> str:
        """The user behind a request, or a 401/403 ApiError as Google would answer."""
        if not authorization:
            if allow_anonymous:
                return ANONYMOUS
            raise ApiError(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
            )
        scheme, _, token = authorization.partition(" ")
        grant = self._grants.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at < time.time():
            raise ApiError(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        allowed = WRITE_SCOPES if kind == "write" else READ_SCOPES
        if not grant.scopes & allowed:
            raise ApiError(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED")
        return grant.user
