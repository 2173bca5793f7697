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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from phone_sync.errors import SetupError

DEFAULT_KEY_CONN_ID = "phone_sync_phi_key"
COMPRESSION_LEVEL = 6
# A large value is sealed as several Fernet tokens, one per 64 KiB of compressed JSON, joined by "." (not in a
# token's alphabet): Fernet copies its input about six times, and a 100,000-row value (2 MB compressed) sealed
# as one token cost extract_rows 15 MiB at its peak. zlib's checksum over the whole value catches pieces
# dropped, repeated or reordered.
SEALED_PIECE_BYTES = 64 * 1024
# Exactly one Fernet key: 32 bytes, url-safe base64 with its padding. Fernet alone would take "NEW;OLD",
# "NEW OLD" or "NEW\nOLD" as NEW (base64 decoding stops at NEW's padding) and silently drop OLD.
FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class PhiKeyError(SetupError):
    """The PHI key connection is missing, malformed, or lacks the key that sealed a value."""


class DamagedSealError(SetupError):
    """A sealed value whose pieces open but do not make one value (some dropped, repeated or reordered)."""


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

    def seal_json(self, data: bytes | Iterable[bytes]) -> str:
        """JSON bytes, or the pieces of them (compressed as they come, never joined), compressed and encrypted:
        the Fernet tokens as text, joined by "." (one token for a value under 64 KiB compressed)."""
        compressor = zlib.compressobj(COMPRESSION_LEVEL)
        tokens: list[str] = []
        pending = b""
        for piece in [data] if isinstance(data, bytes) else data:
            pending += compressor.compress(piece)
            while len(pending) >= SEALED_PIECE_BYTES:
                tokens.append(self._fernet.encrypt(pending[:SEALED_PIECE_BYTES]).decode("ascii"))
                pending = pending[SEALED_PIECE_BYTES:]
        tokens.append(self._fernet.encrypt(pending + compressor.flush()).decode("ascii"))
        return ".".join(tokens)

    def open(self, token: str, what: str = "a sealed XCom value") -> Any:
        """The value :meth:`seal` sealed."""
        return json.loads(self.open_json(token, what))

    def open_json(self, token: str, what: str = "a sealed XCom value") -> bytes:
        """The JSON bytes :meth:`seal_json` sealed; a wrong or missing key says which setting to fix."""
        return b"".join(self._opened(token, what))

    def open_lines(self, token: str, what: str = "a sealed XCom value") -> Iterator[bytes]:
        """The lines of what :meth:`seal_json` sealed, one at a time as they are opened: a reader that parses
        each line never holds the whole value (at 100,000 rows, 17 MiB of JSON)."""
        rest = b""
        for piece in self._opened(token, what):
            *lines, rest = (rest + piece).split(b"\n")
            yield from lines
        yield rest

    def _opened(self, token: str, what: str) -> Iterator[bytes]:
        """The sealed bytes, decrypted and decompressed piece by piece, in order."""
        decompressor = zlib.decompressobj()
        with self._explained(what):
            parts = (token.decode("ascii") if isinstance(token, bytes) else token).split(".")
        for part in parts:
            with self._explained(what):
                opened = decompressor.decompress(self._fernet.decrypt(part.encode("ascii")))
            yield opened
        with self._explained(what):
            rest = decompressor.flush()
            if not decompressor.eof or decompressor.unused_data:
                raise zlib.error("the pieces end before, or after, the value")
        yield rest

    @contextmanager
    def _explained(self, what: str) -> Iterator[None]:
        try:
            yield
        except (InvalidToken, TypeError, ValueError, AttributeError):
            raise PhiKeyError(
                f"{what} cannot be opened with the keys in {self.source}: the key that sealed it is not there "
                "(after a rotation, keep the old key after the new one until the runs sealed with it are done)"
            ) from None
        except zlib.error:
            raise DamagedSealError(f"{what} is damaged: its sealed pieces do not make one value") from None


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
