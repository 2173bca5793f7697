"""Per-minute read and write quotas per user and per project, and the request counters tests read.

Sheets counts a batch request as one request; a request refused with 429 does not use quota.
Windows are fixed (like Google's per-minute buckets); their length is configurable so tests
can ride out a burst in seconds rather than a minute.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from .store import ApiError

LIMIT_NAMES = {
    ("read", "user"): "Read requests per minute per user",
    ("read", "project"): "Read requests per minute",
    ("write", "user"): "Write requests per minute per user",
    ("write", "project"): "Write requests per minute",
}


@dataclass
class Settings:
    """Everything the control API may change at runtime."""

    read_per_user: int = 60
    write_per_user: int = 60
    read_per_project: int = 300
    write_per_project: int = 300
    window_seconds: float = 60.0
    latency_ms: float = 0.0
    allow_anonymous: bool = False
    max_request_bytes: int = 10 * 1024 * 1024

    def update(self, changes: dict[str, object]) -> None:
        for key, value in changes.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown setting {key!r}; known: {sorted(self.__dataclass_fields__)}")
            current = getattr(self, key)
            if isinstance(current, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            setattr(self, key, type(current)(value))  # type: ignore[call-arg]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Stats:
    """Counts of API requests by kind, user, method and outcome."""

    total: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    by_user: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_method: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    max_body_bytes: int = 0
    per_second: Counter[int] = field(default_factory=Counter)  # admitted requests by whole second of the clock
    window_seconds: float = 60.0

    def busiest_window(self) -> int:
        """The most requests admitted within any ``window_seconds`` (sliding, by whole seconds): what a
        client must keep under its per-minute quota, wherever Google's buckets start."""
        width = max(1, round(self.window_seconds))
        seconds = sorted(self.per_second)
        best, total, start = 0, 0, 0
        for second in seconds:
            total += self.per_second[second]
            while seconds[start] <= second - width:
                total -= self.per_second[seconds[start]]
                start += 1
            best = max(best, total)
        return best

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "read": self.kinds["read"],
            "write": self.kinds["write"],
            "throttled": sum(self.throttled.values()),
            "throttled_read": self.throttled["read"],
            "throttled_write": self.throttled["write"],
            "by_user": {user: dict(counts) for user, counts in self.by_user.items()},
            "by_method": dict(self.by_method),
            "by_status": {str(code): n for code, n in self.statuses.items()},
            "max_body_bytes": self.max_body_bytes,
            "busiest_window": self.busiest_window(),
        }


class Quotas:
    """Admit or refuse (429 RESOURCE_EXHAUSTED) each request, and count it."""

    def __init__(self, settings: Settings, clock=time.monotonic) -> None:
        self.settings = settings
        self.stats = Stats()
        self._clock = clock
        self._window: int | None = None
        self._used: Counter[tuple[str, str]] = Counter()

    def reset_counts(self) -> None:
        self.stats = Stats()
        self._used.clear()

    def admit(self, user: str, kind: str, method: str, body_bytes: int) -> None:
        """Count the request; raise a 429 ApiError when a per-minute quota is spent."""
        stats = self.stats
        stats.total += 1
        stats.kinds[kind] += 1
        stats.by_user[user][kind] += 1
        stats.by_method[method] += 1
        stats.max_body_bytes = max(stats.max_body_bytes, body_bytes)
        now = self._clock()
        window = self.settings.window_seconds
        index = math.floor(now / window)
        if index != self._window:
            self._window = index
            self._used.clear()
        limits = {
            "user": getattr(self.settings, f"{kind}_per_user"),
            "project": getattr(self.settings, f"{kind}_per_project"),
        }
        for scope, key in (("user", user), ("project", "*")):
            if self._used[(kind, key)] >= limits[scope]:
                stats.throttled[kind] += 1
                stats.by_user[user]["throttled"] += 1
                retry_after = max(1, math.ceil((index + 1) * window - now))
                raise ApiError(
                    429,
                    f"Quota exceeded for quota metric '{kind.capitalize()} requests' and limit "
                    f"'{LIMIT_NAMES[(kind, scope)]}' of service 'sheets.googleapis.com' "
                    f"for consumer 'project_number:000000000000'.",
                    "RESOURCE_EXHAUSTED",
                    {"Retry-After": str(retry_after)},
                )
        self._used[(kind, user)] += 1
        self._used[(kind, "*")] += 1
        stats.window_seconds = window
        stats.per_second[math.floor(now)] += 1
