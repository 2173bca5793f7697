"""The one retry path for every HTTP request the project sends (FHIR, Sheets, alert webhooks).

Each attempt is paced by the hook's :class:`RateLimiter` and counted; connection errors, timeouts, 429
and 5xx are retried with the :class:`Backoff` policy (exponential with jitter, never shorter than the
server's ``Retry-After``). It runs on tenacity, so :meth:`HttpRetry.tenacity_args` also drives the HTTP
provider's ``HttpHook.run_with_advanced_retry``. What outlives the retries raises
:class:`RetriesExhausted`; each hook turns that into its own exception. Labels name a method and a path
(never a query, a range or a URL with a secret in it): they are logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import requests
import tenacity

from phone_sync.http.pacing import RETRYABLE_STATUS, Backoff, RateLimiter, parse_retry_after

log = logging.getLogger(__name__)

# No answer, or half of one. The request may have reached the server, so only idempotent ones are repeated.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class RetriesExhausted(Exception):
    """Every attempt failed transiently: ``response`` is the last answer, or ``None`` after a transport
    ``error``. Hooks map it to their own exception; the message holds only the label and counts."""

    def __init__(
        self, label: str, attempts: int, response: requests.Response | None = None, error: BaseException | None = None
    ) -> None:
        self.label = label
        self.attempts = attempts
        self.response = response
        self.error = error
        super().__init__(f"{label}: {self.problem} after {attempts} attempts")

    @property
    def problem(self) -> str:
        """``HTTP 503`` or the transport error's class name (its text may name the URL)."""
        if self.response is not None:
            return f"HTTP {self.response.status_code}"
        return type(self.error).__name__


@dataclass
class RetryStats:
    """What one hook's requests cost: attempts by kind, retries, 429s, refreshes and seconds waited."""

    requests: Counter[str] = field(default_factory=Counter)  # attempts sent, by kind (e.g. "search", "read")
    retries: int = 0
    throttled: int = 0  # answers with HTTP 429
    refreshes: int = 0  # credentials refreshed after a 401
    wait_seconds: float = 0.0  # slept before retries (pacing waits are the limiter's)

    @property
    def total(self) -> int:
        return sum(self.requests.values())


