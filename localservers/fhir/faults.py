"""Fault knobs: latency, 429 with Retry-After, 503 outages, dropped connections, per-patient rejections, 403s,
refusals that quote patient data, and the interactions a server (or the API gateway in front of it)
refuses.

Set at start from the command line and changed at runtime with ``POST /_admin/faults``. Faults apply to
FHIR interactions only: ``/metadata`` (the health check), the token endpoint and ``/_admin`` are spared.
:data:`GATEWAY` is a SATUSEHAT-style gateway that refuses everything it can: only GET searches with one
identifier, updates by JSON Patch only, pages of 10, and a CapabilityStatement that does not say so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass
class Knobs:
    latency_ms: float = 0.0
    # 429s: the next N requests, every Nth request, for a time window, or above a request rate.
    throttle_next: int = 0
    throttle_every: int = 0
    throttle_for_seconds: float = 0.0
    throttle_rps: float = 0.0
    retry_after: float = 1.0
    # 503s: the next N requests, for a time window, or requests whose query/body mention an identifier.
    outage_next: int = 0
    outage_for_seconds: float = 0.0
    outage_identifiers: list[str] = field(default_factory=list)
    outage_retry_after: float | None = None
    # Connections closed without an answer.
    drop_next: int = 0
    drop_every: int = 0
    # Behaviour switches.
    conflict_status: int = 409
    batch_enabled: bool = True
    reject_identifiers: list[str] = field(default_factory=list)
    search_include_outcome: bool = False
    # 403 for every FHIR interaction: the credentials are valid but lack a permission (HAPI's authorization
    # interceptor answers like this; SATUSEHAT answers 403 for an organisation not allowed a resource).
    forbidden: bool = False
    # A server that quotes patient data in its errors, as servers quoting the request back do: every request of
    # an interaction in ``refuse`` ("search", "batch", ...) answers that HTTP status with an OperationOutcome, and
    # ``quote`` ends the diagnostics of those answers and of the ``reject_identifiers`` rejections.
    refuse: dict[str, int] = field(default_factory=dict)
    quote: str = ""
    # Interactions refused, as by a server that lacks them or a gateway that passes only some.
    search_post_enabled: bool = True  # False: POST Patient/_search answers 405 (only GET searches pass)
    or_lists: str = "understood"  # "refused": 400 not-supported; "misread": the comma taken as part of one value
    put_enabled: bool = True  # False: PUT answers 405, in a batch Bundle too (updates by JSON Patch only)
    patch_enabled: bool = True  # False: PATCH answers 405
    page_size_cap: int = 0  # > 0: no page holds more entries than this, whatever _count asks
    capability_hides_refusals: bool = False  # True: the CapabilityStatement claims every interaction anyway
    # A broken gateway: the batch-response's entries are bare strings ("200 OK"), not objects.
    batch_entries_malformed: bool = False


OR_LISTS = ("understood", "refused", "misread")
# A SATUSEHAT-style gateway refusing all it can (and its CapabilityStatement not saying so).
GATEWAY: dict[str, Any] = {
    "batch_enabled": False,
    "search_post_enabled": False,
    "or_lists": "refused",
    "put_enabled": False,
    "page_size_cap": 10,
    "capability_hides_refusals": True,
}


@dataclass(frozen=True)
class Fault:
    kind: str  # "drop" | "outage" | "throttle"
    retry_after: float | None = None


class Faults:
    """Current knobs plus the counters and windows they need; thread-safe."""

    def __init__(self, knobs: Knobs) -> None:
        self._startup = replace(knobs)
        self._lock = threading.Lock()
        self.knobs = knobs
        self._seen = 0
        self._throttle_until = 0.0
        self._outage_until = 0.0
        self._bucket = 0.0
        self._bucket_at = time.monotonic()
        self._arm(knobs)

    def _arm(self, knobs: Knobs) -> None:
        now = time.monotonic()
        if knobs.throttle_for_seconds:
            self._throttle_until = now + knobs.throttle_for_seconds
        if knobs.outage_for_seconds:
            self._outage_until = now + knobs.outage_for_seconds
        self._bucket = max(1.0, knobs.throttle_rps)
        self._bucket_at = now

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial change (unknown keys are errors); windows start now."""
        names = {f.name for f in fields(Knobs)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault knobs: {sorted(unknown)}")
        if changes.get("conflict_status", 409) not in (409, 412):
            raise ValueError("conflict_status must be 409 or 412")
        if not all(isinstance(status, int) and 400 <= status < 600 for status in changes.get("refuse", {}).values()):
            raise ValueError("refuse maps interactions to HTTP statuses from 400 to 599")
        if changes.get("or_lists", "understood") not in OR_LISTS:
            raise ValueError(f"or_lists must be one of {list(OR_LISTS)}")
        with self._lock:
            self.knobs = replace(self.knobs, **changes)
            now = time.monotonic()
            if "throttle_for_seconds" in changes:
                self._throttle_until = now + self.knobs.throttle_for_seconds
            if "outage_for_seconds" in changes:
                self._outage_until = now + self.knobs.outage_for_seconds
            if "throttle_rps" in changes:
                self._bucket, self._bucket_at = max(1.0, self.knobs.throttle_rps), now
            return self.snapshot()

    def reset(self) -> dict[str, Any]:
        with self._lock:
            self.knobs = replace(self._startup)
            self._throttle_until = self._outage_until = 0.0
            self._arm(self.knobs)
            return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self.knobs)
        now = time.monotonic()
        data["throttle_remaining_seconds"] = max(0.0, self._throttle_until - now)
        data["outage_remaining_seconds"] = max(0.0, self._outage_until - now)
        return data

    def decide(self, raw: bytes) -> Fault | None:
        """The fault (if any) for one FHIR request; ``raw`` is its query string plus body."""
        with self._lock:
            knobs = self.knobs
            self._seen += 1
            now = time.monotonic()
            if knobs.drop_next > 0:
                knobs.drop_next -= 1
                return Fault("drop")
            if knobs.drop_every and self._seen % knobs.drop_every == 0:
                return Fault("drop")
            if knobs.outage_next > 0:
                knobs.outage_next -= 1
                return Fault("outage", knobs.outage_retry_after)
            if now < self._outage_until:
                return Fault("outage", knobs.outage_retry_after)
            if knobs.outage_identifiers and any(value.encode() in raw for value in knobs.outage_identifiers):
                return Fault("outage", knobs.outage_retry_after)
            if knobs.throttle_next > 0:
                knobs.throttle_next -= 1
                return Fault("throttle", knobs.retry_after)
            if now < self._throttle_until:
                return Fault("throttle", max(knobs.retry_after, 0.0))
            if knobs.throttle_every and self._seen % knobs.throttle_every == 0:
                return Fault("throttle", knobs.retry_after)
            if knobs.throttle_rps:
                self._bucket = min(knobs.throttle_rps, self._bucket + (now - self._bucket_at) * knobs.throttle_rps)
                self._bucket_at = now
                if self._bucket < 1:
                    return Fault("throttle", (1 - self._bucket) / knobs.throttle_rps)
                self._bucket -= 1
            return None
