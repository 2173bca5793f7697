"""One OAuth2 token per region, shared by task processes through the sealed store, refreshed by one of them.

Each "process" here is its own FhirHook (its own authorizer, nothing in memory shared); the store is the
metadata DB's Variable table, as tasks reach it through the execution API. Grants are counted by the
local server (``tokens_issued``).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Callable

import pytest

from localservers.fhir.auth import token_hash
from phone_sync.crypto import Sealer, new_key
from phone_sync.fhir.hook import FhirHook
from phone_sync.fhir.token_store import TokenStore
from tests.fhir.helpers import CLIENT_ID, CLIENT_SECRET, FAST_BACKOFF, LocalFhir, MetadataVariables, set_connection
from tests.fhir.test_auth import fhir_revoke

TOKEN_PATH = "/oauth2/v1/accesstoken"
SATUSEHAT = ("--token-style", "satusehat", "--token-path", TOKEN_PATH)


@pytest.fixture
def satusehat(fhir_factory: Callable[..., LocalFhir]) -> LocalFhir:
    return fhir_factory(*SATUSEHAT, "--token-grant-limit", "2")


def connect(monkeypatch: pytest.MonkeyPatch, server: LocalFhir, conn_id: str, secret: str = CLIENT_SECRET) -> str:
    extra = {"auth_type": "oauth2", "token_url": TOKEN_PATH, "grant_type_in": "query"}
    return set_connection(monkeypatch, conn_id, host=server.url, login=CLIENT_ID, password=secret, extra=extra)


def store(conn_id: str, key: str) -> TokenStore:
    return TokenStore(conn_id, Sealer([key]), MetadataVariables())


def grants(server: LocalFhir) -> int:
    return int(server.stats()["tokens_issued"])


@pytest.mark.usefixtures("airflow_db")
def test_token_is_granted_once_and_reused_by_other_processes(
    satusehat: LocalFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, key = connect(monkeypatch, satusehat, "fhir_shared_reuse"), new_key()
    first = FhirHook(conn, backoff=FAST_BACKOFF, token_store=store(conn, key))
    assert first.prime_token() == "granted"
    for _ in range(3):  # three batch processes
        hook = FhirHook(conn, backoff=FAST_BACKOFF, token_store=store(conn, key))
        assert hook.request("GET", "Patient/x", kind="read").status_code == 404
        assert "requests_token" not in hook.stats
    assert FhirHook(conn, backoff=FAST_BACKOFF, token_store=store(conn, key)).prime_token() == "reused"
    assert grants(satusehat) == 1

    # The metadata DB holds ciphertext only; opened with the region's key it is the token the server saw.
    raw = MetadataVariables().get(f"phone_sync__fhir_token__{conn}")
    assert raw is not None
    record = json.loads(raw)
    assert set(record) == {"v", "sealed", "expires_at", "lifetime", "lease_holder", "lease_until"}
    token = Sealer([key]).open(record["sealed"])["access_token"]
    assert token not in raw
    assert token_hash(token) in satusehat.stats()["by_token"]


@pytest.mark.usefixtures("airflow_db")
def test_a_changed_client_or_key_does_not_reuse_the_token(
    satusehat: LocalFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, key = connect(monkeypatch, satusehat, "fhir_shared_change"), new_key()
    assert FhirHook(conn, token_store=store(conn, key)).prime_token() == "granted"
    assert FhirHook(conn, token_store=store(conn, new_key())).prime_token() == "granted", "PHI key rotated away"
    connect(monkeypatch, satusehat, conn, secret="a-new-secret-nobody-knows")
    with pytest.raises(Exception, match="invalid_client"):
        FhirHook(conn, token_store=store(conn, key)).prime_token()  # not the stored token of the old secret


@pytest.mark.usefixtures("airflow_db")
def test_concurrent_first_requests_make_one_grant(satusehat: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight batches start at once with an empty store: one fetches, seven wait for its token."""
    conn, key = connect(monkeypatch, satusehat, "fhir_shared_threads"), new_key()
    hooks = [FhirHook(conn, backoff=FAST_BACKOFF, token_store=store(conn, key)) for _ in range(8)]
    start = threading.Barrier(len(hooks))
    statuses: list[int] = []

    def batch(hook: FhirHook) -> None:
        start.wait()
        statuses.append(hook.request("GET", "Patient/x", kind="read").status_code)

    threads = [threading.Thread(target=batch, args=(hook,)) for hook in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [404] * len(hooks)
    assert grants(satusehat) == 1
    assert satusehat.stats()["token_refusals"] == {}


def _child_request(conn_id: str, key: str, start: threading.Barrier) -> int:
    hook = FhirHook(conn_id, backoff=FAST_BACKOFF, token_store=store(conn_id, key))
    hook.get_conn()
    start.wait()
    return hook.request("GET", "Patient/x", kind="read").status_code


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_concurrent_processes_make_one_grant(satusehat: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    conn, key = connect(monkeypatch, satusehat, "fhir_shared_processes"), new_key()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(3) as pool:
        start = manager.Barrier(3)
        results = [pool.apply_async(_child_request, (conn, key, start)) for _ in range(3)]
        assert [result.get(120) for result in results] == [404, 404, 404]
    assert grants(satusehat) == 1


@pytest.mark.usefixtures("airflow_db")
def test_revoked_token_is_replaced_once_for_everyone(satusehat: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    conn, key = connect(monkeypatch, satusehat, "fhir_shared_revoked"), new_key()
    hooks = [FhirHook(conn, backoff=FAST_BACKOFF, token_store=store(conn, key)) for _ in range(3)]
    for hook in hooks:
        hook.request("GET", "Patient/x", kind="read")
    assert grants(satusehat) == 1
    fhir_revoke(satusehat)
    for hook in hooks:  # each meets a 401; the first fetches, the others find its token in the store
        assert hook.request("GET", "Patient/x", kind="read").status_code == 404
    assert grants(satusehat) == 2
    assert [hook.stats["token_refreshes"] for hook in hooks] == [1, 1, 1]
    assert [hook.stats["token_grants"] for hook in hooks] == [2, 0, 0]


@pytest.mark.usefixtures("airflow_db")
def test_run_margin_and_batch_margin(fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 s token: a run needs half of it left (5 s), a batch only a tenth (1 s). (Long enough that a loaded
    machine's lease settling and Variable round trips between the first two primes never eat the 5 s.)"""
    server = fhir_factory(*SATUSEHAT, "--token-expires-in", "10")
    conn, key = connect(monkeypatch, server, "fhir_shared_margins"), new_key()

    def hook() -> FhirHook:
        return FhirHook(conn, backoff=FAST_BACKOFF, token_store=store(conn, key))

    assert hook().prime_token() == "granted"
    assert hook().prime_token() == "reused"
    time.sleep(6.5)
    batch = hook()
    batch.request("GET", "Patient/x", kind="read")
    assert batch.stats["token_grants"] == 0, "3.5 s left is enough for a batch"
    assert hook().prime_token() == "granted", "but not for a new run"
    assert grants(server) == 2
