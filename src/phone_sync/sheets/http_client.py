"""The gspread HTTP client the hook plugs in: base-URL rewrite, pacing, backoff, request counting.

gspread builds every Sheets URL from the public endpoint; rewriting the prefix here points the
unchanged production code path at a proxy or the local emulator. Every attempt (retries
included) is paced and counted, because every attempt spends the region's quota.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import requests
from google.auth.credentials import Credentials
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient

from phone_sync.http.pacing import RETRYABLE_STATUS, Backoff, RateLimiter, parse_retry_after

log = logging.getLogger(__name__)

PUBLIC_SHEETS_URL = "https://sheets.googleapis.com"


@dataclass
class RequestCounter:
    """Sheets requests sent by one hook, by quota kind (GET reads, everything else writes)."""

    read: int = 0
    write: int = 0
    throttled: int = 0  # answered 429
    retried: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total(self) -> int:
        return self.read + self.write

    def add(self, kind: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "read": self.read,
            "write": self.write,
            "throttled": self.throttled,
            "retried": self.retried,
        }


def _method_name(url: str) -> str:
    """A log-safe name for the call: the path without ranges (sheet titles may be free text)."""
    path = url.split("?", 1)[0].split("/v4/spreadsheets/", 1)[-1]
    parts = path.split("/")
    if len(parts) == 1:
        return "spreadsheets" + (":batchUpdate" if parts[0].endswith(":batchUpdate") else ".get")
    if len(parts) == 2:
        return parts[1]
    suffix = parts[-1].rsplit(":", 1)[-1] if ":" in parts[-1] else ""
    return "values" + (f":{suffix}" if suffix in ("append", "clear") else "")


class PacedHTTPClient(HTTPClient):
    """gspread's HTTPClient with the project's retry policy (see ``phone_sync.http.pacing``)."""

    def __init__(
        self,
        auth: Credentials | None,
        session: requests.Session | None = None,
        *,
        base_url: str = PUBLIC_SHEETS_URL,
        limiter: RateLimiter,
        backoff: Backoff,
        counter: RequestCounter,
        timeout: float | None = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(auth, session)  # type: ignore[arg-type]
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.backoff = backoff
        self.counter = counter
        self.timeout = timeout
        self._sleep = sleep

    def _rewrite(self, endpoint: str) -> str:
        if endpoint.startswith(PUBLIC_SHEETS_URL):
            return self.base_url + endpoint[len(PUBLIC_SHEETS_URL) :]
        return endpoint

    def request(
        self,
        method: str,
        endpoint: str,
        params: MutableMapping[str, Any] | None = None,
        data: bytes | None = None,
        json: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: MutableMapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with pacing; retry 429/5xx (honouring Retry-After) and transport errors; raise APIError."""
        url = self._rewrite(endpoint)
        kind = "read" if method.upper() == "GET" else "write"
        name = _method_name(url)
        # An append that timed out may have landed; repeating it could duplicate a report row.
        transport_retry = not name.endswith(":append")
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            self.counter.add(kind)
            try:
                response = self.session.request(
                    method=method, url=url, json=json, params=params, data=data,
                    files=files, headers=headers, timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.backoff.attempts or not transport_retry:
                    raise
                self._wait(attempt, None, f"{type(exc).__name__}", method, name)
                continue
            if response.ok:
                return response
            if response.status_code == 429:
                self.counter.add("throttled")
            if response.status_code in RETRYABLE_STATUS and attempt < self.backoff.attempts:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._wait(attempt, retry_after, f"HTTP {response.status_code}", method, name)
                continue
            raise APIError(response)

    def _wait(self, attempt: int, retry_after: float | None, reason: str, method: str, name: str) -> None:
        delay = self.backoff.delay(attempt, retry_after)
        self.counter.add("retried")
        log.warning(
            "Sheets %s %s: %s; retry %d of %d in %.2fs",
            method.upper(), name, reason, attempt, self.backoff.attempts - 1, delay,
        )
        self._sleep(delay)
