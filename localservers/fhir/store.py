"""SQLite storage for Patients: current versions, full history and an identifier index.

One connection guarded by a lock (the server runs many requests on one event loop and the seeding
code may write from another thread). WAL keeps readers cheap; ``synchronous=NORMAL`` keeps a
100-entry batch bundle well under a second while surviving a process restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localservers.fhir.errors import FhirServerError
from localservers.fhir.tokens import Token

SCHEMA = """
CREATE TABLE IF NOT EXISTS patient (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ident (
    value TEXT NOT NULL,
    system TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ident_value ON ident (value, system);
CREATE INDEX IF NOT EXISTS ident_seq ON ident (seq);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_if_match(header: str | None) -> int | None:
    """Version from ``W/"3"``, ``"3"`` or ``3``; None when absent."""
    if header is None or not header.strip():
        return None
    text = header.strip().removeprefix("W/").strip('"')
    try:
        return int(text)
    except ValueError:
        raise FhirServerError(400, f"Invalid If-Match header: {header!r}", "invalid") from None


class Store:
    """Patients in one SQLite file; every method is safe to call from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One SQLite transaction (nested calls become savepoints); rolls back on any error."""
        with self._lock:
            name = f"sp{self._depth}"
            self._conn.execute("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                self._conn.execute("ROLLBACK" if self._depth == 0 else f"ROLLBACK TO {name}")
                if self._depth:
                    self._conn.execute(f"RELEASE {name}")
                raise
            self._depth -= 1
            self._conn.execute("COMMIT" if self._depth == 0 else f"RELEASE {name}")

    # reads

    def read(self, patient_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM patient WHERE id = ?", (patient_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def vread(self, patient_id: str, version: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM history WHERE id = ? AND version = ?", (patient_id, version)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def history(self, patient_id: str) -> list[dict[str, Any]]:
        """All versions, newest first (as HAPI lists them)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM history WHERE id = ? ORDER BY version DESC", (patient_id,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM patient").fetchone()[0]

    def search(self, params: list[list[Token]]) -> list[int]:
        """Row keys of Patients matching every parameter (each an OR of tokens), in creation order."""
        with self._lock:
            result: set[int] | None = None
            for tokens in params:
                clauses, args = [], []
                for token in tokens:
                    parts, part_args = [], []
                    if token.value is not None:
                        parts.append("value = ?")
                        part_args.append(token.value)
                    if token.system is not None:
                        parts.append("system = ?")
                        part_args.append(token.system)
                    if parts:
                        clauses.append("(" + " AND ".join(parts) + ")")
                        args.extend(part_args)
                if not clauses:
                    return []
                sql = "SELECT DISTINCT seq FROM ident WHERE " + " OR ".join(clauses)  # noqa: S608 (placeholders only)
                found = {row[0] for row in self._conn.execute(sql, args)}
                result = found if result is None else result & found
            return sorted(result or ())

    def all_seqs(self) -> list[int]:
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT seq FROM patient ORDER BY seq")]

    def seqs_for_ids(self, ids: list[str]) -> list[int]:
        if not ids:
            return []
        with self._lock:
            marks = ",".join("?" * len(ids))
            return [row[0] for row in self._conn.execute(f"SELECT seq FROM patient WHERE id IN ({marks})", ids)]  # noqa: S608

    def by_seqs(self, seqs: list[int]) -> list[dict[str, Any]]:
        """Current versions of the given rows, in the given order (deleted rows skipped)."""
        if not seqs:
            return []
        with self._lock:
            marks = ",".join("?" * len(seqs))
            rows = dict(self._conn.execute(f"SELECT seq, body FROM patient WHERE seq IN ({marks})", seqs))  # noqa: S608
        return [json.loads(rows[seq]) for seq in seqs if seq in rows]

    # writes

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        with self.transaction():
            seq = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM patient").fetchone()[0]
            return self._write(str(seq), 1, resource, seq=seq, insert=True)

    def update(self, patient_id: str, resource: dict[str, Any], if_match: int | None, conflict_status: int = 409):
        """Update (or create with a client-assigned id); returns (stored resource, created)."""
        with self.transaction():
            row = self._conn.execute("SELECT seq, version FROM patient WHERE id = ?", (patient_id,)).fetchone()
            if row is None:
                if if_match is not None:
                    raise FhirServerError(404, f"Resource Patient/{patient_id} is not known", "not-found")
                if patient_id.isdigit():
                    raise FhirServerError(
                        400,
                        f"Can not create resource with ID[{patient_id}], no resource with this ID exists and clients "
                        "may only assign IDs which contain at least one non-numeric character",
                    )
                seq = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM patient").fetchone()[0]
                return self._write(patient_id, 1, resource, seq=seq, insert=True), True
            seq, version = row
            if if_match is not None and if_match != version:
                raise FhirServerError(
                    conflict_status,
                    f"Trying to update Patient/{patient_id}/_history/{if_match} but this is not the current "
                    f"version (current is {version})",
                    "conflict",
                )
            return self._write(patient_id, version + 1, resource, seq=seq, insert=False), False

    def insert_many(self, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk-create Patients (seeding): numeric or missing ids become the row key, like HAPI's."""
        written = []
        with self.transaction():
            seq = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM patient").fetchone()[0]
            for resource in resources:
                seq += 1
                given = str(resource.get("id") or "")
                patient_id = given if given and not given.isdigit() else str(seq)
                written.append(self._write(patient_id, 1, resource, seq=seq, insert=True))
        return written

    def _write(self, patient_id: str, version: int, resource: dict[str, Any], *, seq: int, insert: bool):
        stored = dict(resource)
        stored["resourceType"] = "Patient"
        stored["id"] = patient_id
        updated = now_iso()
        stored["meta"] = {**(resource.get("meta") or {}), "versionId": str(version), "lastUpdated": updated}
        body = json.dumps(stored, separators=(",", ":"), ensure_ascii=False)
        if insert:
            self._conn.execute(
                "INSERT INTO patient (seq, id, version, last_updated, body) VALUES (?, ?, ?, ?, ?)",
                (seq, patient_id, version, updated, body),
            )
        else:
            self._conn.execute(
                "UPDATE patient SET version = ?, last_updated = ?, body = ? WHERE seq = ?",
                (version, updated, body, seq),
            )
            self._conn.execute("DELETE FROM ident WHERE seq = ?", (seq,))
        self._conn.execute("INSERT INTO history (id, version, body) VALUES (?, ?, ?)", (patient_id, version, body))
        identifiers = [
            (str(item.get("value")), str(item.get("system") or ""), seq)
            for item in stored.get("identifier") or []
            if isinstance(item, dict) and item.get("value") is not None
        ]
        if identifiers:
            self._conn.executemany("INSERT INTO ident (value, system, seq) VALUES (?, ?, ?)", identifiers)
        return stored
