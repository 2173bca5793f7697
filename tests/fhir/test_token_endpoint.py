"""The OAuth2 token endpoint as SATUSEHAT answers it: its answer's shape, its rate limit, its refusals.

Against the local server in ``--token-style satusehat`` (grant_type in the query string, every field a
string, OperationOutcome refusals; see ``localservers.fhir.auth`` for what is documented and what assumed).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from phone_sync.errors import SetupError
from phone_sync.fhir.auth import parse_grant
from phone_sync.fhir.errors import FhirAuthError, FhirUnavailable
from phone_sync.fhir.hook import FhirHook
from phone_sync.http.pacing import Backoff
from tests.fhir.helpers import CLIENT_ID, CLIENT_SECRET, FAST_BACKOFF, LocalFhir, oauth_conn

TOKEN_PATH = "/oauth2/v1/accesstoken"
SATUSEHAT = ("--token-style", "satusehat", "--token-path", TOKEN_PATH, "--token-expires-in", "3599")
QUICK_WAITS = Backoff(base=0.5, cap=2.0)  # the token backoff, shortened for a 2-second rate window


def satusehat_conn(
    monkeypatch: pytest.MonkeyPatch, server: LocalFhir, conn_id: str, secret: str = CLIENT_SECRET, **extra: object
) -> str:
    return oauth_conn(monkeypatch, server, conn_id, secret, TOKEN_PATH, grant_type_in="query", **extra)


def token_log(server: LocalFhir) -> list[tuple[str, int]]:
    return [(e["path"], e["status"]) for e in server.requests_log() if e["interaction"] == "token"]


def test_satusehat_answer_and_query_grant_type(
    fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fhir_factory(*SATUSEHAT)
    raw = requests.post(
        f"{server.url}{TOKEN_PATH}",
        params={"grant_type": "client_credentials"},
        data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        timeout=5,
    ).json()
    assert raw["token_type"] == "BearerToken"
    assert isinstance(raw["expires_in"], str)
    assert isinstance(raw["issued_at"], str)
    assert {"refresh_token_expires_in", "api_product_list", "organization_name", "developer.email", "status"} <= set(
        raw
    )
    in_body = requests.post(
        f"{server.url}{TOKEN_PATH}",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        timeout=5,
    )
    assert in_body.status_code == 400, "SATUSEHAT reads grant_type from the query string only"
    server.clear()

    hook = FhirHook(satusehat_conn(monkeypatch, server, "fhir_satusehat"), backoff=FAST_BACKOFF)
    assert hook.request("GET", "Patient/x", kind="read").status_code == 404
    assert token_log(server) == [(TOKEN_PATH, 200)]
    assert hook.stats["token_grants"] == 1


def test_string_fields_are_read() -> None:
    response = requests.Response()
    response.status_code = 200
    response._content = (
        b'{"access_token": "abc", "token_type": "BearerToken", "expires_in": "3599", "issued_at": "1671109805593"}'
    )
    grant = parse_grant(response, "c", started=1000.0)
    assert (grant.expires_in, grant.expires_at, grant.issued_at) == (3599.0, 4599.0, 1671109805.593)
    response._content = b'{"access_token": "abc", "token_type": "mac", "expires_in": 60}'
    with pytest.raises(FhirAuthError, match="not a bearer token"):
        parse_grant(response, "c", started=0.0)
    response._content = b'{"access_token": "abc", "expires_in": "soon"}'
    assert parse_grant(response, "c", started=0.0).expires_in == 300, "unreadable lifetime: five minutes"


@pytest.mark.parametrize("status", ["429", "401"])
def test_rate_limit_answer_is_waited_out(
    status: str, fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One grant per 2 s; the second client waits (no Retry-After) instead of failing, whatever the 4xx."""
    server = fhir_factory(
        *SATUSEHAT, "--token-grant-limit", "1", "--token-grant-window", "2", "--token-rate-limit-status", status
    )
    conn = satusehat_conn(monkeypatch, server, "fhir_satusehat_limited")
    FhirHook(conn, backoff=FAST_BACKOFF).request("GET", "metadata", kind="metadata")
    second = FhirHook(conn, backoff=FAST_BACKOFF, token_backoff=QUICK_WAITS)

    started = time.monotonic()
    assert second.request("GET", "Patient/x", kind="read").status_code == 404

    log = token_log(server)
    assert log[0] == (TOKEN_PATH, 200)
    assert (TOKEN_PATH, int(status)) in log, log
    assert log[-1] == (TOKEN_PATH, 200)
    assert server.stats()["tokens_issued"] == 2
    assert second.stats["retries"] >= 1
    assert time.monotonic() - started < 10


def test_retry_after_is_honoured_beyond_the_backoff_cap(
    fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standard 429 with Retry-After 3: one wait of 3 s, not a few short tries that the endpoint refuses."""
    server = fhir_factory("--token-grant-limit", "1", "--token-grant-window", "3")
    conn = oauth_conn(monkeypatch, server, "fhir_oauth_limited")
    FhirHook(conn, backoff=FAST_BACKOFF).request("GET", "metadata", kind="metadata")
    second = FhirHook(conn, backoff=FAST_BACKOFF, token_backoff=QUICK_WAITS)
    second.request("GET", "metadata", kind="metadata")
    assert server.stats()["token_refusals"] == {"rate_limited": 1}
    assert second.stats["retry_wait_seconds"] >= 2.0


def test_wait_budget_bounds_the_wait(fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch) -> None:
    server = fhir_factory(*SATUSEHAT, "--token-grant-limit", "1")  # one per minute
    conn = satusehat_conn(monkeypatch, server, "fhir_satusehat_budget", token_wait_seconds=1.5)
    FhirHook(conn, backoff=FAST_BACKOFF).request("GET", "metadata", kind="metadata")
    started = time.monotonic()
    with pytest.raises(FhirUnavailable, match=r"token_wait_seconds is 1\.5") as raised:
        FhirHook(conn, backoff=FAST_BACKOFF, token_backoff=QUICK_WAITS).request("GET", "metadata", kind="metadata")
    assert not isinstance(raised.value, SetupError), "a rate limit is an outage: the task is retried later"
    assert time.monotonic() - started < 5
    assert server.stats()["tokens_issued"] == 1


def test_wrong_secret_fails_at_once(fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch) -> None:
    server = fhir_factory(*SATUSEHAT)
    conn = satusehat_conn(monkeypatch, server, "fhir_satusehat_bad", secret="not-the-secret-000")
    hook = FhirHook(conn, backoff=FAST_BACKOFF, token_backoff=QUICK_WAITS)
    with pytest.raises(FhirAuthError, match=r"'fhir_satusehat_bad': .* \(HTTP 401 invalid_client\)") as raised:
        hook.request("GET", "Patient/1", kind="read")
    assert isinstance(raised.value, SetupError), "refused credentials fail the task without retries"
    assert "not-the-secret-000" not in str(raised.value)
    assert token_log(server) == [(TOKEN_PATH, 401)], "asked once: a second try would only meet the rate limit"