class HttpRetry:
    """Pace, send and retry the requests of one hook, counting what they cost (see module docstring).

    :param backoff: attempts and delays; ``backoff.attempts`` counts the first try.
    :param limiter: client-side pacing, applied to every attempt (retries spend quota too).
    :param sleep: how to wait before a retry; tests pass one that records.
    :param service: log prefix, e.g. ``"FHIR"``.
    """

    def __init__(
        self,
        backoff: Backoff,
        limiter: RateLimiter | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        service: str = "HTTP",
    ) -> None:
        self.backoff = backoff
        self.limiter = limiter
        self.sleep = sleep
        self.service = service
        self.stats = RetryStats()
        self._lock = threading.Lock()

    def send(
        self,
        session: requests.Session,
        method: str,
        url: str,
        *,
        kind: str = "other",
        label: str,
        idempotent: bool = True,
        auth_headers: Callable[[], Mapping[str, str]] | None = None,
        refresh: Callable[[], None] | None = None,
        retry_statuses: frozenset[int] = RETRYABLE_STATUS,
        **kwargs: Any,
    ) -> requests.Response:
        """Send ``method url`` until it gets a non-transient answer, and return that answer (any status).

        ``auth_headers`` gives headers per attempt (a refreshed token shows up on the next one).
        ``refresh`` is called on the first 401 only, and the request is sent again at once without
        spending an attempt; a second 401 is returned. ``idempotent=False`` (e.g. an append) is never
        repeated after a transport error, since it may have landed. ``retry_statuses`` are the answers
        retried here (a caller that waits out a 429 on its own terms leaves 429 out). The rest of ``kwargs`` go to
        ``session.request``. Raises :class:`RetriesExhausted`, or the transport error of a request
        that is not repeated.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        refreshed = False

        def once() -> requests.Response:
            sent = headers | dict(auth_headers()) if auth_headers else headers
            self._pace(kind)
            started = time.monotonic()
            response = session.request(method, url, headers=sent, **kwargs)
            log.debug("%s %s -> %s in %.0f ms", self.service, label, response.status_code, _ms_since(started))
            if response.status_code == 429:
                self._add(throttled=1)
            return response

        def attempt() -> requests.Response:
            nonlocal refreshed
            response = once()
            if response.status_code == 401 and refresh is not None and not refreshed:
                refreshed = True
                self._add(refreshes=1)
                log.info("%s %s: HTTP 401, refreshing the credentials once", self.service, label)
                refresh()
                response = once()
            return response

        args = self.tenacity_args(label, idempotent=idempotent, statuses=retry_statuses)
        return tenacity.Retrying(**args)(attempt)

    def tenacity_args(
        self, label: str, *, idempotent: bool = True, statuses: frozenset[int] = RETRYABLE_STATUS
    ) -> dict[str, Any]:
        """This policy as ``tenacity.Retrying`` arguments, for a call that returns a ``requests.Response``."""
        return {
            "stop": tenacity.stop_after_attempt(self.backoff.attempts),
            "wait": self._wait,
            "retry": tenacity.retry_if_result(partial(_retryable_answer, statuses))
            | tenacity.retry_if_exception(partial(_retryable_error, idempotent)),
            "before_sleep": partial(self._before_sleep, label),
            "retry_error_callback": partial(_give_up, label),
            "sleep": self.sleep,
        }

    def pause(self, attempt: int, retry_after: float | None, label: str, problem: str) -> float:
        """Wait as before retry number ``attempt`` (for retries the caller runs itself); return the delay."""
        delay = self.backoff.delay(attempt, retry_after)
        self._note_retry(label, problem, attempt, delay)
        self.sleep(delay)
        return delay

    def wait(self, delay: float, label: str, problem: str) -> None:
        """Sleep ``delay`` seconds before a retry the caller times by its own policy; counted as a retry."""
        with self._lock:
            self.stats.retries += 1
            self.stats.wait_seconds += delay
        log.warning("%s %s: %s, waiting %.2fs before trying again", self.service, label, problem, delay)
        self.sleep(delay)

    def _pace(self, kind: str) -> None:
        if self.limiter is not None:
            self.limiter.acquire()
        with self._lock:
            self.stats.requests[kind] += 1

    def _add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        response = None if outcome is None or outcome.failed else outcome.result()
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        return self.backoff.delay(state.attempt_number, retry_after)

    def _before_sleep(self, label: str, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None
        problem = type(outcome.exception()).__name__ if outcome.failed else f"HTTP {outcome.result().status_code}"
        self._note_retry(label, problem, state.attempt_number, state.upcoming_sleep)

    def _note_retry(self, label: str, problem: str, attempt: int, delay: float) -> None:
        with self._lock:
            self.stats.retries += 1
            self.stats.wait_seconds += delay
        log.warning(
            "%s %s: %s, retry %d/%d in %.2fs", self.service, label, problem, attempt, self.backoff.attempts - 1, delay
        )


def _retryable_answer(statuses: frozenset[int], response: Any) -> bool:
    return isinstance(response, requests.Response) and response.status_code in statuses


def _retryable_error(idempotent: bool, error: BaseException) -> bool:
    return idempotent and isinstance(error, TRANSPORT_ERRORS)


def _give_up(label: str, state: tenacity.RetryCallState) -> NoReturn:
    outcome = state.outcome
    assert outcome is not None
    if outcome.failed:
        error = outcome.exception()
        raise RetriesExhausted(label, state.attempt_number, error=error) from error
    raise RetriesExhausted(label, state.attempt_number, response=outcome.result())


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000
