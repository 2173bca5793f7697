"""The one retry path for every HTTP request the project sends (FHIR, its token endpoint, Sheets, alert
webhooks, Airflow's REST API for the run note and ``phone-sync-unseal --api``).

What holds for all of them lives here, once:

- every attempt is paced by the hook's :class:`RateLimiter` and counted; connection errors, timeouts, 429
  and 5xx are retried with the :class:`Backoff` policy (exponential with jitter, never shorter than the
  server's ``Retry-After``); what outlives the retries raises :class:`RetriesExhausted`, which each hook
  turns into its own exception. An answer a :class:`WaitOut` policy claims (a rate-limited token endpoint)
  is waited out within a budget of seconds instead, then :class:`WaitedTooLong`;
- every request has a timeout (``send`` requires one);
- redirects are followed only on the same origin (scheme, host and port: never from https to http) and
  at most :data:`MAX_REDIRECTS` times; any other raises :class:`RedirectRefused` before anything is sent
  there, so a 307 cannot carry a search form or a client secret to another host;
- credentials sent (the ``Authorization`` header, basic auth, a URL that is itself the secret) are
  registered with Airflow's secrets masker; logs and messages name a label, ``METHOD /path``, never a
  query, a range or a secret URL.
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
from urllib.parse import urljoin, urlsplit

import requests
import tenacity

from phone_sync.errors import SetupError
from phone_sync.http.pacing import RETRYABLE_STATUS, Backoff, RateLimiter, parse_retry_after
from phone_sync.http.secrets import mask_authorization, mask_secret, mask_url
from phone_sync.http.urls import redirect_refusal

log = logging.getLogger(__name__)

# No answer, or half of one. The request may have reached the server, so only idempotent ones are repeated.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
MAX_REDIRECTS = 5
BODY_ARGUMENTS = ("data", "json", "files")


def request_label(method: str, url: str) -> str:
    """``METHOD /path``: what logs and messages call a request (never the query: it may carry search values)."""
    return f"{method.upper()} {urlsplit(url).path or '/'}"


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


class RedirectRefused(SetupError):
    """The server redirected a request to another origin (or kept redirecting): nothing was sent there.

    A set-up problem: the connection points at an address that moved. The message names the target's
    origin only (its path may hold a secret)."""


@dataclass(frozen=True)
class WaitOut:
    """Answers to wait out within ``budget`` seconds rather than a number of attempts (e.g. a token endpoint
    that is rate limiting this client): ``applies`` picks them, ``backoff`` times the waits (at least the
    ``Retry-After``), ``before_wait(delay)`` runs before each (e.g. to extend a lease)."""

    applies: Callable[[requests.Response], bool]
    backoff: Backoff
    budget: float
    before_wait: Callable[[float], None] | None = None


class WaitedTooLong(Exception):
    """A :class:`WaitOut` answer kept coming: the next wait (``delay``) would pass the budget (``waited`` so far)."""

    def __init__(self, label: str, waited: float, delay: float, response: requests.Response) -> None:
        self.waited = waited
        self.delay = delay
        self.response = response
        super().__init__(f"{label}: HTTP {response.status_code} still, after waiting {waited:.0f} s")


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
    :param limiter: client-side pacing, applied to every attempt (retries and redirects spend quota too).
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
        timeout: float | tuple[float, float],
        label: str | None = None,
        kind: str = "other",
        idempotent: bool = True,
        auth_headers: Callable[[], Mapping[str, str]] | None = None,
        refresh: Callable[[], None] | None = None,
        retry_statuses: frozenset[int] = RETRYABLE_STATUS,
        wait_out: WaitOut | None = None,
        secret_url: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Send ``method url`` until it gets a non-transient answer, and return that answer (any status).

        ``label`` defaults to :func:`request_label`; ``secret_url=True`` (the URL is the secret, as a chat
        webhook's is) masks it and needs a ``label`` of the caller's. ``auth_headers`` gives headers per
        attempt (a refreshed token shows up on the next one). ``refresh`` is called on the first 401 only,
        and the request is sent again at once without spending an attempt; a second 401 is returned.
        ``idempotent=False`` (e.g. an append) is never repeated after a transport error, since it may have
        landed. ``retry_statuses`` are the answers retried here; ``wait_out`` claims the answers it applies
        to (see :class:`WaitOut`). The rest of ``kwargs`` go to ``session.request``. Raises
        :class:`RetriesExhausted`, :class:`WaitedTooLong`, :class:`RedirectRefused`, or the transport error
        of a request that is not repeated.
        """
        if secret_url:
            if label is None:
                raise ValueError("a request to a secret URL needs a label that does not name it")
            mask_url(url)
        label = label or request_label(method, url)
        headers = dict(kwargs.pop("headers", None) or {})
        basic = kwargs.get("auth")
        if isinstance(basic, tuple) and len(basic) == 2:
            mask_secret(basic[1])
        refreshed = False

        def once() -> requests.Response:
            sent = headers | dict(auth_headers()) if auth_headers else headers
            mask_authorization(sent)
            return self._exchange(session, method, url, kind, label, headers=sent, timeout=timeout, **kwargs)

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

        claimed = wait_out.applies if wait_out else _never
        args = self._tenacity_args(label, idempotent, partial(_retryable_answer, retry_statuses, claimed))
        waited, waits = 0.0, 0
        while True:
            response = tenacity.Retrying(**args)(attempt)
            if wait_out is None or not wait_out.applies(response):
                return response
            waits += 1
            delay = wait_out.backoff.delay(waits, parse_retry_after(response.headers.get("Retry-After")))
            if waited + delay > wait_out.budget:
                raise WaitedTooLong(label, waited, delay, response)
            if wait_out.before_wait is not None:
                wait_out.before_wait(delay)
            self.wait(delay, label, f"HTTP {response.status_code}, rate limited")
            waited += delay

    def pause(self, attempt: int, retry_after: float | None, label: str, problem: str) -> float:
        """Wait as before retry number ``attempt`` (for retries the caller runs itself); return the delay."""
        delay = self.backoff.delay(attempt, retry_after)
        self._note_retry(label, problem, attempt, delay)
        self.sleep(delay)
        return delay

    def wait(self, delay: float, label: str, problem: str) -> None:
        """Sleep ``delay`` seconds before a retry timed by another policy; counted as a retry."""
        with self._lock:
            self.stats.retries += 1
            self.stats.wait_seconds += delay
        log.warning("%s %s: %s, waiting %.2fs before trying again", self.service, label, problem, delay)
        self.sleep(delay)

    # one attempt: the request and the same-origin redirects it leads to

    def _exchange(
        self, session: requests.Session, method: str, url: str, kind: str, label: str, **kwargs: Any
    ) -> requests.Response:
        for _ in range(MAX_REDIRECTS + 1):
            self._pace(kind)
            started = time.monotonic()
            response = session.request(method, url, allow_redirects=False, **kwargs)
            log.debug("%s %s -> %s in %.0f ms", self.service, label, response.status_code, _ms_since(started))
            if response.status_code == 429:
                self._add(throttled=1)
            if not response.is_redirect:
                return response
            target = urljoin(url, response.headers["Location"])
            response.close()
            refusal = redirect_refusal(url, target)
            if refusal:
                raise RedirectRefused(
                    f"{self.service} {label}: the server answered HTTP {response.status_code} redirecting {refusal}; "
                    "redirects are followed only on the same origin and scheme, so nothing was sent there "
                    "(point the connection at the final address)"
                )
            log.info("%s %s: HTTP %d, following a redirect on the same origin", self.service, label,
                     response.status_code)
            method = _redirected_method(method, response.status_code)
            if method == "GET":
                kwargs = {k: v for k, v in kwargs.items() if k not in BODY_ARGUMENTS}
            kwargs.pop("params", None)  # the Location carries the whole query
            url = target
        raise RedirectRefused(f"{self.service} {label}: more than {MAX_REDIRECTS} redirects in a row")

    # tenacity

    def _tenacity_args(
        self, label: str, idempotent: bool, retryable_answer: Callable[[Any], bool]
    ) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.backoff.attempts),
            "wait": self._wait,
            "retry": tenacity.retry_if_result(retryable_answer)
            | tenacity.retry_if_exception(partial(_retryable_error, idempotent)),
            "before_sleep": partial(self._before_sleep, label),
            "retry_error_callback": partial(_give_up, label),
            "sleep": self.sleep,
        }

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


def _redirected_method(method: str, status: int) -> str:
    """As browsers and requests do: 303 becomes GET, and so does a POST answered 301/302; 307/308 keep it."""
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def _never(response: requests.Response) -> bool:
    return False


def _retryable_answer(
    statuses: frozenset[int], claimed: Callable[[requests.Response], bool], response: Any
) -> bool:
    return isinstance(response, requests.Response) and response.status_code in statuses and not claimed(response)


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
