"""Static bearer and OAuth2 client credentials: caching, refresh on expiry, refresh once on 401, isolation."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from localservers.fhir.auth import token_hash
from phone_sync.fhir.errors import FhirAuthError
from phone_sync.fhir.hook import FhirHook
from tests.fhir import helpers
from tests.fhir.helpers import CLIENT_SECRET, FAST_BACKOFF, TOKEN, LocalFhir, set_connection


def oauth_conn(monkeypatch: pytest.MonkeyPatch, server: LocalFhir, conn_id: str, secret: str = CLIENT_SECRET) -> str:
    return helpers.oauth_conn(monkeypatch, server, conn_id, secret, scope="patient/*.write")


def test_static_bearer_is_sent(fhir: LocalFhir, bearer_conn: str) -> None:
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)
    assert hook.request("GET", "Patient/1", kind="read").status_code == 200
    assert fhir.stats()["by_token"] == {token_hash(TOKEN): 1}


def test_wrong_static_token_is_a_clear_error(fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = set_connection(monkeypatch, "fhir_wrong_token", host=fhir.url, password="not-the-right-token")
    hook = FhirHook(conn, backoff=FAST_BACKOFF)
    with pytest.raises(FhirAuthError, match="'fhir_wrong_token': the FHIR server refused the credentials") as raised:
        hook.request("GET", "Patient/1", kind="read")
    assert "not-the-right-token" not in str(raised.value)
    assert fhir.stats()["by_status"] == {"401": 1}, "a static token is not retried"


def test_oauth_token_is_fetched_once_and_cached(fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = FhirHook(oauth_conn(monkeypatch, fhir, "fhir_oauth"), backoff=FAST_BACKOFF)
    for _ in range(3):
        assert hook.request("GET", "Patient/1", kind="read").status_code == 200
    stats = fhir.stats()
    assert stats["by_interaction"] == {"token": 1, "read": 3}
    assert len([t for t in stats["by_token"] if t != "none"]) == 1
    assert hook.stats["requests_token"] == 1


def test_oauth_refreshes_once_on_401(fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = FhirHook(oauth_conn(monkeypatch, fhir, "fhir_oauth"), backoff=FAST_BACKOFF)
    hook.request("GET", "Patient/1", kind="read")
    fhir_revoke(fhir)
    assert hook.request("GET", "Patient/1", kind="read").status_code == 200
    log = fhir.requests_log()
    assert [(e["interaction"], e["status"]) for e in log] == [
        ("token", 200),
        ("read", 200),
        ("read", 401),
        ("token", 200),
        ("read", 200),
    ]
    assert log[2]["token"] == log[1]["token"] != log[4]["token"]
    assert hook.stats["token_refreshes"] == 1


def test_oauth_refreshes_before_expiry(fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch) -> None:
    server = fhir_factory("--token-expires-in", "30")
    hook = FhirHook(oauth_conn(monkeypatch, server, "fhir_oauth_short"), backoff=FAST_BACKOFF)
    hook.request("GET", "metadata", kind="metadata")
    hook.request("GET", "Patient/x", kind="read")
    # 27.5 s on our clock: inside the 3 s margin (a tenth of 30 s), while the server still honours the token. A real
    # sleep against a 1 s token flaked on a loaded machine: the fresh token died before its own request arrived.
    monkeypatch.setattr(hook._auth, "_clock", lambda: time.time() + 27.5)
    hook.request("GET", "Patient/x", kind="read")
    log = server.requests_log()
    assert [(e["interaction"], e["status"]) for e in log] == [
        ("token", 200),
        ("metadata", 200),
        ("read", 404),
        ("token", 200),
        ("read", 404),
    ], "refreshed before the server could answer 401"


def test_second_401_after_refresh_raises(
    fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fhir_factory("--token-expires-in", "0")  # every issued token is dead on arrival
    hook = FhirHook(oauth_conn(monkeypatch, server, "fhir_oauth_dead"), backoff=FAST_BACKOFF)
    with pytest.raises(FhirAuthError, match="refused the credentials"):
        hook.request("GET", "Patient/1", kind="read")
    assert server.stats()["by_interaction_status"] == {"token 200": 2, "read 401": 2}


def test_wrong_client_secret(fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = FhirHook(oauth_conn(monkeypatch, fhir, "fhir_oauth_bad", secret="wrong-secret-xyz"), backoff=FAST_BACKOFF)
    with pytest.raises(
        FhirAuthError, match=r"token endpoint refused the client credentials \(HTTP 401 invalid_client\)"
    ):
        hook.request("GET", "Patient/1", kind="read")
    assert fhir.stats()["by_interaction"] == {"token": 1}


def test_each_region_uses_only_its_own_credentials(
    fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    east, west = fhir_factory("--token", "east-token-1234"), fhir_factory("--token", "west-token-5678")
    east_hook = FhirHook(set_connection(monkeypatch, "fhir_east", host=east.url, password="east-token-1234"))
    west_hook = FhirHook(set_connection(monkeypatch, "fhir_west", host=west.url, password="west-token-5678"))
    for hook in (east_hook, west_hook, east_hook):
        hook.request("GET", "Patient/1", kind="read")
    assert east.stats()["by_token"] == {token_hash("east-token-1234"): 2}
    assert west.stats()["by_token"] == {token_hash("west-token-5678"): 1}


def fhir_revoke(server: LocalFhir) -> None:
    import requests

    requests.post(f"{server.url}/_admin/revoke-tokens", timeout=5).raise_for_status()
