"""The region's Sheets access token, shared with the batches so they can write progress without the Google client.

Loading gspread and google-auth costs a task process about 0.2 s and 11 MiB (and a connection that needs the
Google provider 0.6 s and 27 MiB more); a run has up to a thousand batch processes and each writes one small
request. So ``extract_rows``, which holds the region's credentials (``credentials.py``: a key, or anything
``GoogleBaseHook`` reads), leaves the access token it just used
in the Airflow Variable ``phone_sync__sheets_token__<conn_id>``, sealed with the region's PHI key like the
FHIR token (``phone_sync.fhir.token_store``): the metadata DB, the Variables page and backups hold only
ciphertext. Beside it, in clear: the Sheets API's base URL and when the token expires. A batch that finds no
token valid for a while yet simply leaves its statuses to write-back. Deleting the Variable is always safe.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from phone_sync.crypto import PhiKeyError, Sealer
from phone_sync.fhir.token_store import AirflowVariables, KeyValue

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "phone_sync__sheets_token__"
VERSION = 1
MIN_VALIDITY_SECONDS = 120.0  # a token this close to expiry is not worth a batch's write


@dataclass(frozen=True)
class SheetsAccess:
    """What a batch needs to send a Sheets request: the API's base URL and a bearer token (None: anonymous)."""

    api_url: str
    token: str | None
    expires_at: float  # epoch seconds; 0 for an anonymous connection (no token to expire)

    def __repr__(self) -> str:  # never the token
        return f"SheetsAccess(api_url={self.api_url!r}, expires_at={self.expires_at:.0f})"

    def usable(self, now: float) -> bool:
        return self.token is None or self.expires_at - now > MIN_VALIDITY_SECONDS


class AccessStore:
    """One Google connection's shared access, sealed with the region's PHI key."""

    def __init__(self, conn_id: str, sealer: Sealer, store: KeyValue | None = None) -> None:
        self.key = f"{VARIABLE_PREFIX}{conn_id}"
        self._sealer = sealer
        self._store = store or AirflowVariables()

    def save(self, access: SheetsAccess) -> None:
        record = {
            "v": VERSION,
            "api_url": access.api_url,
            "expires_at": round(access.expires_at, 3),
            "sealed": self._sealer.seal({"token": access.token}),
        }
        description = (
            "phone-sync: the Sheets access token of this Google connection, for the batches' progress writes, "
            "sealed with the region's PHI key. Safe to delete: write-back then writes every status."
        )
        self._store.set(self.key, json.dumps(record, separators=(",", ":")), description)

    def load(self, now: float | None = None) -> SheetsAccess | None:
        """The shared access when it is usable for a while yet, else None (the caller defers its write)."""
        raw = self._store.get(self.key)
        if not raw:
            return None
        try:
            record = json.loads(raw)
            if record.get("v") != VERSION:
                return None
            sealed = self._sealer.open(record["sealed"], what=f"Airflow Variable '{self.key}'")
            access = SheetsAccess(str(record["api_url"]), sealed.get("token"), float(record["expires_at"]))
        except (PhiKeyError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("Variable '%s' is not a phone-sync Sheets access record this key opens", self.key)
            return None
        return access if access.usable(time.time() if now is None else now) else None
