"""Connection rules: base URL assembly, https required (except loopback), extras, Airflow env connections."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
import requests

from localservers.fhir.seed import make_patient
from phone_sync.config import PhoneRules
from phone_sync.fhir.client import FhirClient
from phone_sync.fhir.connection import base_url
from phone_sync.fhir.errors import FhirConfigError
from phone_sync.fhir.hook import FhirHook
from phone_sync.http.urls import is_loopback
from tests.fhir.helpers import (
    CLIENT_SECRET,
    TOKEN,
    LocalFhir,
    fhir_config,
    new_nik,
    oauth_conn,
    set_connection,
    update,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("https://fhir.example.id/fhir", None, None, "https://fhir.example.id/fhir"),
        ("https://fhir.example.id/fhir/", None, 8443, "https://fhir.example.id:8443/fhir"),
        ("fhir.example.id", None, None, "https://fhir.example.id"),
        ("fhir.example.id", "https", 443, "https://fhir.example.id:443"),
        ("fhir.example.id", "fhir/r4", None, "https://fhir.example.id/fhir/r4"),
        (
            "https://api-satusehat.kemkes.go.id:8443/fhir-r4/v1",
            None,
            9999,
            "https://api-satusehat.kemkes.go.id:8443/fhir-r4/v1",
        ),
        ("http://127.0.0.1:8080", None, None, "http://127.0.0.1:8080"),
        ("127.0.0.5", "http", 8080, "http://127.0.0.5:8080"),
        ("http://localhost/fhir", None, None, "http://localhost/fhir"),
        ("http://[::1]:8080", None, None, "http://[::1]:8080"),
    ],
)
def test_base_url(host: str, schema: str | None, port: int | None, expected: str) -> None:
    assert base_url(host, schema, port) == expected


@pytest.mark.parametrize(
    ("host", "schema"),
    [
        ("http://fhir.example.id/fhir", None),
        ("fhir.example.id", "http"),
        ("http://10.0.0.8", None),
        ("http://128.0.0.1", None),
        ("http://localhost.evil.example", None),
        ("ftp://fhir.example.id", None),
    ],
)
def test_plain_http_to_a_remote_host_is_refused(host: str, schema: str | None) -> None:
    with pytest.raises(FhirConfigError, match="must use https"):
        base_url(host, schema, None, "fhir_region")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("10.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_hook_refuses_http_to_remote_host_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = set_connection(monkeypatch, "fhir_insecure", host="http://fhir.example.id/fhir", password=TOKEN)
    hook = FhirHook(conn)
    with pytest.raises(FhirConfigError, match=r"'fhir_insecure'.*must use https"):
        hook.request("GET", "metadata")


def test_oauth_token_url_must_be_https_too(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = set_connection(
        monkeypatch,
        "fhir_insecure_token",
        host="https://fhir.example.id",
        login="id",
        password="secret",
        extra={"auth_type": "oauth2", "token_url": "http://auth.example.id/token"},
    )
    with pytest.raises(FhirConfigError, match="token_url must use https"):
        FhirHook(conn).get_conn()


def test_oauth_needs_token_url(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = set_connection(
        monkeypatch,
        "fhir_no_token_url",
        host="https://fhir.example.id",
        login="id",
        password="s",
        extra={"auth_type": "oauth2"},
    )
    with pytest.raises(FhirConfigError, match="needs extra 'token_url'"):
        FhirHook(conn).get_conn()


def test_env_connection_is_resolved_outside_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = set_connection(
        monkeypatch, "fhir_env_check", host="https://fhir.example.id/fhir", password=TOKEN, extra={"timeout": 7}
    )
    hook = FhirHook(conn)
    assert hook.base_url == "https://fhir.example.id/fhir"
    assert hook.settings.auth_type == "bearer"
    assert hook.settings.extras.timeout == 7
    assert TOKEN not in repr(hook.settings)


def test_next_links_to_another_origin_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = FhirHook(set_connection(monkeypatch, "fhir_origin", host="https://fhir.example.id/fhir", password=TOKEN))
    assert hook.url("Patient/1") == "https://fhir.example.id/fhir/Patient/1"
    assert hook.url("https://fhir.example.id/fhir?_getpages=x") == "https://fhir.example.id/fhir?_getpages=x"
    with pytest.raises(Exception, match="another origin"):
        hook.url("https://elsewhere.example/fhir?_getpages=x")


def test_test_connection(fhir: LocalFhir, bearer_conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = FhirHook(bearer_conn).test_connection()
    assert ok, message
    assert "4.0.1" in message
    monkeypatch.setenv("AIRFLOW_CONN_FHIR_DOWN", '{"conn_type": "fhir", "host": "http://127.0.0.1:9", "password": "x"}')
    from phone_sync.http.pacing import Backoff

    ok, message = FhirHook("fhir_down", backoff=Backoff(attempts=1), timeout=2).test_connection()
    assert not ok
    assert "no answer" in message


def test_test_connection_checks_the_credentials_not_only_metadata(
    fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``metadata`` is public, so a wrong token must fail on the authenticated probe, naming the 401."""
    wrong = "wrong-token-for-the-test-button"
    conn = set_connection(monkeypatch, "fhir_wrong_token", host=fhir.url, password=wrong)
    ok, message = FhirHook(conn).test_connection()
    assert not ok
    assert "answers metadata, but the FHIR server refused" in message
    assert "refused the credentials (HTTP 401 on GET /Patient)" in message
    assert wrong not in message
    assert [(e["path"], e["status"]) for e in fhir.requests_log()] == [("/metadata", 200), ("/Patient", 401)]


