"""The shared retry path (``phone_sync.http.retry``) over real HTTP, against the local FHIR server's faults.

Sleeps are recorded instead of slept, so the tests check the waits the policy chose, not the clock.
"""

from __future__ import annotations

import pytest
import requests

from localservers.fhir.seed import make_patient
from phone_sync.http.pacing import Backoff, RateLimiter
from phone_sync.http.retry import HttpRetry, RetriesExhausted
from tests.fhir.helpers import TOKEN, LocalFhir, new_nik

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def make_retry(attempts: int = 4, base: float = 0.01, limiter: RateLimiter | None = None) -> tuple[HttpRetry, list]:
    sleeps: list[float] = []
    return HttpRetry(Backoff(attempts=attempts, base=base, cap=10.0), limiter, sleep=sleeps.append), sleeps


def get(retry: HttpRetry, fhir: LocalFhir, path: str, **kwargs) -> requests.Response:
    with requests.Session() as session:
        return retry.send(session, "GET", f"{fhir.url}/{path}", label=f"GET /{path}", timeout=5, **kwargs)


def test_every_attempt_is_paced_and_counted(fhir: LocalFhir) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, burst=1, clock=lambda: now[0], sleep=sleep)
    retry, _ = make_retry(limiter=limiter)
    fhir.faults(throttle_next=1, retry_after=0)

    for _ in range(3):
        get(retry, fhir, "Patient/1", kind="read", auth_headers=lambda: BEARER)

    assert fhir.stats()["by_status"] == {"429": 1, "200": 3}
    assert retry.stats.requests == {"read": 4}, "the retry is an attempt too"
    assert waits == pytest.approx([0.1, 0.1, 0.1]), "each attempt after the first waits one interval"
    assert limiter.waited_seconds == pytest.approx(0.3)


def test_retry_after_is_honoured_and_counted(fhir: LocalFhir) -> None:
    retry, sleeps = make_retry()
    fhir.faults(throttle_next=2, retry_after=2)

    response = get(retry, fhir, "Patient/1", kind="read", auth_headers=lambda: BEARER)

    assert response.status_code == 200
    assert fhir.stats()["by_status"] == {"429": 2, "200": 1}
    assert len(sleeps) == 2
    assert all(delay >= 2 for delay in sleeps), "never shorter than Retry-After, though the backoff says 10 ms"
    stats = retry.stats
    assert (stats.retries, stats.throttled, stats.total) == (2, 2, 3)
    assert stats.wait_seconds == pytest.approx(sum(sleeps))


def test_backoff_grows_then_exhaustion_raises_with_the_last_answer(fhir: LocalFhir) -> None:
    retry, sleeps = make_retry(attempts=4, base=1.0)
    fhir.faults(outage_for_seconds=30)

    with pytest.raises(RetriesExhausted, match=r"GET /Patient/1: HTTP 503 after 4 attempts") as raised:
        get(retry, fhir, "Patient/1", kind="read", auth_headers=lambda: BEARER)

    assert raised.value.response is not None
    assert raised.value.response.status_code == 503
    assert fhir.stats()["by_status"] == {"503": 4}
    assert len(sleeps) == 3, "no wait after the last attempt"
    for delay, ceiling in zip(sleeps, (1.0, 2.0, 4.0), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert retry.stats.retries == 3
    assert retry.stats.wait_seconds == pytest.approx(sum(sleeps))


def test_a_401_refreshes_once_without_spending_an_attempt(fhir: LocalFhir) -> None:
    retry, sleeps = make_retry(attempts=1)  # no retries at all: the re-send after a refresh is not one
    tokens = ["revoked-token", TOKEN]
    refreshed: list[bool] = []

    def refresh() -> None:
        refreshed.append(True)
        tokens.pop(0)

    def current() -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[0]}"}

    response = get(retry, fhir, "Patient/1", auth_headers=current, refresh=refresh)

    assert response.status_code == 200
    assert refreshed == [True]
    assert fhir.stats()["by_status"] == {"401": 1, "200": 1}
    assert (retry.stats.refreshes, retry.stats.retries, retry.stats.total, sleeps) == (1, 0, 2, [])


def test_a_second_401_is_returned_not_refreshed_again(fhir: LocalFhir) -> None:
    retry, _ = make_retry()
    refreshes: list[bool] = []

    def wrong() -> dict[str, str]:
        return {"Authorization": "Bearer wrong"}

    response = get(retry, fhir, "Patient/1", auth_headers=wrong, refresh=lambda: refreshes.append(True))

    assert response.status_code == 401
    assert refreshes == [True]
    assert fhir.stats()["by_status"] == {"401": 2}


def test_dropped_connections_of_idempotent_requests_are_retried(fhir: LocalFhir) -> None:
    retry, sleeps = make_retry()
    fhir.faults(drop_next=2)

    assert get(retry, fhir, "Patient/1", auth_headers=lambda: BEARER).status_code == 200

    assert fhir.stats()["faults"] == {"drop": 2}
    assert (retry.stats.retries, retry.stats.total, len(sleeps)) == (2, 3, 2)


def test_dropped_connections_that_persist_raise_with_the_transport_error(fhir: LocalFhir) -> None:
    retry, _ = make_retry(attempts=3)
    fhir.faults(drop_every=1)

    with pytest.raises(RetriesExhausted, match="ConnectionError after 3 attempts") as raised:
        get(retry, fhir, "Patient/1", auth_headers=lambda: BEARER)

    assert raised.value.response is None
    assert isinstance(raised.value.error, requests.ConnectionError)
    assert fhir.stats()["faults"] == {"drop": 3}


def test_a_non_idempotent_request_is_not_repeated_after_a_transport_error(fhir: LocalFhir) -> None:
    retry, sleeps = make_retry()
    fhir.faults(drop_next=1)
    patient = make_patient(new_nik(), phone="+6281211112222")

    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        retry.send(
            session, "POST", f"{fhir.url}/Patient", label="POST /Patient", idempotent=False,
            auth_headers=lambda: BEARER, json=patient, timeout=5,
        )

    assert fhir.stats()["total"] == 1, "a create that may have landed is not sent twice"
    assert (retry.stats.retries, retry.stats.total, sleeps) == (0, 1, [])


def test_a_non_idempotent_request_is_repeated_after_a_429(fhir: LocalFhir) -> None:
    retry, sleeps = make_retry()
    fhir.faults(throttle_next=1, retry_after=0)
    patient = make_patient(new_nik(), phone="+6281211112222")

    with requests.Session() as session:
        response = retry.send(
            session, "POST", f"{fhir.url}/Patient", label="POST /Patient", idempotent=False,
            auth_headers=lambda: BEARER, json=patient, timeout=5,
        )

    assert response.status_code == 201, "a 429 means it did not land: safe to send again"
    assert fhir.stats()["by_status"] == {"429": 1, "201": 1}
    assert len(sleeps) == 1


def test_pause_is_the_same_policy_for_retries_a_caller_runs_itself() -> None:
    retry, sleeps = make_retry(base=1.0)

    delay = retry.pause(2, 3.5, "PUT Patient (batch entry)", "transient entry status")

    assert sleeps == [delay]
    assert delay >= 3.5
    assert (retry.stats.retries, retry.stats.wait_seconds) == (1, delay)
