"""Where a region's OAuth2 access token waits between task processes: one Airflow Variable per FHIR connection.

Every mapped batch is its own process (on LocalExecutor and on any Celery worker), so a token kept in
memory dies with its batch and each batch would ask the token endpoint again. National gateways
(SATUSEHAT) refuse a client that generates tokens too often. An Airflow Variable is the one store
every task process can read and write on both executors (the Task SDK sends ``Variable.get/set``
through the execution API; tasks have no database of their own and Celery workers share no disk).

The Variable ``phone_sync__fhir_token__<conn_id>`` holds JSON: the token sealed with the region's PHI
key (``phone_sync.crypto``, Fernet), so the metadata DB, the Variables page and a backup only show
ciphertext, and beside it, in clear, what is not secret: when the token expires and who is fetching a
new one (the lease, see ``phone_sync.fhir.auth``). The sealed part also names the client (a hash of
token URL, client id, secret and scope): after the connection changes, an old token is not used.
Deleting the Variable is always safe; the next task fetches a new token.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from phone_sync.crypto import PhiKeyError, Sealer

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "phone_sync__fhir_token__"
VERSION = 1


class KeyValue(Protocol):
    """The store under the token: ``get`` answers None for a missing key."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, description: str) -> None: ...


class AirflowVariables:
    """Airflow Variables through the Task SDK: the execution API on every executor, every worker."""

    def get(self, key: str) -> str | None:
        from airflow.sdk import Variable

        value = Variable.get(key, default=None)
        return None if value is None else str(value)

    def set(self, key: str, value: str, description: str) -> None:
        from airflow.sdk import Variable

        Variable.set(key, value, description=description)


@dataclass(frozen=True)
class SharedToken:
    """What the store holds for one connection. Times are epoch seconds (wall clock: shared across hosts)."""

    token: str | None = None
    expires_at: float = 0.0
    lifetime: float = 0.0  # expires_in as granted, for the refresh margins
    lease_holder: str | None = None  # the process fetching a new token, if any
    lease_until: float = 0.0

    def __repr__(self) -> str:  # never the token
        return f"SharedToken(expires_at={self.expires_at:.0f}, lease_holder={self.lease_holder!r})"

    def remaining(self, now: float) -> float:
        return self.expires_at - now if self.token else 0.0

    def leased_by_other(self, holder: str, now: float) -> bool:
        return self.lease_holder not in (None, holder) and self.lease_until > now


def client_fingerprint(*parts: str | None) -> str:
    """A hash naming the OAuth2 client a token was granted to; kept inside the sealed part only."""
    return hashlib.sha256("\x1f".join(part or "" for part in parts).encode()).hexdigest()[:32]


class TokenStore:
    """One connection's shared token, sealed with the region's PHI key (see module docstring)."""

    def __init__(self, conn_id: str, sealer: Sealer, backend: KeyValue | None = None) -> None:
        self.conn_id = conn_id
        self.key = f"{VARIABLE_PREFIX}{conn_id}"
        self._sealer = sealer
        self._backend = backend or AirflowVariables()

    def read(self, client: str) -> SharedToken | None:
        """The stored token of ``client``; None when there is none this process can use."""
        raw = self._backend.get(self.key)
        if not raw:
            return None
        try:
            record: dict[str, Any] = json.loads(raw)
            if record.get("v") != VERSION:
                return None
            sealed = self._sealer.open(record["sealed"], what=f"Airflow Variable '{self.key}'")
        except PhiKeyError:
            log.warning("Variable '%s' was sealed with another PHI key; a new token will be fetched", self.key)
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("Variable '%s' is not a phone-sync token record; a new token will be fetched", self.key)
            return None
        if not isinstance(sealed, dict) or sealed.get("client") != client:
            return None  # another client's token (the connection changed)
        return SharedToken(
            token=sealed.get("access_token") or None,
            expires_at=float(record.get("expires_at") or 0),
            lifetime=float(record.get("lifetime") or 0),
            lease_holder=record.get("lease_holder"),
            lease_until=float(record.get("lease_until") or 0),
        )

    def write(self, client: str, shared: SharedToken) -> None:
        sealed = self._sealer.seal({"access_token": shared.token, "client": client})
        record = {
            "v": VERSION,
            "sealed": sealed,
            "expires_at": round(shared.expires_at, 3),
            "lifetime": shared.lifetime,
            "lease_holder": shared.lease_holder,
            "lease_until": round(shared.lease_until, 3),
        }
        description = (
            f"phone-sync: OAuth2 access token of FHIR connection '{self.conn_id}', shared by the region's task "
            "processes, sealed with its PHI key. Safe to delete: the next task fetches a new one."
        )
        self._backend.set(self.key, json.dumps(record, separators=(",", ":")), description)