@pytest.mark.parametrize(("secret", "expect_ok"), [(CLIENT_SECRET, True), ("not-the-secret", False)])
def test_test_connection_obtains_an_oauth2_token(
    fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch, secret: str, expect_ok: bool
) -> None:
    conn = oauth_conn(monkeypatch, fhir, "fhir_oauth_test", secret)
    ok, message = FhirHook(conn).test_connection()
    assert ok is expect_ok, message
    assert secret not in message
    if expect_ok:
        assert f"OAuth2 token obtained from {fhir.url}/oauth2/token and accepted" in message
        assert "4.0.1" in message
    else:
        assert "token endpoint refused the client credentials (HTTP 401 invalid_client)" in message


def test_base_path_in_the_host_field(fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch) -> None:
    server = fhir_factory("--base-path", "/fhir")
    nik = new_nik()
    created = requests.post(
        f"{server.url}/fhir/Patient", json=make_patient(nik, phone="+6281211112222"), headers=AUTH, timeout=5
    ).json()
    conn = set_connection(monkeypatch, "fhir_with_path", host=f"{server.url}/fhir/", password=TOKEN)
    client = FhirClient(FhirHook(conn), fhir_config(conn_id=conn), PhoneRules())
    assert client.apply([update(1, nik, "+6281299998888", date(2026, 11, 20))])[0].outcome == "updated"
    assert {e["path"] for e in server.requests_log()} == {"/fhir/Patient", "/fhir/Patient/_search", "/fhir"}
    stored = requests.get(f"{server.url}/fhir/Patient/{created['id']}", headers=AUTH, timeout=5).json()
    assert stored["meta"]["versionId"] == "2"


def test_the_test_button_answers_after_one_attempt(fhir: LocalFhir, bearer_conn: str) -> None:
    """Airflow builds the hook with its defaults: the button must not sit through a task's retries."""
    fhir.faults(outage_for_seconds=60)  # metadata is spared; the authenticated probe gets 503s
    ok, message = FhirHook(bearer_conn).test_connection()
    assert not ok
    assert "answers metadata, but" in message
    assert "503" in message
    assert [(e["path"], e["status"]) for e in fhir.requests_log()] == [("/metadata", 200), ("/Patient", 503)]


def test_the_test_button_does_not_wait_out_a_token_rate_limit(
    fhir_factory: Callable[..., LocalFhir], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fhir_factory("--token-grant-limit", "1", "--token-grant-window", "3")  # a task would wait 3 s
    conn = oauth_conn(monkeypatch, server, "fhir_oauth_busy", token_wait_seconds=5)
    assert FhirHook(conn).test_connection()[0]  # the one grant the window allows
    ok, message = FhirHook(conn).test_connection()
    assert not ok
    assert "rate limit" in message
    assert "try again" in message
    assert server.stats()["token_refusals"] == {"rate_limited": 1}, "asked once, then answered"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"host": "http://fhir.example.id/fhir"}, "FHIR base URL must use https"),
        ({"host": "https://fhir.example.id", "extra": {"timeout": "30s"}}, "extra timeout must be a number"),
        ({"host": "https://fhir.example.id", "extra": {"auth_type": "oauth2"}}, "auth_type 'oauth2' needs extra"),
    ],
)
def test_the_test_button_explains_a_connection_it_cannot_read_without_its_id(
    fields: dict[str, object], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow tests a copy under a random id (here ``Xq7rAnd0``): the message must not name it."""
    conn = set_connection(monkeypatch, "Xq7rAnd0", password=TOKEN, **fields)
    ok, message = FhirHook(conn).test_connection()
    assert not ok
    assert message.startswith(said)
    assert "Xq7rAnd0" not in message
