"""Redirects on every product request: followed on the same origin only, refused (and said why) elsewhere.

``origin`` stands for the server a connection names, ``elsewhere`` for another origin a 307 points at:
both record every request, so each test shows what reached the other origin (nothing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests

from localservers.sinks.processes import Redirector
from phone_sync.alerts.notifiers import AlertDeliveryError, WebhookAlertNotifier
from phone_sync.alerts.rules import run_failed
from phone_sync.config import RegionConfig
from phone_sync.controls import Controls
from phone_sync.errors import SetupError
from phone_sync.fhir.errors import FhirConfigError
from phone_sync.fhir.hook import FhirHook
from phone_sync.http.airflow_api import AirflowApi
from phone_sync.http.pacing import Backoff
from phone_sync.http.retry import MAX_REDIRECTS, HttpRetry, RedirectRefused
from phone_sync.http.session import http_session
from phone_sync.http.urls import redirect_refusal
from phone_sync.pipeline.run_note import API_CONN_ID, note_controls
from tests.regions import region_file

NIK = "3302011234567890"
SECRET = "client-secret-never-sent-elsewhere"
BEARER = {"Authorization": "Bearer static-token-for-redirect-tests"}
QUICK = Backoff(attempts=3, base=0.01, cap=0.05)


def send(method: str, url: str, **kwargs: object) -> tuple[requests.Response, HttpRetry]:
    retry = HttpRetry(QUICK)
    with http_session() as session:
        return retry.send(session, method, url, timeout=5, **kwargs), retry  # type: ignore[arg-type]


def seen(server: Redirector) -> list[tuple[str, str, bool, str]]:
    return [(r["method"], r["path"], r["authorization"], r["body"]) for r in server.received()]


@pytest.fixture
def region(tmp_path: Path) -> RegionConfig:
    return region_file(tmp_path, region="redirects")


def env_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
    return conn_id


@pytest.mark.parametrize(
    ("url", "target", "refusal"),
    [
        ("https://fhir.example.id/fhir/x", "https://fhir.example.id/r4/x?a=1", None),
        ("https://fhir.example.id/x", "https://fhir.example.id:443/y", None),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/y", None),
        ("https://fhir.example.id/x", "https://other.example.id/x", "to another origin (https://other.example.id)"),
        ("https://fhir.example.id/x", "https://fhir.example.id:8443/x", "to another origin (https://fhir.example.id:8443)"),
        ("https://fhir.example.id/x", "http://fhir.example.id/x", "from https to plain http://fhir.example.id"),
        ("http://127.0.0.1:8080/x", "https://127.0.0.1:8080/x", "to another origin (https://127.0.0.1:8080)"),
    ],
)
def test_only_the_same_origin_and_scheme_is_followed(url: str, target: str, refusal: str | None) -> None:
    assert redirect_refusal(url, target) == refusal


def test_a_307_to_another_origin_sends_nothing_there_and_says_why(origin: Redirector, elsewhere: Redirector) -> None:
    origin.route("/fhir/Patient/_search", 307, f"{elsewhere.url}/fhir/Patient/_search")

    with pytest.raises(RedirectRefused) as raised:
        send(
            "POST", f"{origin.url}/fhir/Patient/_search", label="POST /fhir/Patient/_search",
            data={"identifier": f"https://fhir.kemkes.go.id/id/nik|{NIK}"}, auth_headers=lambda: BEARER,
        )

    assert elsewhere.received() == [], "neither the search form nor the token left the origin"
    assert len(origin.received()) == 1, "a set-up problem: not retried"
    message = str(raised.value)
    assert f"HTTP 307 redirecting to another origin (http://127.0.0.1:{elsewhere.port})" in message
    assert "followed only on the same origin" in message
    assert NIK not in message
    assert isinstance(raised.value, SetupError)


def test_a_same_origin_307_keeps_method_body_and_credentials(origin: Redirector) -> None:
    origin.route("/old/Patient/_search", 307, "/new/Patient/_search")  # a relative Location

    response, retry = send("POST", f"{origin.url}/old/Patient/_search", data={"a": "1"}, auth_headers=lambda: BEARER)

    assert response.status_code == 200
    assert seen(origin) == [
        ("POST", "/old/Patient/_search", True, "a=1"),
        ("POST", "/new/Patient/_search", True, "a=1"),
    ]
    assert retry.stats.total == 2, "each hop is an attempt: it spends quota"


def test_a_same_origin_303_is_followed_with_a_get_and_no_body(origin: Redirector) -> None:
    origin.route("/submit", 303, f"{origin.url}/result?id=7")

    response, _ = send("POST", f"{origin.url}/submit", json={"text": "x"}, params={"q": "1"})

    assert response.json() == {"ok": True}
    assert seen(origin) == [("POST", "/submit?q=1", False, '{"text": "x"}'), ("GET", "/result?id=7", False, "")]


def test_a_redirect_loop_on_the_same_origin_stops(origin: Redirector) -> None:
    origin.route("/a", 302, "/b")
    origin.route("/b", 302, "/a")

    with pytest.raises(RedirectRefused, match=f"more than {MAX_REDIRECTS} redirects"):
        send("GET", f"{origin.url}/a")
    assert len(origin.received()) == MAX_REDIRECTS + 1


# --- every product request ---------------------------------------------------------------------------


def test_fhir_search_moved_to_another_origin(
    origin: Redirector, elsewhere: Redirector, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = env_connection(monkeypatch, "fhir_moved", conn_type="fhir", host=f"{origin.url}/fhir", password="tok-123456")
    origin.route("/fhir/Patient/_search", 307, f"{elsewhere.url}/fhir/Patient/_search")

    with pytest.raises(FhirConfigError, match=r"^connection 'fhir_moved': FHIR POST /fhir/Patient/_search: .* 307"):
        FhirHook(conn, backoff=QUICK).request("POST", "Patient/_search", data={"identifier": NIK}, kind="search")
    assert elsewhere.received() == []


def test_fhir_same_origin_redirect_is_followed(origin: Redirector, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = env_connection(monkeypatch, "fhir_moved_path", conn_type="fhir", host=f"{origin.url}/fhir", password="t0k3n")
    origin.route("/fhir/metadata", 308, f"{origin.url}/fhir/r4/metadata")
    origin.route("/fhir/r4/metadata", 200, json={"resourceType": "CapabilityStatement"})

    response = FhirHook(conn, backoff=QUICK).request("GET", "metadata", kind="metadata")

    assert response.json() == {"resourceType": "CapabilityStatement"}
    assert seen(origin) == [("GET", "/fhir/metadata", True, ""), ("GET", "/fhir/r4/metadata", True, "")]


def test_a_token_endpoint_307_does_not_carry_the_client_secret_away(
    origin: Redirector, elsewhere: Redirector, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = env_connection(
        monkeypatch, "fhir_moved_token", conn_type="fhir", host=f"{origin.url}/fhir", login="client-id",
        password=SECRET, extra={"auth_type": "oauth2", "token_url": "/oauth2/token"},
    )
    origin.route("/oauth2/token", 307, f"{elsewhere.url}/oauth2/token")

    refused = r"'fhir_moved_token': FHIR POST /oauth2/token: .*another origin"
    with pytest.raises(FhirConfigError, match=refused) as raised:
        FhirHook(conn, backoff=QUICK).request("GET", "metadata", kind="metadata")

    assert elsewhere.received() == [], "the client secret stayed home"
    assert [(method, path) for method, path, *_ in seen(origin)] == [("POST", "/oauth2/token")]
    assert SECRET not in str(raised.value)


def test_sheets_api_moved_to_another_origin(
    origin: Redirector, elsewhere: Redirector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phone_sync.sheets.hook import SheetsHook

    extra = {"sheets_api_url": origin.url, "is_anonymous": True}
    conn = env_connection(monkeypatch, "sheets_moved", conn_type="google_cloud_platform", extra=extra)
    origin.route("/v4/spreadsheets/sheet-1", 307, f"{elsewhere.url}/v4/spreadsheets/sheet-1")

    with pytest.raises(RedirectRefused, match=r"^Sheets GET spreadsheets.get: .*another origin"):
        SheetsHook(conn, backoff=QUICK).get_spreadsheet("sheet-1")
    assert elsewhere.received() == []


def test_a_moved_webhook_gets_no_alert_and_its_url_stays_secret(
    region: RegionConfig, origin: Redirector, elsewhere: Redirector, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "/hook/T000/B000/secret-part"
    conn = env_connection(monkeypatch, "chat_moved", conn_type="http", host=origin.url + path)
    origin.route(path, 307, elsewhere.url + path)
    alert = run_failed(region, {"run_id": "manual__1"})

    refused = r"^webhook 'chat_moved' POST alert run_failed: .*another origin"
    with pytest.raises(AlertDeliveryError, match=refused) as raised:
        WebhookAlertNotifier(conn).send(alert)

    assert elsewhere.received() == []
    assert len(origin.received()) == 1
    assert "secret-part" not in str(raised.value)


def test_the_run_note_goes_through_the_http_path(
    region: RegionConfig,
    origin: Redirector,
    elsewhere: Redirector,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env_connection(monkeypatch, API_CONN_ID, conn_type="http", host=origin.url)
    origin.route("/auth/token", 200, json={"access_token": "api-token-0123456789"})
    context = {"run_id": "manual__1"}

    assert note_controls(region, context, Controls(mode="preview")) is True
    token, patch = seen(origin)
    assert token[:2] == ("GET", "/auth/token")
    assert patch[:3] == ("PATCH", "/api/v2/dags/phone_sync__redirects/dagRuns/manual__1?update_mask=note", True)
    assert json.loads(patch[3]) == {"note": "phone-sync controls: preview"}

    origin.clear()
    origin.route("/auth/token", 200, json={"access_token": "api-token-0123456789"})
    origin.route("/api/v2/dags/phone_sync__redirects/dagRuns/manual__1", 307, f"{elsewhere.url}/api/v2/x")
    with caplog.at_level(logging.WARNING):
        assert note_controls(region, context, Controls(mode="preview")) is False
    assert "Run note not set: Airflow API PATCH /api/v2/dags/phone_sync__redirects/dagRuns/manual__1: " in caplog.text
    assert "another origin" in caplog.text
    assert elsewhere.received() == [], "the API token stayed home"


@pytest.mark.parametrize(("host", "schema"), [("airflow.example", "http"), ("http://airflow.example", None)])
def test_the_run_note_refuses_plain_http_to_a_remote_api(
    region: RegionConfig,
    host: str,
    schema: str | None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env_connection(monkeypatch, API_CONN_ID, conn_type="http", host=host, schema=schema, password="api-token-x")
    with caplog.at_level(logging.WARNING):
        assert note_controls(region, {"run_id": "manual__1"}, Controls(mode="preview")) is False
    assert "the Airflow API URL must use https" in caplog.text


def test_the_run_note_api_defaults_to_https(
    region: RegionConfig, origin: Redirector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bare host name is reached over https, even on loopback (plain http there only when written)."""
    env_connection(monkeypatch, API_CONN_ID, conn_type="http", host=f"127.0.0.1:{origin.port}", password="api-tok-x")
    with caplog.at_level(logging.WARNING):
        assert note_controls(region, {"run_id": "manual__1"}, Controls(mode="preview")) is False
    assert "Run note not set: Airflow API PATCH" in caplog.text
    assert "SSLError after 3 attempts" in caplog.text, "a TLS handshake with the plain-http server"
    assert origin.received() == []


def test_the_api_client_refuses_plain_http_to_a_remote_host() -> None:
    from phone_sync.http.airflow_api import AirflowApiError

    with pytest.raises(AirflowApiError, match="must use https"):
        AirflowApi("http://airflow.example")
    AirflowApi("http://127.0.0.1:8080").session.close()
