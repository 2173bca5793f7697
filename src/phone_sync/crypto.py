"""Sealing patient data for XCom: compressed, then encrypted with the deployment's PHI key (Fernet).

Identifiers and phone numbers travel between tasks through Airflow's metadata database. Sealed, the
XCom tab, the rendered-fields view, a database backup or a query show only ciphertext; counts and
labels stay readable beside it (see ``phone_sync.contracts``).

The key is a dedicated one, held in an Airflow connection (``phone_sync_phi_key`` unless a region names
another in ``phi_key_conn_id``): its password is one or more Fernet keys, comma-separated, newest first.
Only task processes read it, it can live in a secrets backend, and it rotates on its own (see
docs/security.md for why it is not ``[core] fernet_key``). With several keys, the first seals and every
one opens, so a run sealed before a rotation can still be cleared and rerun after it.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from phone_sync.errors import SetupError

DEFAULT_KEY_CONN_ID = "phone_sync_phi_key"
COMPRESSION_LEVEL = 6
# Exactly one Fernet key: 32 bytes, url-safe base64 with its padding. Fernet alone would take "NEW;OLD",
# "NEW OLD" or "NEW\nOLD" as NEW (base64 decoding stops at NEW's padding) and silently drop OLD.
FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class PhiKeyError(SetupError):
    """The PHI key connection is missing, malformed, or lacks the key that sealed a value."""


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64) for the PHI key connection's password."""
    return Fernet.generate_key().decode()


class Sealer:
    """Seal (compress + encrypt) and open JSON-able values with one or more Fernet keys, newest first."""

    def __init__(self, keys: list[str], source: str = "the PHI key") -> None:
        if not keys:
            raise PhiKeyError(f"{source} holds no key")
        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                if not FERNET_KEY.fullmatch(key.strip()):
                    raise ValueError
                fernets.append(Fernet(key.strip()))
            except (ValueError, TypeError):
                raise PhiKeyError(
                    f"{source}: key {number} of {len(keys)} is not a Fernet key (44 characters: 32 url-safe "
                    "base64-encoded bytes); separate several keys with commas, newest first; generate one with "
                    "`python -m phone_sync.unseal new-key`"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.source = source

    @classmethod
    def from_text(cls, text: str | None, source: str = "the PHI key") -> Sealer:
        """Keys as the connection's password holds them: comma-separated (spaces around a comma are fine), newest
        first. Any other separator makes a key that is refused, naming its position."""
        return cls([key for key in (text or "").split(",") if key.strip()], source)

    def seal(self, value: Any) -> str:
        """A JSON-able value, sealed."""
        return self.seal_json(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    def seal_json(self, data: bytes) -> str:
        """JSON bytes, compressed and encrypted: the Fernet token as text."""
        return self._fernet.encrypt(zlib.compress(data, COMPRESSION_LEVEL)).decode("ascii")

    def open(self, token: str, what: str = "a sealed XCom value") -> Any:
        """The value :meth:`seal` sealed."""
        return json.loads(self.open_json(token, what))

    def open_json(self, token: str, what: str = "a sealed XCom value") -> bytes:
        """The JSON bytes :meth:`seal_json` sealed; a wrong or missing key says which setting to fix."""
        try:
            data = self._fernet.decrypt(token.encode("ascii") if isinstance(token, str) else token)
        except (InvalidToken, TypeError, ValueError):
            raise PhiKeyError(
                f"{what} cannot be opened with the keys in {self.source}: the key that sealed it is not there "
                "(after a rotation, keep the old key after the new one until the runs sealed with it are done)"
            ) from None
        return zlib.decompress(data)


def sealer_for(conn_id: str = DEFAULT_KEY_CONN_ID) -> Sealer:
    """The sealer of the PHI key held in Airflow connection ``conn_id`` (read through Airflow's secrets)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    source = f"Airflow connection '{conn_id}'"
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise PhiKeyError(
            f"{source} (the key that encrypts patient data between tasks) does not exist: create it with one or "
            "more Fernet keys, comma-separated, in its password; see docs/security.md"
        ) from None
    return Sealer.from_text(connection.password, source)
