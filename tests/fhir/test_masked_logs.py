"""No identifier, phone, token or secret reaches the logs or the row outcomes, whatever happens in a batch."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from phone_sync.fhir.client import FhirClient
from phone_sync.fhir.hook import FhirHook
from phone_sync.redaction import mask
from tests.fhir.helpers import (
    CLIENT_SECRET,
    FAST_BACKOFF,
    PHONE_RULES,
    LocalFhir,
    fhir_config,
    new_nik,
    oauth_conn,
    update,
)

OLD = "+6281255553333"


def test_nothing_sensitive_in_logs(
    fhir: LocalFhir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    conn = oauth_conn(monkeypatch, fhir, "fhir_masked")
    good, rejected, missing = new_nik(), new_nik(), new_nik()
    fhir.create(good, phone=OLD, email="rahasia@example.id")
    fhir.create(rejected, phone=OLD)
    fhir.faults(reject_identifiers=[rejected], throttle_next=1, retry_after=0.01)
    updates = [
        update(2, good, "+6281266664444", date(2026, 11, 20)),
        update(3, rejected, "+6281266665555", date(2026, 11, 20)),
        update(4, missing, "+6281266666666", date(2026, 11, 20)),
    ]
    hook = FhirHook(conn, backoff=FAST_BACKOFF)
    client = FhirClient(hook, fhir_config(conn_id=conn), PHONE_RULES)

    with caplog.at_level(logging.DEBUG):
        outcomes = client.apply(updates)
        hook.request("GET", "Patient/1", kind="read")
        hook._auth.invalidate()  # type: ignore[union-attr]
        access_token = hook._auth.headers(hook)["Authorization"].split()[1]  # type: ignore[union-attr]

    assert [(o.outcome, o.reason) for o in outcomes] == [
        ("updated", None),
        ("failed", "rejected"),
        ("not_found", "patient_not_found"),
    ]
    text = caplog.text + "\n".join(str(o) for o in outcomes)
    assert "retry 1/3" in caplog.text, "the throttled request was logged"
    assert mask(good) in caplog.text, "rows are logged with masked identifiers"
    secrets = [CLIENT_SECRET, access_token, good, rejected, missing, OLD, "rahasia@example.id"]
    secrets += [u.phone for u in updates] + [u.phone.lstrip("+") for u in updates] + [u.phone[3:] for u in updates]
    leaked = [secret for secret in secrets if secret in text]
    assert leaked == []

