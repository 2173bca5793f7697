"""429 storms, outages, dropped connections and client-side pacing, against the real server."""

from __future__ import annotations

import itertools
import time
from datetime import date

import pytest

from phone_sync.fhir.client import FhirClient
from phone_sync.fhir.errors import FhirUnavailable
from phone_sync.fhir.hook import FhirHook
from phone_sync.http.pacing import Backoff
from tests.fhir.helpers import FAST_BACKOFF, PHONE_RULES, LocalFhir, fhir_config, new_nik, update

EFFECTIVE = date(2026, 11, 20)


def test_429_storm_is_ridden_out_honouring_retry_after(fhir: LocalFhir, bearer_conn: str) -> None:
    niks = [new_nik() for _ in range(3)]
    for nik in niks:
        fhir.create(nik, phone="+6281211112222")
    fhir.clear()
    fhir.faults(throttle_next=3, retry_after=0.3)
    hook = FhirHook(bearer_conn, backoff=Backoff(attempts=5, base=0.01, cap=0.5))
    client = FhirClient(hook, fhir_config(conn_id=bearer_conn), PHONE_RULES)

    started = time.monotonic()
    outcomes = client.apply([update(i, nik, f"+628139999000{i}", EFFECTIVE) for i, nik in enumerate(niks)])
    elapsed = time.monotonic() - started

    assert [o.outcome for o in outcomes] == ["updated"] * 3
    assert fhir.stats()["by_status"] == {"429": 3, "200": 2}
    assert client.stats["retries"] == 3
    assert client.stats["retry_wait_seconds"] >= 0.9, "each retry waits at least Retry-After"
    assert elapsed >= 0.9
    gaps = _gaps_after_429(fhir)
    assert all(gap >= 0.29 for gap in gaps), gaps


def _gaps_after_429(fhir: LocalFhir) -> list[float]:
    log = fhir.requests_log()
    return [after["at"] - before["at"] for before, after in itertools.pairwise(log) if before["status"] == 429]


def test_429_that_does_not_stop_raises(fhir: LocalFhir, bearer_conn: str) -> None:
    fhir.faults(throttle_for_seconds=30, retry_after=0.05)
    client = FhirClient(FhirHook(bearer_conn, backoff=FAST_BACKOFF), fhir_config(conn_id=bearer_conn), PHONE_RULES)
    with pytest.raises(FhirUnavailable, match="HTTP 429 after 4 attempts"):
        client.apply([update(1, new_nik(), "+6281399990001", EFFECTIVE)])


def test_outage_raises_fhir_unavailable(fhir: LocalFhir, bearer_conn: str) -> None:
    fhir.faults(outage_for_seconds=30)
    client = FhirClient(FhirHook(bearer_conn, backoff=FAST_BACKOFF), fhir_config(conn_id=bearer_conn), PHONE_RULES)
    with pytest.raises(FhirUnavailable, match="HTTP 503 after 4 attempts") as raised:
        client.apply([update(1, new_nik(), "+6281399990001", EFFECTIVE)])
    assert fhir.stats()["by_status"] == {"503": 4}
    assert "Patient/_search" in str(raised.value)


def test_outage_of_one_batch_fails_that_batch_only(fhir: LocalFhir, bearer_conn: str) -> None:
    doomed, healthy = new_nik(), new_nik()
    for nik in (doomed, healthy):
        fhir.create(nik, phone="+6281211112222")
    fhir.faults(outage_identifiers=[doomed])
    client = FhirClient(FhirHook(bearer_conn, backoff=FAST_BACKOFF), fhir_config(conn_id=bearer_conn), PHONE_RULES)

    with pytest.raises(FhirUnavailable):
        client.apply([update(1, doomed, "+6281399990001", EFFECTIVE)])
    assert client.apply([update(2, healthy, "+6281399990002", EFFECTIVE)])[0].outcome == "updated"


def test_dropped_connections_are_retried(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    patient = fhir.create(nik, phone="+6281211112222")
    fhir.clear()
    fhir.faults(drop_next=2)
    client = FhirClient(FhirHook(bearer_conn, backoff=FAST_BACKOFF), fhir_config(conn_id=bearer_conn), PHONE_RULES)
    assert client.apply([update(1, nik, "+6281399990003", EFFECTIVE)])[0].outcome == "updated"
    assert fhir.stats()["faults"] == {"drop": 2}
    assert client.stats["retries"] == 2
    assert fhir.read(patient["id"])["meta"]["versionId"] == "2"


def test_dropped_connections_that_persist_raise(fhir: LocalFhir, bearer_conn: str) -> None:
    fhir.faults(drop_every=1)
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)
    with pytest.raises(FhirUnavailable, match="no answer after 4 attempts"):
        hook.request("GET", "Patient/1", kind="read")


def test_client_side_rate_limit(fhir: LocalFhir, bearer_conn: str) -> None:
    hook = FhirHook(bearer_conn, requests_per_second=20, backoff=FAST_BACKOFF)
    started = time.monotonic()
    for _ in range(6):
        hook.request("GET", "metadata", kind="metadata")
    assert time.monotonic() - started >= 0.24  # 5 gaps of 1/20 s
    assert hook.snapshot_stats()["throttle_wait_seconds"] >= 0.2
