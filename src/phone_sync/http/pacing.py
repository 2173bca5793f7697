"""Client-side pacing and retry timing, shared by every hook that talks HTTP.

One policy for both servers: exponential backoff with full jitter, never shorter than the
server's ``Retry-After``, and a token bucket that keeps a region under its agreed rate.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class SharedRate:
    """A rate shared by the processes that use it at once (a region's batches), divided anew as they come and go.

    A fixed share (``total / most``) leaves a slot's part unused from one batch's last request to the next
    batch's first: behind a one-identifier-per-request gateway, about 2.8 s per batch, 66 s of a 944-s run at
    20 requests per second. So a process that pacing holds back at least ``worth`` seconds before a request
    counts the processes running now, at most every ``probe`` seconds, and takes ``total / count``; above the
    fixed share it trusts a count only ``refresh`` seconds. A count is a round trip to Airflow's API server
    (the scarce part of a large run): held back for longer, the process pays for it from time it would sleep
    anyway; held back less (a generous rate), a freed share would gain it too little to ask.

    The total stays the ceiling: a process starts at the fixed share and sends its first request no sooner
    than ``refresh + 1 / fixed share`` after it began running (``began``, when the others can count it). By
    then every process above the fixed share has counted it and slowed down: its count is at most ``refresh``
    old when it decides a request's wait, and that wait is shorter than one request at the fixed share. A
    batch process needs longer than that to start (parse the DAG, read its rows), so it seldom waits; a
    process that finds itself alone need not wait at all. A count that fails means the fixed share.
    """

    def __init__(
        self,
        total: float,
        most: int,
        running: Callable[[], int],
        *,
        began: float,
        refresh: float = 0.3,
        probe: float = 0.25,
        worth: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if total <= 0 or most < 1:
            raise ValueError("total must be positive and most at least 1")
        self.total, self.most = total, most
        self.fixed = total / most
        self.rate = self.fixed
        self._ready_at: float | None = began + refresh + 1 / self.fixed
        self.counts = 0  # how often the running processes were counted
        self._running = running
        self._refresh, self._probe, self._worth = refresh, probe, worth
        self._clock = clock
        self._counted_at = began

    def wait_to_start(self) -> float:
        """Seconds before the first request may go out (0 once it has). A process alone needs no wait (nobody
        else can be above the fixed share) and takes the whole rate (``dag.test()`` runs one batch at a time)."""
        ready_at, self._ready_at = self._ready_at, None
        now = self._clock()
        if ready_at is None or ready_at <= now:
            return 0.0
        if self._count(now) == 1:
            return 0.0
        return ready_at - now

    def update(self, *, held_back: float) -> float:
        """The rate for the next request; ``held_back``: the seconds pacing would make it wait at the current rate."""
        now = self._clock()
        age = now - self._counted_at
        if (self.rate > self.fixed and age >= self._refresh) or (held_back >= self._worth and age >= self._probe):
            self._count(now)
        return self.rate

    def _count(self, now: float) -> int:
        """Count the processes running now and take their share; a count that fails means the fixed share."""
        self._counted_at = now
        self.counts += 1
        try:
            running = min(max(self._running(), 1), self.most)
        except Exception:  # nobody to ask: the fixed share is always safe
            running = self.most
        self.rate = self.total / running
        return running


class RateLimiter:
    """Token bucket: at most ``rate`` acquisitions per second, bursts of at most ``burst``.

    ``rate`` may be a :class:`SharedRate`: then the first acquisition waits until the share is ready, and each
    one takes the share's current rate.
    """

    def __init__(
        self, rate: float | SharedRate, burst: int = 1, clock=time.monotonic, sleep=time.sleep
    ) -> None:
        self.shared = rate if isinstance(rate, SharedRate) else None
        self.rate = rate.rate if isinstance(rate, SharedRate) else rate
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> float:
        """Block until a request may go out; return the seconds waited."""
        with self._lock:
            waited = self._until_shared_ready()
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self.shared is not None:
                self.rate = self.shared.update(held_back=max(0.0, 1 - self._tokens) / self.rate)
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            self._tokens -= 1
            if wait:
                self._sleep(wait)
                self.waited_seconds += wait
            return waited + wait

    def _until_shared_ready(self) -> float:
        wait = self.shared.wait_to_start() if self.shared is not None else 0.0
        if not wait:
            return 0.0
        self._sleep(wait)
        self.waited_seconds += wait
        self._last = self._clock()  # no tokens saved up while waiting to start
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped, and at least the server's Retry-After."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap * 4))
        return delay
